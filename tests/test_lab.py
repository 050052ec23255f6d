"""`make lab` (Makefile, README "Explore in JupyterLab"): every page runs from notebooks/ with its defaults.

JupyterLab starts kernels in the notebook's folder, so each parameters cell's relative defaults must name
places inside the repository as seen from notebooks/, and they must be the places `make book` (default
profile) uses, so that a page opened after a build reads its finished runs instead of training again.
"""

import ast
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from sercore import book

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# the parameters that name a file or folder; any other string parameter must not look like a path
PATH_PARAMETERS = {"corpus", "standard_corpus", "out_root", "runs_root", "figures", "results_dir", "gpu_results"}
PAGES = sorted(NOTEBOOKS.glob("*.ipynb"))
# defaults that differ from what the book passes, on purpose: (page, parameter) -> why
BOOK_DIFFERS = {("efficiency", "corpus"): "None: the profile's text_tokens; it trains nothing, so there is no run to reuse"}


def parameter_defaults(notebook: Path) -> dict:
    cells = [c for c in json.loads(notebook.read_text())["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1, f"{notebook.name}: {len(cells)} cells tagged parameters"
    tree = ast.parse("".join(cells[0]["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


def test_every_page_is_found():
    assert {p.stem for p in PAGES} >= {"data", "mechanisms", "accuracy", "fidelity"}


@pytest.mark.parametrize("notebook", PAGES, ids=[p.stem for p in PAGES])
def test_path_defaults_are_repository_relative_from_notebooks(notebook):
    defaults = parameter_defaults(notebook)
    assert defaults.get("profile") == "default", f"{notebook.name}: profile default is {defaults.get('profile')!r}"
    for name, value in defaults.items():
        if name not in PATH_PARAMETERS:
            assert not (isinstance(value, str) and "/" in value), f"{notebook.name}: {name}={value!r} looks like a path"
            continue
        if value is None:  # documented "not given" (e.g. efficiency's corpus)
            continue
        assert isinstance(value, str) and not Path(value).is_absolute() and not value.startswith("~"), \
            f"{notebook.name}: {name}={value!r} is not a relative path"
        resolved = (NOTEBOOKS / value).resolve()
        assert resolved.is_relative_to(ROOT), f"{notebook.name}: {name}={value!r} leaves the repository ({resolved})"


@pytest.mark.parametrize("notebook", PAGES, ids=[p.stem for p in PAGES])
def test_no_page_hard_codes_the_seeds_it_trains(notebook):
    """A page that trains takes its seeds from the profile (results.profile_seeds) for every study it trains,
    unless papermill passes some: its `seeds` parameter defaults to None and no cell writes a seed list.
    (data's `seed` is the corpus generator's, not a training seed.)"""
    defaults = parameter_defaults(notebook)
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells
                     if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    trained = set(re.findall(r'run_grid\(\s*"([\w-]+)"', code))
    if not trained:
        assert "seeds" not in defaults, f"{notebook.name}: a seeds parameter but no training grid"
        return
    assert "seeds" in defaults and defaults["seeds"] is None, \
        f"{notebook.name}: seeds defaults to {defaults.get('seeds')!r}, not None (the profile's)"
    resolved = set(re.findall(r'profile_seeds\(profile, "([\w-]+)"\)', code))
    assert trained <= resolved, f"{notebook.name}: trains {sorted(trained - resolved)} without the profile's seeds"
    assert not re.search(r"seeds\s*=\s*[\[(\d]", code), f"{notebook.name}: a cell writes a literal seed list"


@pytest.mark.parametrize("run", book.load_runs(), ids=lambda r: r["name"])
def test_defaults_are_what_the_default_book_passes(run):
    """A default-profile build and an interactive run with the defaults use the same corpus and run folders."""
    defaults = parameter_defaults(ROOT / run["notebook"])
    names = {"profile": "default", "corpus": str(book.demo_corpus_path("default")), "root": str(ROOT)}
    for name, template in run.get("parameters", {}).items():
        if (run["name"], name) in BOOK_DIFFERS:
            continue
        passed = template.format(**names) if isinstance(template, str) else template
        if name in PATH_PARAMETERS:
            assert (NOTEBOOKS / defaults[name]).resolve() == Path(passed).resolve(), \
                f"{run['notebook']}: default {name}={defaults[name]!r}, the book passes {passed}"
        else:
            assert defaults[name] == passed, f"{run['notebook']}: default {name}={defaults[name]!r}, book {passed!r}"


def test_jupyterlab_is_in_the_book_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("jupyterlab") for r in extras["book"])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_registers_the_kernel_and_opens_notebooks():
    dry = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    register = next(i for i, line in enumerate(lines) if "-m ipykernel install --sys-prefix --name sercore" in line)
    lab = next(i for i, line in enumerate(lines) if "-m jupyterlab " in line)
    assert register < lab and lines[lab].startswith("cd notebooks && ")
    assert "default_kernel_name=sercore" in lines[lab]
