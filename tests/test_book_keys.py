"""A book page re-executes when the library source it imports changed, and not for an edit elsewhere (issue
12, "Caching that is never stale"). The package is copied into tmp_path and sercore.source_key.PACKAGE
pointed at the copy; the tests edit the copy. A page with `reads` (the summary page) re-executes when a
file it reads changed, and runs after the pages named in its `after`."""

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


# ---------------------------------------------------------------- a page that reads other pages' results

def _summary_book(root: Path, metrics: dict, order: list):
    """A "study" page whose execution writes a run's metrics.json (metrics["value"]) and a "summary" page
    that reads it, declared as book/runs.yaml declares the real summary page (listed first on purpose);
    (runs, a stand-in for papermill.execute_notebook that records the order pages ran in)."""
    runs = []
    for name in ("summary", "study"):
        _notebook(root / "notebooks" / f"{name}.ipynb", "x = 1")
        runs.append({"name": name, "notebook": f"notebooks/{name}.ipynb", "output": f"executed/{name}.ipynb",
                     "parameters": {"profile": "{profile}"}})
    runs[0].update(after=["study"], reads=["{root}/runs/{profile}/**/metrics.json"])

    def execute(source, out, **kwargs):
        order.append(Path(source).stem)
        if Path(source).stem == "study":
            run = root / "runs" / "smoke" / "study" / "softmax-seed0"
            run.mkdir(parents=True, exist_ok=True)
            (run / "metrics.json").write_text(json.dumps({"finished": True, "value": metrics["value"]}))
        shutil.copy(source, out)

    return runs, execute


def test_the_summary_re_executes_when_a_metrics_file_it_reads_changed(tmp_path, monkeypatch):
    import papermill

    metrics, order = {"value": 0.5}, []
    runs, execute = _summary_book(tmp_path, metrics, order)
    monkeypatch.setattr(papermill, "execute_notebook", execute)
    names = {"profile": "smoke", "root": str(tmp_path)}

    def statuses():
        order.clear()
        return {row["page"]: row["status"] for row in book.execute_pages(runs, tmp_path, "smoke", names)}

    assert statuses() == {"study": "executed", "summary": "executed"} and order == ["study", "summary"]
    assert statuses() == {"study": "unchanged", "summary": "unchanged"}
    # the study page re-executes but its run is reused: the same metrics.json, so the summary is still current
    _notebook(tmp_path / "notebooks" / "study.ipynb", "x = 2")
    assert statuses() == {"study": "executed", "summary": "unchanged"}
    # the study page retrains: the summary, run after it, sees the new number in the same build
    metrics["value"] = 0.6
    _notebook(tmp_path / "notebooks" / "study.ipynb", "x = 3")
    assert statuses() == {"study": "executed", "summary": "executed"} and order == ["study", "summary"]
    # a run retrained outside the book (python -m sercore train) leaves the summary stale until it re-executes
    metrics_file = tmp_path / "runs" / "smoke" / "study" / "softmax-seed0" / "metrics.json"
    metrics_file.write_text(json.dumps({"finished": True, "value": 0.7}))
    left_out = book.left_out_pages(runs, tmp_path, "smoke", names, rows=[])
    assert set(left_out) == {"executed/summary"} and "stale" in left_out["executed/summary"]
    assert statuses() == {"study": "unchanged", "summary": "executed"}
    assert book.left_out_pages(runs, tmp_path, "smoke", names, rows=[]) == {}


def test_the_real_summary_reads_every_folder_headline_table_reads(tmp_path):
    from sercore import results

    runs = {run["name"]: run for run in book.load_runs()}
    summary = runs["summary"]
    headline_pages = [page for page, *_ in results.HEADLINES]
    assert set(summary["after"]) == set(headline_pages)
    order = [run["name"] for run in book.load_runs()]
    assert all(order.index(page) < order.index("summary") for page in headline_pages)
    names = {"profile": "smoke", "root": str(tmp_path)}
    patterns = book._fill(summary["reads"], names)
    seen = {book.read_key(patterns, tmp_path)}
    for _, folder, _, _ in results.HEADLINES:
        run = tmp_path / "runs" / "smoke" / folder / "sub" / "v-seed0"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text("{}")
        seen.add(book.read_key(patterns, tmp_path))
    assert len(seen) == len(results.HEADLINES) + 1  # each study's runs change the summary's key
    (tmp_path / "runs" / "default" / "accuracy" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "default" / "accuracy" / "x" / "metrics.json").write_text("{}")
    assert book.read_key(patterns, tmp_path) in seen  # another profile's runs do not

