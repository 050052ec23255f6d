"""The book driver: pages re-run only when their inputs change; the toc is built from pages that exist."""

import json

import nbformat
import pytest
import yaml

from sercore import book


def _notebook(path, source="x = 1"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)
    return path


def test_inputs_hash_follows_notebook_and_parameters(tmp_path):
    nb = _notebook(tmp_path / "a.ipynb")
    base = book.inputs_hash(nb, {"profile": "smoke"}, "smoke")
    assert base == book.inputs_hash(nb, {"profile": "smoke"}, "smoke")
    assert base != book.inputs_hash(nb, {"profile": "default"}, "smoke")
    assert base != book.inputs_hash(nb, {"profile": "smoke"}, "default")
    _notebook(nb, source="x = 2")
    assert base != book.inputs_hash(nb, {"profile": "smoke"}, "smoke")


def test_runs_file_lists_valid_entries():
    runs = book.load_runs()
    assert runs and all({"name", "notebook", "output"} <= set(run) for run in runs)
    toc = yaml.safe_load((book.ROOT / "_toc.yml").read_text())
    toc_files = set(book._toc_files(toc))
    for run in runs:
        assert run["output"].removesuffix(".ipynb") in toc_files, f"{run['name']} is not in _toc.yml"


def test_bad_runs_file_names_the_file(tmp_path):
    bad = tmp_path / "runs.yaml"
    bad.write_text("runs:\n  - name: x\n")
    with pytest.raises(ValueError, match="runs.yaml.*lacks"):
        book.load_runs(bad)


def test_executed_page_is_skipped_when_hash_matches(tmp_path):
    nb = _notebook(tmp_path / "page.ipynb")
    out = tmp_path / "out.ipynb"
    runs = tmp_path / "runs.yaml"
    runs.write_text(yaml.safe_dump({"runs": [{"name": "p", "notebook": str(nb), "output": str(out),
                                              "parameters": {"profile": "{profile}"}}]}))
    first = book.run_notebooks("smoke", runs_file=runs)
    assert first[0]["status"].startswith("executed"), first
    meta = json.loads(out.read_text())["metadata"]["sercore"]
    assert meta["parameters"] == {"profile": "smoke"} and meta["git_sha"]
    second = book.run_notebooks("smoke", runs_file=runs)
    assert second[0]["status"] == "unchanged"
