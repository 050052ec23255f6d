"""A book page re-executes when the library source it imports changed, and not for an edit elsewhere (issue
12, "Caching that is never stale"). The package is copied into tmp_path and sercore.source_key.PACKAGE
pointed at the copy; the tests edit the copy."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

import sercore
from sercore import book, source_key

PAGES = {"plots": "from sercore import plots", "results": "from sercore import results",
         "fidelity": "from sercore import fidelity", "data": "from sercore.data import load_corpus"}


@pytest.fixture
def package(tmp_path, monkeypatch):
    copy = tmp_path / "src" / "sercore"
    shutil.copytree(Path(sercore.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(source_key, "PACKAGE", copy)
    return copy


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                *(nbformat.v4.new_code_cell(source) for source in sources)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _hashes(notebooks: dict) -> dict:
    return {name: book.inputs_hash(path, {"profile": "smoke"}, "smoke") for name, path in notebooks.items()}


def _touch(package: Path, relative: str) -> None:
    path = package / relative
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")


@pytest.fixture
def notebooks(tmp_path):
    return {name: _notebook(tmp_path / "nb" / f"{name}.ipynb", source) for name, source in PAGES.items()}


@pytest.mark.parametrize("relative, changed", [
    ("plots.py", {"plots"}),
    ("fidelity.py", {"fidelity"}),
    ("attention/kda.py", {"results", "fidelity"}),  # a page's runs pick their mechanism at run time
    ("train/trainer.py", {"results", "fidelity"}),
    ("data/corpus.py", {"results", "fidelity", "data", "plots"}),  # plots reads audio through sercore.data
    ("book.py", set()), ("cli.py", set()), ("predict.py", set()), ("inspection.py", set()),
], ids=str)
def test_a_page_depends_on_the_modules_it_imports(package, notebooks, relative, changed):
    before = _hashes(notebooks)
    _touch(package, relative)
    after = _hashes(notebooks)
    assert {name for name in before if before[name] != after[name]} == changed


def test_the_real_pages_import_what_they_draw_and_train_with():
    pages = {run["name"]: book.page_modules(book.ROOT / run["notebook"]) for run in book.load_runs()}
    assert "sercore.book" not in set().union(*pages.values())
    assert "sercore.train.trainer" in pages["accuracy"] and "sercore.attention.kda" in pages["accuracy"]
    assert "sercore.train.trainer" not in pages["data"] and "sercore.plots" in pages["data"]
    assert "sercore.fidelity" in pages["fidelity"] and "sercore.fidelity" not in pages["data"]


def test_a_cell_that_is_not_python_makes_the_page_depend_on_everything(package, tmp_path):
    # `x = !ls` is IPython syntax no parser here reads: the page might import anything, so every edit counts
    shell = _notebook(tmp_path / "nb" / "shell.ipynb", "%matplotlib inline\nfiles = !ls\nfrom sercore import plots")
    magic = _notebook(tmp_path / "nb" / "magic.ipynb", "%matplotlib inline\n!true\nfrom sercore import plots")
    assert book.page_modules(shell) == source_key.all_modules(package)
    assert "sercore.book" not in book.page_modules(magic)  # %magic and !command lines alone are skipped
    before = book.inputs_hash(shell, {}, "smoke")
    _touch(package, "book.py")
    assert book.inputs_hash(shell, {}, "smoke") != before


def test_the_driver_re_executes_only_the_page_whose_imports_changed(package, tmp_path):
    root = tmp_path / "book"
    # The imports are read, not run (an `if False:` block), so the kernels start fast.
    runs = []
    for name, module in (("drawn", "plots"), ("registry", "fidelity")):
        _notebook(root / "notebooks" / f"{name}.ipynb", f"if False:\n    from sercore import {module}\nx = 1")
        runs.append({"name": name, "notebook": f"notebooks/{name}.ipynb", "output": f"executed/{name}.ipynb",
                     "parameters": {"profile": "{profile}"}})
    names = {"profile": "smoke", "root": str(root)}

    def statuses():
        return {row["page"]: row["status"] for row in book.execute_pages(runs, root, "smoke", names)}

    assert statuses() == {"drawn": "executed", "registry": "executed"}
    _touch(package, "book.py")
    assert statuses() == {"drawn": "unchanged", "registry": "unchanged"}
    _touch(package, "plots.py")
    assert statuses() == {"drawn": "executed", "registry": "unchanged"}
    stored = json.loads((root / "executed" / "drawn.ipynb").read_text())["metadata"]["sercore"]["inputs_hash"]
    assert stored == book.inputs_hash(root / "notebooks" / "drawn.ipynb", {"profile": "smoke"}, "smoke")
