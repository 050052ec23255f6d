"""Sphinx extension for the published book (loaded through _config.yml's sphinx.local_extensions).

Repository and launch buttons. The buttons need the repository's address, which a clone does not know
for sure: it is taken from $SERCORE_REPOSITORY_URL, else from GitHub Actions' $GITHUB_REPOSITORY (set on
the Pages runner), else from `git remote get-url origin` when that is a GitHub remote. With none of them the
repository and launch buttons are left out (the build log says so) rather than point at a wrong repository.

The book's pages are executed copies (book/executed/*.ipynb, written by `python -m sercore book` and not
in git), so a launch button built from the page's own path would open a file that does not exist in the
repository. The Binder and Colab links of an executed page are pointed at its source notebook instead
(book/runs.yaml maps each executed copy to its notebook), which runs top to bottom with its defaults.

Math offline. Sphinx would load MathJax from a CDN when the page is viewed, so a reader without a network
sees raw LaTeX. The book ships MathJax 3 instead: the copy in the django-static-mathjax package (the [book]
extra; a plain copy of MathJax's es5 build, Apache-2.0) is staged at build time into _static/mathjax/ (the
TeX-to-HTML component, its fonts, its extensions, accessibility and menu parts, and the licence) and
mathjax_path points there. Without that package the build stops with a one-line error naming it.

The API reference (book/api.md, autodoc). sercore's docstrings are plain text, not reStructuredText (their
`*`, `|`, indented lists and quotes would be read as markup and fail the -W build), so each docstring is
shown as it is written: a text block that wraps long lines (book/_static/sercore.css).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from sphinx.errors import ExtensionError
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


def repository_url(root: Path = ROOT, environ=os.environ) -> str | None:
    """The https address of the GitHub repository the book is built from, or None when not known."""
    if environ.get("SERCORE_REPOSITORY_URL"):
        return environ["SERCORE_REPOSITORY_URL"].rstrip("/")
    if environ.get("GITHUB_REPOSITORY"):
        return f"https://github.com/{environ['GITHUB_REPOSITORY']}"
    try:
        remote = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.fullmatch(r"(?:https://github\.com/|git@github\.com:)([\w.-]+/[\w.-]+?)(?:\.git)?/?", remote)
    return f"https://github.com/{match.group(1)}" if match else None


def source_notebooks(root: Path = ROOT) -> dict[str, str]:
    """{executed copy's docname: its source notebook's path}, from book/runs.yaml."""
    runs = (yaml.safe_load((root / "book" / "runs.yaml").read_text(encoding="utf-8")) or {}).get("runs") or []
    return {str(run["output"]).removesuffix(".ipynb"): run["notebook"] for run in runs}


def _set_repository(app, config) -> None:
    options = config.html_theme_options
    url = repository_url()
    if url:
        options.update(repository_url=url, use_repository_button=True, use_issues_button=True)
        return
    LOGGER.info("[sercore] repository address unknown (no $SERCORE_REPOSITORY_URL, $GITHUB_REPOSITORY or GitHub "
                "origin): the book is built without repository and launch buttons")
    options.update(use_repository_button=False, use_issues_button=False, launch_buttons={})


def _launch_sources(app, pagename, templatename, context, doctree) -> None:
    source = source_notebooks().get(pagename)
    if source is None:
        return
    for button in context.get("header_buttons", []):
        if button.get("label") != "launch-buttons":
            continue
        for launch in button["buttons"]:
            if "url" in launch:
                launch["url"] = launch["url"].replace(f"{pagename}.ipynb", source)


# What of MathJax's es5 build the pages use: the combined TeX input + CommonHTML output component, the
# parts it loads on demand (TeX extensions, fonts, the menu's accessibility and speech parts), the licence.
MATHJAX_PARTS = ("tex-chtml.js", "input", "output/chtml", "a11y", "ui", "sre", "../LICENSE")


def mathjax_source() -> Path:
    """The es5 folder of the installed MathJax copy (package django-static-mathjax, module `mathjax`)."""
    try:
        import mathjax
    except ImportError:
        raise ExtensionError("MathJax for offline math is not installed: pip install -e '.[book]' "
                             "(package django-static-mathjax)") from None
    es5 = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise ExtensionError(f"{es5}: no tex-chtml.js in the installed django-static-mathjax package")
    return es5


def stage_mathjax(es5: Path, staging: Path) -> Path:
    """Copy MATHJAX_PARTS of `es5` into staging/mathjax/ (kept when already there); return staging."""
    target = staging / "mathjax"
    if not (target / "tex-chtml.js").is_file():
        shutil.rmtree(target, ignore_errors=True)
        for part in MATHJAX_PARTS:
            source = (es5 / part).resolve()
            destination = target / Path(part).name if part.startswith("..") else target / part
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination)
            else:
                shutil.copy2(source, destination)
    return staging


def _offline_math(app, config) -> None:
    config.mathjax_path = "mathjax/tex-chtml.js"  # relative: served from the book's own _static/


def _stage_math(app) -> None:
    if app.builder.format != "html":
        return
    staging = stage_mathjax(mathjax_source(), Path(app.doctreedir).parent / "sercore-static")
    app.config.html_static_path.append(str(staging))


def _docstring_as_text(app, what, name, obj, options, lines) -> None:
    text = [line.rstrip() for line in lines]
    while text and not text[-1]:
        text.pop()
    if not text:
        return
    lines[:] = [".. code-block:: text", "   :class: sercore-docstring", ""] + [f"   {line}" if line else ""
                                                                             for line in text] + [""]


def setup(app):
    app.connect("config-inited", _set_repository)
    app.connect("config-inited", _offline_math)
    app.connect("builder-inited", _stage_math)
    app.connect("autodoc-process-docstring", _docstring_as_text)
    # after sphinx-book-theme's add_launch_buttons (priority 501)
    app.connect("html-page-context", _launch_sources, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
