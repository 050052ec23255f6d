"""The book driver: generate the demonstration corpus, run the notebooks with papermill, build the HTML.

    python -m sercore book --profile default

book/runs.yaml lists the pages: which notebook, where its executed copy goes, and its parameters
("{profile}" and "{corpus}" are filled in). A page is re-executed only when its inputs changed: the hash of
(notebook, parameters, profile file, sercore's source) is stored in the executed notebook's metadata and
compared before running. Jupyter Book then builds with execution off, from the table of contents entries
that exist; missing pages are named, not silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sercore.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(__file__).resolve().parent
RUNS_FILE = ROOT / "book" / "runs.yaml"


def demo_corpus_path(profile: str) -> Path:
    return ROOT / "data" / f"demo-{Path(profile).stem}"


def load_runs(runs_file: Path = RUNS_FILE) -> list[dict]:
    with open(runs_file, encoding="utf-8") as handle:
        runs = (yaml.safe_load(handle) or {}).get("runs") or []
    for run in runs:
        missing = {"name", "notebook", "output"} - set(run)
        if missing:
            raise ValueError(f"{runs_file}: run {run!r} lacks {', '.join(sorted(missing))}")
    return runs


def _fill(value, names: dict):
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {key: _fill(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, names) for item in value]
    return value


def inputs_hash(notebook: Path, parameters: dict, profile: str) -> str:
    """What a page's result depends on: its notebook, parameters, profile file and sercore's source."""
    digest = hashlib.sha256()
    digest.update(notebook.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True).encode())
    digest.update(json.dumps(load_profile(profile), sort_keys=True, default=str).encode())
    for source in sorted(PACKAGE.rglob("*.py")) + sorted(PACKAGE.rglob("*.yaml")):
        digest.update(str(source.relative_to(PACKAGE)).encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _stored_hash(executed: Path) -> str | None:
    try:
        return json.loads(executed.read_text(encoding="utf-8"))["metadata"].get("sercore", {}).get("inputs_hash")
    except (OSError, ValueError, KeyError):
        return None


def _store_hash(executed: Path, digest: str, parameters: dict, seconds: float) -> None:
    from sercore.provenance import atomic_write_text, provenance

    notebook = json.loads(executed.read_text(encoding="utf-8"))
    notebook["metadata"]["sercore"] = {"inputs_hash": digest, "seconds": round(seconds, 1),
                                       **provenance(parameters)}
    atomic_write_text(executed, json.dumps(notebook, indent=1) + "\n")


def run_notebooks(profile: str = "default", only: list[str] | None = None, force: bool = False,
                  runs_file: Path = RUNS_FILE) -> list[dict]:
    """Execute each page of book/runs.yaml whose inputs changed; return one status row per page."""
    import papermill

    # Progress bars are for people at a terminal; in a rendered page they are hundreds of stderr lines.
    os.environ.setdefault("TQDM_DISABLE", "1")
    corpus = demo_corpus_path(profile)
    names = {"profile": profile, "corpus": str(corpus), "root": str(ROOT)}
    rows = []
    for run in load_runs(runs_file):
        if only and run["name"] not in only:
            continue
        notebook, executed = ROOT / run["notebook"], ROOT / run["output"]
        if not notebook.is_file():
            rows.append({"page": run["name"], "status": f"missing notebook {run['notebook']}"})
            continue
        parameters = _fill(run.get("parameters", {}), names)
        digest = inputs_hash(notebook, parameters, profile)
        if not force and executed.is_file() and _stored_hash(executed) == digest:
            rows.append({"page": run["name"], "status": "unchanged, kept"})
            continue
        executed.parent.mkdir(parents=True, exist_ok=True)
        print(f"[book] running {run['notebook']} -> {run['output']} with {parameters}", flush=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(str(notebook), str(executed), parameters=parameters,
                                       kernel_name="python3", language="python", cwd=str(executed.parent), progress_bar=False)
        except papermill.PapermillExecutionError as error:
            rows.append({"page": run["name"], "status": f"FAILED: {error.ename}: {error.evalue}"})
            continue
        _store_hash(executed, digest, parameters, time.perf_counter() - start)
        rows.append({"page": run["name"], "status": f"executed in {time.perf_counter() - start:.0f} s"})
    return rows


def _toc_files(toc: dict) -> list[str]:
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
    return files


def _exists(entry: str) -> bool:
    return any((ROOT / f"{entry}{suffix}").is_file() for suffix in (".md", ".ipynb", ".rst"))


def build_html(strict: bool = False) -> tuple[int, list[str]]:
    """Build the book from the toc entries that exist; return (exit code, missing entries)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    missing = [entry for entry in _toc_files(toc) if not _exists(entry)]
    filtered = dict(toc)
    filtered["parts"] = [
        {**part, "chapters": [c for c in part.get("chapters", []) if _exists(c["file"])]}
        for part in toc.get("parts", [])
    ]
    filtered["parts"] = [part for part in filtered["parts"] if part["chapters"]]
    toc_path = ROOT / "_toc.filtered.yml"
    toc_path.write_text(yaml.safe_dump(filtered, sort_keys=False), encoding="utf-8")
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), "--toc", str(toc_path)]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    return subprocess.run(command, cwd=ROOT).returncode, missing


def book(profile: str = "default", only=None, force: bool = False, build: bool = True, strict: bool = False) -> int:
    from sercore.data import generate_corpus

    generate_corpus(demo_corpus_path(profile), profile=profile, reuse=True)
    rows = run_notebooks(profile, only=only, force=force)
    for row in rows:
        print(f"[book] {row['page']:<14} {row['status']}")
    failed = [row for row in rows if row["status"].startswith(("FAILED", "missing"))]
    code = 0
    if build:
        code, missing = build_html(strict=strict)
        if missing:
            print("[book] not in the book yet (no page written for these toc entries):\n  "
                  + "\n  ".join(missing))
        if code == 0:
            print(f"[book] HTML: {ROOT / '_build' / 'html' / 'index.html'}")
    return code or (1 if failed else 0)


def register(subparsers) -> None:
    parser = subparsers.add_parser("book", help="generate the demo corpus, run the notebooks, build the HTML book",
                                   description=__doc__)
    parser.add_argument("--profile", default="default", help="smoke | default | paper | path to a profile YAML")
    parser.add_argument("--only", nargs="*", help="run only these pages (names in book/runs.yaml)")
    parser.add_argument("--force", action="store_true", help="re-execute pages even when their inputs are unchanged")
    parser.add_argument("--no-build", dest="build", action="store_false", help="run the notebooks, skip the HTML")
    parser.add_argument("--strict", action="store_true", help="fail the build on Sphinx warnings (-W -n)")
    parser.set_defaults(func=lambda args: book(args.profile, args.only, args.force, args.build, args.strict))
