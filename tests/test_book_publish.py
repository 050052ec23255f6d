"""Publishing the book (issue 12, "Publishing and reading"): executed copies show no machine path and hide
papermill's injected-parameters cell behind a "Run with" note."""

import json
import os
from pathlib import Path

import nbformat
import pytest

from sercore import book

PRINTS_PATHS = """import os
from pathlib import Path
print(Path(corpus).resolve())
print(os.getcwd())
print(Path.home() / '.cache' / 'sercore')
Path(out_root).resolve()"""


def _page(root: Path) -> list[dict]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'default'\ncorpus = 'x'\nout_root = 'y'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(PRINTS_PATHS)]
    (root / "notebooks").mkdir(parents=True)
    nbformat.write(nb, root / "notebooks" / "page.ipynb")
    return [{"name": "page", "notebook": "notebooks/page.ipynb", "output": "book/executed/page.ipynb",
             "parameters": {"profile": "{profile}", "corpus": "{corpus}", "out_root": "{root}/runs/{profile}/p"}}]


def _names(root: Path) -> dict:
    return {"profile": "smoke", "corpus": str(root / "data" / "demo-smoke"), "root": str(root)}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    root = tmp_path_factory.mktemp("publish")
    runs = _page(root)
    rows = book.execute_pages(runs, root, "smoke", _names(root))
    assert rows[0]["status"] == "executed", rows[0]["reason"]
    return root, runs, rows[0], (root / "book" / "executed" / "page.ipynb").read_text(encoding="utf-8")


def test_no_machine_path_in_the_executed_copy(executed):
    root, _, _, text = executed
    assert str(root) not in text and str(root.resolve()) not in text
    assert str(Path.home()) + "/" not in text
    outputs = json.loads(text)["cells"][-1]["outputs"]
    printed = "".join("".join(o.get("text", "")) for o in outputs).splitlines()
    # the page ran from its folder; its outputs name the same files, repository-relative
    assert printed == ["data/demo-smoke", "book/executed", "~/.cache/sercore"]
    assert "".join(outputs[-1]["data"]["text/plain"]) == "PosixPath('runs/smoke/p')"


def test_injected_parameters_are_hidden_behind_a_run_with_note(executed):
    _, _, _, text = executed
    cells = json.loads(text)["cells"]
    injected = next(i for i, c in enumerate(cells) if "injected-parameters" in c["metadata"].get("tags", []))
    assert "remove-cell" in cells[injected]["metadata"]["tags"]
    # papermill ran the page from book/executed/, so it got page-relative paths
    assert "corpus = \"../../data/demo-smoke\"" in "".join(cells[injected]["source"])
    note = cells[injected + 1]
    assert note["cell_type"] == "markdown"
    assert note["source"] == ("*Run with* `profile = 'smoke'`, `corpus = 'data/demo-smoke'`, "
                              "`out_root = 'runs/smoke/p'` (paths relative to the repository root). "
                              "Re-run this page: `python -m sercore book --profile smoke --only page`.")
    meta = json.loads(text)["metadata"]["papermill"]
    assert (meta["input_path"], meta["output_path"]) == ("notebooks/page.ipynb", "book/executed/page.ipynb")


def test_the_inputs_hash_does_not_depend_on_where_the_clone_lives(executed, tmp_path):
    root, runs, row, _ = executed
    other = tmp_path / "elsewhere" / "clone"
    (other / "notebooks").mkdir(parents=True)
    (other / "notebooks" / "page.ipynb").write_bytes((root / "notebooks" / "page.ipynb").read_bytes())
    assert book._plan(runs[0], other, "smoke", _names(other))[3] == row["digest"]
    # ...and a copy served from the other clone is still current there
    (other / "book" / "executed").mkdir(parents=True)
    (other / "book" / "executed" / "page.ipynb").write_text(executed[3], encoding="utf-8")
    assert book.left_out_pages(runs, other, "smoke", _names(other), rows=[]) == {}


def test_paths_outside_the_repository_are_passed_as_given(tmp_path):
    names = {"profile": "smoke", "corpus": "/srv/corpora/msp-podcast", "root": str(tmp_path)}
    assert book._page_names(names, tmp_path, tmp_path / "book" / "executed") == {
        "profile": "smoke", "corpus": "/srv/corpora/msp-podcast", "root": os.path.join("..", "..")}


def test_a_profile_file_in_the_repository_is_named_from_the_root_in_the_note(tmp_path):
    run = {"name": "page", "notebook": "notebooks/page.ipynb", "output": "book/executed/page.ipynb"}
    page = book._page_names({"profile": str(tmp_path / "my.yaml")}, tmp_path, tmp_path / "book" / "executed")
    assert page == {"profile": os.path.join("..", "..", "my.yaml")}
    note = book._run_with_note(run, tmp_path, page)["source"]
    assert note.startswith("*Run with* `profile = 'my.yaml'`") and "--profile my.yaml --only page" in note
    home = book._run_with_note(run, tmp_path, {"profile": str(Path.home() / "p.yaml")})["source"]
    assert "`profile = '~/p.yaml'`" in home and str(Path.home()) + "/" not in home


def test_the_scrubber_does_not_touch_a_longer_sibling_path():
    scrub = book._path_scrubber(Path("/srv/sercore-test/repo"))
    assert scrub("/srv/sercore-test/repo/data, /srv/sercore-test/repo, and /srv/sercore-test/repository") == \
        "data, ., and /srv/sercore-test/repository"


# --- the published book's configuration: citations, repository and launch buttons, API docstrings ---------

ROOT = Path(__file__).resolve().parents[1]


def _load_extension():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sercore_publish", ROOT / "book" / "_ext" / "sercore_publish.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cited_keys() -> set[str]:
    import re

    texts = [path.read_text(encoding="utf-8") for path in (ROOT / "book").glob("*.md")]
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        texts += ["".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                  if c["cell_type"] == "markdown"]
    return {key.strip() for text in texts for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text)
            for key in group.split(",")}


def test_every_citation_is_in_the_bibliography_and_the_required_works_are_cited():
    import re

    bib = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), re.M))
    cited = _cited_keys()
    assert cited <= bib, f"cited but not in book/references.bib: {sorted(cited - bib)}"
    # the five studies, fla, the three corpora, the three toolkits, VTLP, CCC and espeak-ng are each cited somewhere
    assert bib <= cited, f"in the bibliography but cited nowhere: {sorted(bib - cited)}"
    assert len(bib) == 15


@pytest.mark.parametrize("remote, expected", [
    ("git@github.com:someone/sercore.git", "https://github.com/someone/sercore"),
    ("https://github.com/someone/sercore.git", "https://github.com/someone/sercore"),
    ("https://github.com/someone/sercore", "https://github.com/someone/sercore"),
    ("https://gitlab.example.org/x/sercore.git", None),
])
def test_repository_address_from_a_github_origin(tmp_path, remote, expected):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", remote], check=True)
    assert _load_extension().repository_url(tmp_path, environ={}) == expected


def test_repository_address_from_the_environment_comes_first(tmp_path):
    ext = _load_extension()
    assert ext.repository_url(tmp_path, environ={"GITHUB_REPOSITORY": "org/repo"}) == "https://github.com/org/repo"
    assert ext.repository_url(tmp_path, environ={"SERCORE_REPOSITORY_URL": "https://github.com/a/b/",
                                                 "GITHUB_REPOSITORY": "org/repo"}) == "https://github.com/a/b"
    assert ext.repository_url(tmp_path, environ={}) is None  # not a git repository: no buttons


def test_launch_buttons_of_an_executed_page_open_its_source_notebook():
    ext = _load_extension()
    assert ext.source_notebooks(ROOT)["book/executed/data"] == "notebooks/data.ipynb"
    binder = "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/book/executed/data.ipynb"
    context = {"header_buttons": [{"label": "launch-buttons", "buttons": [{"text": "Binder", "url": binder}]}]}
    ext._launch_sources(None, "book/executed/data", "page.html", context, None)
    assert context["header_buttons"][0]["buttons"][0]["url"] == \
        "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/notebooks/data.ipynb"


def test_docstrings_are_shown_as_written():
    lines = ["Scores = (Q / sqrt(d)) K^T; *all* keys |x|", "    indented", "", ""]
    _load_extension()._docstring_as_text(None, "function", "f", None, {}, lines)
    assert lines == [".. code-block:: text", "   :class: sercore-docstring", "",
                     "   Scores = (Q / sqrt(d)) K^T; *all* keys |x|", "       indented", ""]


def _css_rules(text: str) -> dict:
    """{selector: {property: value}} of a plain stylesheet (no nesting, no @media)."""
    import re

    rules = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", re.sub(r"/\*.*?\*/", "", text, flags=re.S)):
        declarations = dict(part.split(":", 1) for part in body.split(";") if ":" in part)
        for selector in selectors.split(","):
            rules.setdefault(" ".join(selector.split()), {}).update(
                {key.strip(): value.strip() for key, value in declarations.items()})
    return rules


def test_notebook_code_and_outputs_wrap_and_wide_tables_scroll():
    import inspect

    from myst_nb.core import render

    rules = _css_rules((ROOT / "book" / "_static" / "sercore.css").read_text(encoding="utf-8"))
    for selector in ("div.cell_input pre", "div.cell_output pre"):
        assert rules[selector]["white-space"] == "pre-wrap" and rules[selector]["overflow-wrap"] == "anywhere"
    assert rules["div.cell_output .output.text_html"]["overflow-x"] == "auto"
    # the class names are the ones the installed MyST-NB gives the cells it renders
    source = inspect.getsource(render)
    assert all(f'"{name}"' in source for name in ("cell_input", "cell_output", "text_html"))
    assert "sercore.css" in (ROOT / "_config.yml").read_text(encoding="utf-8")


def test_mathjax_is_staged_from_its_es5_build(tmp_path):
    ext = _load_extension()
    es5 = tmp_path / "static" / "mathjax" / "es5"
    for part in ("tex-chtml.js", "input/tex/extensions/ams.js", "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
                 "output/svg/left-out.js", "a11y/semantic-enrich.js", "ui/menu.js", "sre/mathmaps/en.json",
                 "tex-svg.js"):
        (es5 / part).parent.mkdir(parents=True, exist_ok=True)
        (es5 / part).write_text(part)
    (es5.parent / "LICENSE").write_text("Apache-2.0")
    staged = ext.stage_mathjax(es5, tmp_path / "staging") / "mathjax"
    files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
    assert files == ["LICENSE", "a11y/semantic-enrich.js", "input/tex/extensions/ams.js",
                     "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff", "sre/mathmaps/en.json", "tex-chtml.js",
                     "ui/menu.js"]


def test_a_missing_mathjax_package_is_one_clear_error(monkeypatch):
    import sys

    from sphinx.errors import ExtensionError

    monkeypatch.setitem(sys.modules, "mathjax", None)  # import mathjax now raises ImportError
    with pytest.raises(ExtensionError, match=r"django-static-mathjax"):
        _load_extension().mathjax_source()


def test_the_pages_workflow_builds_the_default_book_and_deploys_it():
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    runs = " ".join(step.get("run", "") for step in build["steps"])
    uses = [step.get("uses", "").split("@")[0] for step in build["steps"] + deploy["steps"]]
    assert "--profile default" in runs and "download.pytorch.org/whl/cpu" in runs
    assert "actions/upload-pages-artifact" in uses and "actions/deploy-pages" in uses
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html" and deploy["needs"] == "build"
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    # progress survives a build cut off by the time limit: restored from the newest, saved always, same paths
    restore = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/cache/restore"))
    save = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/cache/save"))
    book_step = next(s for s in build["steps"] if "sercore book" in s.get("run", ""))
    assert save["if"] == "always()" and save["with"]["path"] == restore["with"]["path"]
    assert save["with"]["key"].startswith(restore["with"]["restore-keys"])
    assert "runs" in restore["with"]["path"].split() and book_step["timeout-minutes"] < build["timeout-minutes"]


# --- the real-browser check (book/check_browser.py) ------------------------------------------------------

PNG_1X1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _load_checker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_browser", ROOT / "book" / "check_browser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _site(html: Path) -> None:
    import base64

    (html / "_images").mkdir(parents=True)
    (html / "_images" / "good.png").write_bytes(base64.b64decode(PNG_1X1))
    (html / "_images" / "broken.png").write_text("not a PNG")
    (html / "index.html").write_text(
        '<html><body><img src="_images/good.png"><a href="chapter.html">chapter</a>'
        '<a href="https://example.org/elsewhere">not followed</a></body></html>')
    (html / "chapter.html").write_text(
        '<html><body><img src="_images/broken.png"><a href="gone.html#x">gone</a>'
        '<div class="cell_output"><pre>Traceback (most recent call last):\n  ZeroDivisionError</pre></div>'
        '<div class="cell_output"><pre>loaded /usr/lib/python3/dist-packages/x.py</pre></div>'
        '<span class="math">\\(x^2\\)</span></body></html>')


@pytest.mark.skipif(_load_checker().find_browser() is None, reason="no Chromium installed (apt-get install -y chromium)")
def test_the_browser_check_finds_what_a_reader_would_see_broken(tmp_path, capsys):
    checker = _load_checker()
    html = tmp_path / "html"
    _site(html)
    code = checker.main([str(html), "--screenshots", str(tmp_path / "shots")])
    out = capsys.readouterr().out
    failures = sorted(line.removeprefix("[browser] FAIL ") for line in out.splitlines() if "FAIL" in line)
    assert code == 1
    assert failures == ["chapter.html: 1 of 1 math element(s) shown as raw LaTeX",
                        "chapter.html: 404 link gone.html#x (no gone.html)",
                        "chapter.html: Python traceback in 1 output cell(s)",
                        "chapter.html: broken image _images/broken.png",
                        "chapter.html: machine path in the page's text: …loaded /usr/lib/python3/dist-packages/x.py…"]
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == ["chapter.png", "index.png"]
    assert (tmp_path / "shots" / "index.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(_load_checker().find_browser() is None, reason="no Chromium installed (apt-get install -y chromium)")
def test_the_browser_check_passes_a_clean_book(tmp_path):
    html = tmp_path / "html"
    _site(html)
    (html / "chapter.html").write_text('<html><body><img src="_images/good.png"><a href="index.html">up</a></body></html>')
    assert _load_checker().main([str(html), "--screenshots", str(tmp_path / "shots")]) == 0


def test_the_browser_check_reports_machine_paths_with_the_page_and_the_text(tmp_path):
    checker = _load_checker()
    html, root, home = tmp_path / "html", tmp_path / "clone", "/home/reader"
    page = html / "chapter.html"
    prose = (f"Corpus {root}/data/demo-smoke, cache {home}/.cache/sercore; an example: papermill ... /tmp/data.ipynb; "
             "https://example.org/tmp/page and ~/.cache/sercore and data/demo-smoke are fine")
    outputs = ["features in ~/.cache/sercore", "warning from /usr/lib/python3/dist-packages/torch/x.py: slow",
               f"cwd {root}/notebooks"]
    probe = {"images": [], "links": [], "outputs": outputs, "text": prose + "\n" + "\n".join(outputs), "errors": 0,
             "math": 0, "raw": 0}
    found = [line for line in checker.problems(page, html, probe, root) if "machine path" in line]
    assert found[0].startswith("chapter.html: machine path in the page's text: …")
    assert f"Corpus {root}/data" in found[0]
    assert [line.split("…")[1] for line in found[1:]] == [
        "warning from /usr/lib/python3/dist-packages/torch/x.py: slow"]  # once each; prose may say /tmp/ ...
    homes = checker.machine_paths(prose, [], root, home=home)
    assert len(homes) == 2 and f"cache {home}/.cache" in homes[1]  # ... but never the home folder
    clean = {**probe, "text": "data/demo-smoke, ~/.cache/sercore, /tmp/x in prose", "outputs": ["runs/smoke/p"]}
    assert checker.problems(page, html, clean, root) == []


def test_the_browser_check_without_a_browser_says_how_to_install_one(tmp_path, capsys):
    html = tmp_path / "html"
    _site(html)
    assert _load_checker().main([str(html), "--browser", "no-such-browser-xyz"]) == 2
    assert "apt-get install -y chromium" in capsys.readouterr().err


@pytest.mark.skipif(_load_checker().find_browser() is None, reason="no Chromium installed (apt-get install -y chromium)")
def test_a_long_notebook_line_wraps_inside_the_page_in_a_browser(tmp_path):
    import asyncio
    import shutil

    checker = _load_checker()
    html = tmp_path / "html"
    (html / "_static").mkdir(parents=True)
    shutil.copy(ROOT / "book" / "_static" / "sercore.css", html / "_static" / "sercore.css")
    long = "x = " + " + ".join(f"value_{i}" for i in range(120))
    # pydata-sphinx-theme's own rule for pre (overflow: auto) beside ours, in a column narrower than the line
    (html / "index.html").write_text(
        '<html><head><style>pre { overflow: auto; white-space: pre; } main { width: 600px; }</style>'
        '<link rel="stylesheet" href="_static/sercore.css"></head><body><main>'
        f'<div class="cell"><div class="cell_input"><pre id="code">{long}</pre></div>'
        f'<div class="cell_output"><pre id="printed">{long}</pre></div></div></main></body></html>')

    async def widths():
        browser = checker.Browser(checker.find_browser())
        try:
            await browser.start()
            await browser.visit((html / "index.html").as_uri(), settle=0.2)
            result = await browser.call("Runtime.evaluate", returnByValue=True, expression=(
                "JSON.stringify(['code', 'printed'].map(id => { const e = document.getElementById(id); "
                "return [e.scrollWidth, e.clientWidth, e.getClientRects()[0].height]; }))"))
            return json.loads(result["result"]["value"])
        finally:
            browser.close()

    for scroll, client, height in asyncio.run(widths()):
        assert scroll <= client and height > 40  # nothing past the right edge: the line wrapped onto several
