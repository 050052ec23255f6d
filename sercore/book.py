"""The book driver: generate the demonstration corpus, run the notebooks with papermill, build the HTML.

    python -m sercore book --profile default

book/runs.yaml lists the pages: which notebook, where its executed copy goes, its parameters ("{profile}",
"{corpus}" and "{root}" are filled in; any other placeholder, or a timeout that is not a positive number, is
refused naming the file) and optionally a per-cell `timeout` in seconds, `after` (pages it runs after: their
output is its input) and `reads` (glob patterns, placeholders filled as in parameters, of files outside the
notebook that its result depends on, e.g. the studies' metrics.json for the summary page). A page is re-executed
only when its inputs changed: the hash of (notebook, parameters, profile, the library source the page
imports, the content of the files its `reads` match) is stored in the executed notebook's metadata and
compared before running. The library source is
the import closure of the notebook's `import sercore...` / `from sercore... import` lines, read with `ast`
(sercore.source_key, dispatch=True: every module a page's training runs could pick by name counts), so an
edit to sercore/plots.py re-executes the pages that draw with it and none of the others; the runs inside a
re-executed page retrain only when their own code key changed (sercore.train.run).

Each page runs on its own: a cell error, a dead kernel or a cell timeout fails that page, and the driver goes
on with the next one. papermill writes into a hidden temporary notebook beside the executed copy, which is
renamed over it only once execution finished and the hash is stored, so a failed or interrupted page leaves
its previous executed copy as it was (Ctrl-C, or SIGTERM while `book` runs, stops the run after removing the
temporary file). The temporary's name carries the driver's pid; at start the driver removes the ones whose
writer is no longer alive (a build killed outright) and leaves a live concurrent build's alone. Jupyter Book
then builds with execution off, from the table of contents entries that can be served: a page is left out
of the HTML when it failed in this run or when its executed copy is absent or stale (its stored hash is not
that of the current inputs, e.g. a page not re-run under --only), so no half-executed or out-of-date page is
built. The driver prints a table (page, status, seconds, reason), names the pages left out and why, ends
with the time table (each page's seconds, the corpus / pages / HTML stages, the total) and exits non-zero
when a page failed (130 when interrupted by Ctrl-C, 143 by SIGTERM). --workers N trains each page's grid of
runs in N one-thread processes (sercore.results.run_grid; default $SERCORE_GRID_WORKERS, else one per usable
core, at most 4); --timing builds a second time with nothing changed
and prints the first (cold, from a fresh clone) and the warm figures with the phases of every run trained.

What is published shows no machine path. Path parameters inside the repository ("{corpus}", "{root}") are
passed to papermill relative to the page's working directory (its executed copy's folder), so the inputs
hash does not depend on where the clone lives. In the executed copy, papermill's injected-parameters cell is
tagged remove-cell and followed by a one-line "Run with" note (repository-relative paths and the command that
re-runs the page); text outputs have the repository's absolute path rewritten as repository-relative and the
home folder as "~" (see _finish_copy).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from sercore.profiles import load_profile
from sercore.provenance import current_umask

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(__file__).resolve().parent
RUNS_FILE = ROOT / "book" / "runs.yaml"
PLACEHOLDERS = ("profile", "corpus", "root")  # what "{...}" in a run's parameters may name

# Statuses of a page in one driver run; the first two leave a servable executed copy behind.
OK_STATUSES = ("executed", "unchanged")
FAILED_STATUSES = ("failed", "missing")
INTERRUPTED_CODES = (130, 143)  # exit codes of a run stopped by Ctrl-C, by SIGTERM (128 + the signal)
TEMPORARY = re.compile(r"\.pid(\d+)\.[^.]+\.running\.ipynb$")  # .<page>.pid<pid>.<random>.running.ipynb


class Terminated(KeyboardInterrupt):
    """SIGTERM during `book`: a KeyboardInterrupt, so it takes Ctrl-C's way out (temporary copy removed, the
    kernel shut down by nbclient, the run stopped). sercore.cli exits with exit_status."""

    exit_status = INTERRUPTED_CODES[1]


def demo_corpus_path(profile: str) -> Path:
    return ROOT / "data" / f"demo-{Path(profile).stem}"


def load_runs(runs_file: Path = RUNS_FILE) -> list[dict]:
    with open(runs_file, encoding="utf-8") as handle:
        runs = (yaml.safe_load(handle) or {}).get("runs") or []
    for run in runs:
        missing = {"name", "notebook", "output"} - set(run)
        if missing:
            raise ValueError(f"{runs_file}: run {run!r} lacks {', '.join(sorted(missing))}")
        unknown = sorted(_placeholders(run.get("parameters", {})) - set(PLACEHOLDERS))
        if unknown:
            raise ValueError(f"{runs_file}: run {run['name']!r} uses {', '.join('{' + u + '}' for u in unknown)}"
                             f" in its parameters; the driver fills only {', '.join(PLACEHOLDERS)}")
        timeout = run.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout <= 0):
            raise ValueError(f"{runs_file}: run {run['name']!r} has timeout {timeout!r}; expected seconds > 0")
        for key in ("after", "reads"):
            if not isinstance(run.get(key, []), list) or not all(isinstance(v, str) for v in run.get(key, [])):
                raise ValueError(f"{runs_file}: run {run['name']!r} has {key} {run[key]!r}; expected a list of strings")
        unknown = sorted(_placeholders(run.get("reads", [])) - set(PLACEHOLDERS))
        if unknown:
            raise ValueError(f"{runs_file}: run {run['name']!r} uses {', '.join('{' + u + '}' for u in unknown)}"
                             f" in its reads; the driver fills only {', '.join(PLACEHOLDERS)}")
    return ordered(runs, runs_file)


def ordered(runs: list[dict], source="runs") -> list[dict]:
    """The runs in their listed order, except that a run comes after every page named in its `after`; an
    unknown name or a cycle is refused naming `source`."""
    names = [run["name"] for run in runs]
    for run in runs:
        unknown = sorted(set(run.get("after", [])) - set(names))
        if unknown:
            raise ValueError(f"{source}: run {run['name']!r} comes after {', '.join(unknown)}: no such page; "
                             f"pages: {', '.join(names)}")
    done, result, waiting = set(), [], list(runs)
    while waiting:
        ready = next((run for run in waiting if set(run.get("after", [])) <= done), None)
        if ready is None:
            raise ValueError(f"{source}: runs {', '.join(r['name'] for r in waiting)} wait on each other (after)")
        waiting.remove(ready)
        result.append(ready)
        done.add(ready["name"])
    return result


def _placeholders(value) -> set[str]:
    """The "{name}" fields used in a parameters value (strings, dicts and lists of them)."""
    if isinstance(value, str):
        return {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
    if isinstance(value, dict):
        return set().union(*map(_placeholders, value.values()))
    if isinstance(value, list):
        return set().union(*map(_placeholders, value))
    return set()


def _fill(value, names: dict):
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {key: _fill(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, names) for item in value]
    return value


def inputs_hash(notebook: Path, parameters: dict, profile: str, read: str | None = None) -> str:
    """What a page's result depends on: its notebook, parameters, profile, the library modules it imports
    (page_modules) and, for a page with `reads`, the files it reads (read_key; None for the others, whose
    hash stays what it was before `reads` existed)."""
    from sercore import source_key

    digest = hashlib.sha256()
    digest.update(notebook.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True).encode())
    digest.update(json.dumps(load_profile(profile), sort_keys=True, default=str).encode())
    digest.update(source_key.source_key(page_modules(notebook), source_key.PACKAGE).encode())
    if read is not None:
        digest.update(read.encode())
    return digest.hexdigest()


def read_key(patterns: list[str], root: Path) -> str:
    """A digest of the files matching `patterns` (filled globs; "**" spans folders; relative ones from `root`):
    each one's repository-relative path and content, so adding, removing or rewriting one changes it."""
    root = Path(os.path.abspath(root))
    files = {Path(os.path.abspath(root / match)) for pattern in patterns
             for match in glob.glob(pattern, root_dir=root, recursive=True)}
    digest = hashlib.sha256()
    for path in sorted(path for path in files if path.is_file()):
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        digest.update(f"{name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def page_modules(notebook: Path) -> set[str]:
    """The sercore modules a page runs: the import closure of its code cells' sercore imports, every module
    a registry names included (sercore.source_key, dispatch=True). A notebook that is not JSON, or a cell
    that is not Python (IPython syntax other than a %magic or !command line), makes the page depend on every
    module, as a missed import would serve a stale page; papermill reports a broken page when it runs it."""
    from sercore import source_key

    try:
        cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
        sources = ["".join(cell.get("source", "")) for cell in cells if cell.get("cell_type") == "code"]
        entries = set().union(*(source_key.notebook_imports(code, str(notebook), source_key.PACKAGE)
                                for code in sources))
    except (ValueError, KeyError, TypeError, AttributeError, SyntaxError):
        return source_key.all_modules(source_key.PACKAGE)
    return source_key.module_closure(entries, source_key.PACKAGE, dispatch=True)


def _stored_hash(executed: Path) -> str | None:
    try:
        return json.loads(executed.read_text(encoding="utf-8"))["metadata"].get("sercore", {}).get("inputs_hash")
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def _finish_copy(executed: Path, run: dict, root: Path, digest: str, parameters: dict, seconds: float) -> None:
    """Make a notebook papermill just finished (the temporary copy, renamed afterwards) fit to publish, and
    store its inputs hash.

    papermill's injected-parameters cell is tagged remove-cell (the HTML does not show it) and a short "Run
    with" note takes its place, its paths relative to the repository root. In text outputs (streams, text/*
    data, tracebacks) the repository's absolute path is written as a repository-relative one and the home
    folder as "~", so no machine path is published; images and other data are left as they are.
    """
    from sercore.provenance import provenance

    notebook = json.loads(executed.read_text(encoding="utf-8"))
    scrub = _path_scrubber(root)
    for index, cell in enumerate(notebook["cells"]):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags:
            tags.append("remove-cell")
            note = _run_with_note(run, root, parameters)
            if (notebook["nbformat"], notebook["nbformat_minor"]) < (4, 5):
                del note["id"]  # cell ids exist from nbformat 4.5 on
            notebook["cells"].insert(index + 1, note)
            break
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = _scrub_text(output["text"], scrub)
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/"):
                    output["data"][mime] = _scrub_text(value, scrub)
            if "traceback" in output:
                output["traceback"] = [scrub(line) for line in output["traceback"]]
                output["evalue"] = scrub(output.get("evalue", ""))
    papermill_meta = notebook["metadata"].get("papermill", {})
    # papermill records the absolute input path and the hidden temporary output name
    papermill_meta.update(input_path=run["notebook"], output_path=run["output"])
    notebook["metadata"]["sercore"] = {"inputs_hash": digest, "seconds": round(seconds, 1),
                                       **provenance(parameters)}
    executed.write_text(json.dumps(notebook, indent=1) + "\n", encoding="utf-8")


def _path_scrubber(root: Path):
    """A function rewriting, in a string, the absolute path of `root` as repository-relative and home as "~"."""
    # the root as given and resolved (they differ through a symlink); the longer one first
    roots = sorted({str(Path(root)), str(Path(root).resolve())}, key=len, reverse=True)
    rules = [(re.compile(re.escape(path) + r"(/|(?![\w-]|\.\w))"), lambda match: "" if match.group(1) == "/" else ".")
             for path in roots]
    home = str(Path.home())
    if home not in ("", "/"):
        rules.append((re.compile(re.escape(home) + r"(?=/|(?![\w-]|\.\w))"), lambda match: "~"))

    def scrub(text: str) -> str:
        for pattern, replace in rules:
            text = pattern.sub(replace, text)
        return text

    return scrub


def _scrub_text(value, scrub):
    # nbformat stores text as a string or as a list of lines
    return [scrub(line) for line in value] if isinstance(value, list) else scrub(value)


def _run_with_note(run: dict, root: Path, parameters: dict) -> dict:
    """A Markdown cell saying what this page ran with (repository-relative paths) and how to re-run it."""
    folder = (Path(root) / run["output"]).parent
    shown = {key: _repository_relative(value, folder, root) for key, value in parameters.items()}
    settings = ", ".join(f"`{key} = {value!r}`" for key, value in shown.items()) or "its default parameters"
    profile = shown.get("profile", "default")
    text = (f"*Run with* {settings} (paths relative to the repository root). Re-run this page: "
            f"`python -m sercore book --profile {profile} --only {run['name']}`.")
    # a path outside the repository (a user's corpus or profile) is shown with its home folder as "~"
    return {"cell_type": "markdown", "id": "sercore-run-with", "metadata": {"tags": ["sercore-run-with"]},
            "source": _path_scrubber(root)(text)}


def _repository_relative(value, folder: Path, root: Path):
    """A page-relative path parameter (see _page_names) shown relative to the repository root."""
    if not isinstance(value, str) or "/" not in value or Path(value).is_absolute():
        return value
    target = os.path.normpath(Path(folder) / value)
    inside = os.path.relpath(target, Path(root))
    return value if inside.startswith("..") else inside


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def _failure_reason(error: BaseException) -> str:
    """One line saying why a page's execution did not finish."""
    import papermill

    if isinstance(error, papermill.PapermillExecutionError):
        return _one_line(f"cell {error.exec_count}: {error.ename}: {error.evalue}")
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    name = type(error).__name__
    if isinstance(error, DeadKernelError):
        return f"the kernel died ({name}: {_one_line(error)})"
    if isinstance(error, CellTimeoutError):
        # nbclient's message is several lines with a preview of the cell; its first line says enough.
        return f"{name}: {(str(error).strip().splitlines() or ['a cell timed out'])[0]}"
    return _one_line(f"{name}: {error}") or name


def _plan(run: dict, root: Path, profile: str, names: dict) -> tuple[Path, Path, dict, str | None]:
    """(notebook, executed copy, parameters, current inputs hash or None when the notebook is missing)."""
    notebook, executed = root / run["notebook"], root / run["output"]
    parameters = _fill(run.get("parameters", {}), _page_names(names, root, executed.parent))
    read = read_key(_fill(run["reads"], names), root) if run.get("reads") else None
    digest = inputs_hash(notebook, parameters, profile, read) if notebook.is_file() else None
    return notebook, executed, parameters, digest


def _page_names(names: dict, root: Path, folder: Path) -> dict:
    """`names` with each absolute path inside `root` made relative to `folder`, the page's working directory.

    papermill runs a page from its executed copy's folder, so a relative path means the same file; the
    executed copy then shows no machine path, and its inputs hash is the same wherever the clone lives.
    """
    # abspath, not resolve: a symlinked corpus folder inside the repository stays a path inside it
    root = Path(os.path.abspath(root))
    relative = {}
    for key, value in names.items():
        if isinstance(value, str) and Path(value).is_absolute() and Path(os.path.abspath(value)).is_relative_to(root):
            value = os.path.relpath(os.path.abspath(value), os.path.abspath(folder))
        relative[key] = value
    return relative


def execute_pages(runs: list[dict], root: Path, profile: str, names: dict | None = None,
                  only: list[str] | None = None, force: bool = False, timeout: float | None = None,
                  kernel: str = "python3") -> list[dict]:
    """Execute the pages of `runs` (load_runs's list; paths relative to `root`) whose inputs changed.

    A row is {page, status, seconds, reason, output, digest}; status is executed, unchanged, failed (cell
    error, dead kernel, timeout or any other execution error), missing (no notebook), interrupted (Ctrl-C
    during this page) or not run (after an interruption). An executed copy is replaced only by a finished
    execution; `timeout` is the per-cell limit in seconds unless a run gives its own `timeout`. A name in
    `only` that no run has is refused (ValueError) before anything runs.
    """

    # Progress bars are for people at a terminal; in a rendered page they are hundreds of stderr lines.
    os.environ.setdefault("TQDM_DISABLE", "1")
    root = Path(root)
    names = names if names is not None else _names(profile, root)
    load_profile(profile)  # an unknown profile fails every page alike: refuse it once, before running
    unknown = sorted(set(only or []) - {run["name"] for run in runs})
    if unknown:
        raise ValueError(f"--only {' '.join(unknown)}: no such page; pages: {', '.join(r['name'] for r in runs)}")
    runs = ordered(runs)
    remove_stale_temporaries(runs, root)
    selected = [run for run in runs if not only or run["name"] in only]
    rows = []
    for index, run in enumerate(selected):
        row = {"page": run["name"], "status": "", "seconds": None, "reason": "", "output": root / run["output"],
               "digest": None}
        rows.append(row)
        try:
            _execute_page(run, row, root, profile, names, force, run.get("timeout", timeout), kernel)
        except KeyboardInterrupt as stop:
            # Ctrl-C or SIGTERM stops the run; _execute_page already removed its temporary copy.
            cause = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
            row.update(status="interrupted", reason=f"stopped by {cause}",
                       code=getattr(stop, "exit_status", INTERRUPTED_CODES[0]))
            rows.extend({"page": later["name"], "status": "not run", "seconds": None,
                         "reason": "the run was interrupted before this page", "output": root / later["output"],
                         "digest": None} for later in selected[index + 1:])
            break
    return rows


def remove_stale_temporaries(runs: list[dict], root: Path) -> list[Path]:
    """Remove the temporary copies (`.<page>.pid<N>.<random>.running.ipynb` beside the executed ones) whose
    writer, process N, is gone: a build killed outright (SIGKILL, a lost machine) leaves them. A live
    process's file, a concurrent build's, is kept, and so is one whose name carries no pid (a driver from
    before pids were in the name: nothing tells whether it still runs). One line per file; the removed ones."""
    removed = []
    folders = sorted({(Path(root) / run["output"]).parent for run in runs})
    for path in sorted(p for folder in folders if folder.is_dir() for p in folder.glob(".*.running.ipynb")):
        shown = os.path.relpath(path, root)
        match = TEMPORARY.search(path.name)
        if match is None:
            print(f"[book] kept {shown}: its name carries no writer pid (an older driver's); "
                  "delete it by hand if no build is running", flush=True)
        elif not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
            print(f"[book] removed {shown}: left by a build that is gone (pid {match.group(1)})", flush=True)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def _execute_page(run: dict, row: dict, root: Path, profile: str, names: dict, force: bool,
                  cell_timeout: float | None, kernel: str) -> None:
    """Run one page unless its copy is current, filling `row`; only Ctrl-C escapes."""
    import papermill

    try:
        notebook, executed, parameters, digest = _plan(run, root, profile, names)
    except OSError as error:  # e.g. a notebook that cannot be read: this page fails, the others still run
        row.update(status="failed", reason=_one_line(f"{run['notebook']}: {type(error).__name__}: {error}"))
        return
    row["digest"] = digest
    if digest is None:
        row.update(status="missing", reason=f"no notebook {run['notebook']}")
        return
    if not force and executed.is_file() and _stored_hash(executed) == digest:
        row["status"] = "unchanged"
        return
    print(f"[book] running {run['notebook']} -> {run['output']} with {parameters}", flush=True)
    tmp = None
    start = time.perf_counter()
    try:
        executed.parent.mkdir(parents=True, exist_ok=True)
        # Same folder as the executed copy, so the final rename is atomic; hidden, and not in _toc.yml.
        # The pid tells a later run whether the writer is still alive (remove_stale_temporaries).
        fd, tmp_name = tempfile.mkstemp(prefix=f".{executed.stem}.pid{os.getpid()}.", suffix=".running.ipynb",
                                        dir=executed.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        papermill.execute_notebook(str(notebook), str(tmp), parameters=parameters, kernel_name=kernel,
                                   language="python", cwd=str(executed.parent), progress_bar=False,
                                   execution_timeout=cell_timeout)
        seconds = time.perf_counter() - start
        _finish_copy(tmp, run, root, digest, parameters, seconds)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp made it private; the copy is read like any written file
        os.replace(tmp, executed)
        row.update(status="executed", seconds=seconds)
    except Exception as error:  # every way an execution can fail is this page's failure, not the run's
        row.update(status="failed", seconds=time.perf_counter() - start, reason=_failure_reason(error))
        if isinstance(error, papermill.PapermillExecutionError) and error.ename == "KeyboardInterrupt":
            # Ctrl-C reached the kernel's cell before the driver: the person still asked to stop.
            raise KeyboardInterrupt from error
    except KeyboardInterrupt:
        row["seconds"] = time.perf_counter() - start
        raise
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _names(profile: str, root: Path) -> dict:
    return {"profile": profile, "corpus": str(demo_corpus_path(profile)), "root": str(root)}


def run_notebooks(profile: str = "default", only: list[str] | None = None, force: bool = False,
                  runs_file: Path = RUNS_FILE, timeout: float | None = None, root: Path = ROOT) -> list[dict]:
    """Execute each page of book/runs.yaml whose inputs changed; return one status row per page."""
    return execute_pages(load_runs(runs_file), root, profile, _names(profile, root), only=only, force=force,
                         timeout=timeout)


def left_out_pages(runs: list[dict], root: Path, profile: str, names: dict, rows: list[dict]) -> dict[str, str]:
    """The executed pages that must not be built, {toc entry: why}: failed now, absent, or stale."""
    root = Path(root)
    by_page = {row["page"]: row for row in rows}
    left_out = {}
    for run in runs:
        entry = str(run["output"]).removesuffix(".ipynb")
        row = by_page.get(run["name"])
        if row:
            # Run now: executed or unchanged means its copy holds a finished run of the current inputs.
            if row["status"] not in OK_STATUSES:
                left_out[entry] = f"{run['name']} {row['status']}: {row['reason']}"
            continue
        _, executed, _, digest = _plan(run, root, profile, names)
        if digest is None:
            left_out[entry] = f"{run['name']}: no notebook {run['notebook']}"
        elif not executed.is_file():
            left_out[entry] = f"{run['name']}: never executed (run it: --only {run['name']})"
        elif _stored_hash(executed) != digest:
            left_out[entry] = (f"{run['name']}: executed copy is stale (its inputs changed since; "
                               f"re-run it: --only {run['name']})")
    return left_out


def _toc_files(toc: dict) -> list[str]:
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
    return files


def _exists(entry: str, root: Path = ROOT) -> bool:
    return any((Path(root) / f"{entry}{suffix}").is_file() for suffix in (".md", ".ipynb", ".rst"))


def _jupyter_book(command: list[str], cwd: Path) -> int:
    return subprocess.run(command, cwd=cwd).returncode


def build_html(strict: bool = False, root: Path = ROOT,
               left_out: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Build the book from the toc entries that exist and are not left out; return (exit code, missing)."""
    root = Path(root)
    left_out = left_out or {}
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    missing = [entry for entry in _toc_files(toc) if not _exists(entry, root) and entry not in left_out]

    def served(entry: str) -> bool:
        return _exists(entry, root) and entry not in left_out

    filtered = dict(toc)
    filtered["parts"] = [
        {**part, "chapters": [c for c in part.get("chapters", []) if served(c["file"])]}
        for part in toc.get("parts", [])
    ]
    filtered["parts"] = [part for part in filtered["parts"] if part["chapters"]]
    toc_path = root / "_toc.filtered.yml"
    toc_path.write_text(yaml.safe_dump(filtered, sort_keys=False), encoding="utf-8")
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root), "--toc", str(toc_path)]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    return _jupyter_book(command, root), missing


def summary_lines(rows: list[dict]) -> list[str]:
    """The end-of-run table: page, status, seconds, reason."""
    width = max([len(row["page"]) for row in rows] + [4])
    lines = [f"[book] {'page':<{width}}  {'status':<11}  {'seconds':>7}  reason"]
    for row in rows:
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
        lines.append(f"[book] {row['page']:<{width}}  {row['status']:<11}  {seconds:>7}  {row['reason']}".rstrip())
    return lines


def run_phase_lines(runs_root: Path, since: float) -> list[str]:
    """A table of the training runs under `runs_root` whose metrics.json was written at or after `since` (a
    time.time()): seconds of the run and of its phases (metrics.json timing_s), slowest first."""
    trained = []
    for path in Path(runs_root).rglob("metrics.json"):
        try:
            if path.stat().st_mtime < since:
                continue
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        trained.append((path.parent.relative_to(runs_root).as_posix(), metrics))
    if not trained:
        return ["[book] no training run was trained in this build (every run was reused or none was asked for)"]
    phases = ("load_and_keys", "features", "train_steps", "dev_checks", "evaluation", "bootstrap")
    width = max(len(name) for name, _ in trained)
    lines = [f"[book] {'run':<{width}}  {'total':>7}  " + "  ".join(f"{p:>13}" for p in phases)]
    for name, metrics in sorted(trained, key=lambda item: -item[1].get("wall_time_s", 0)):
        timing = metrics.get("timing_s", {})
        cells = "  ".join(f"{timing[p]:>13.1f}" if p in timing else f"{'':>13}" for p in phases)
        lines.append(f"[book] {name:<{width}}  {metrics.get('wall_time_s', float('nan')):>7.1f}  {cells}")
    return lines


def _build_once(profile, only, force, build, strict, timeout, root, runs_file) -> tuple[int, list[dict], dict]:
    """One pass of `book`: corpus, pages, summary, HTML; (exit code, page rows, seconds per stage)."""
    from sercore.data import generate_corpus

    seconds = {}
    started = time.perf_counter()
    generate_corpus(demo_corpus_path(profile), profile=profile, reuse=True)
    seconds["corpus"] = time.perf_counter() - started
    rows = run_notebooks(profile, only=only, force=force, runs_file=runs_file, timeout=timeout, root=root)
    seconds["pages"] = time.perf_counter() - started - seconds["corpus"]
    print("\n".join(summary_lines(rows)))
    stopped = next((row for row in rows if row["status"] == "interrupted"), None)
    if stopped is not None:
        print("[book] interrupted: no HTML built; finished pages were kept, the interrupted one left as before")
        return stopped["code"], rows, seconds
    failed = [row for row in rows if row["status"] in FAILED_STATUSES]
    code = 0
    if build:
        left_out = left_out_pages(load_runs(runs_file), root, profile, _names(profile, root), rows)
        html_started = time.perf_counter()
        code, missing = build_html(strict=strict, root=root, left_out=left_out)
        seconds["html"] = time.perf_counter() - html_started
        if left_out:
            print("[book] left out of the HTML (no finished execution of the current inputs):\n  "
                  + "\n  ".join(f"{entry}: {why}" for entry, why in left_out.items()))
        if missing:
            print("[book] not in the book yet (no page written for these toc entries):\n  "
                  + "\n  ".join(missing))
        if code == 0:
            print(f"[book] HTML: {Path(root) / '_build' / 'html' / 'index.html'}")
    if failed:
        print(f"[book] {len(failed)} page(s) failed: {', '.join(row['page'] for row in failed)}")
    return code or (1 if failed else 0), rows, seconds


def timing_lines(label: str, rows: list[dict], seconds: dict) -> list[str]:
    """The end-of-build time table: each page's seconds in this build (an unchanged page shows the seconds
    its stored execution took, in parentheses), then the stages and the total."""
    width = max([len(row["page"]) for row in rows] + [4])
    lines = [f"[book] {label}: {'page':<{width}}  {'status':<11}  seconds"]
    for row in rows:
        shown = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
        if row["status"] == "unchanged":
            stored = _stored_seconds(row["output"])
            shown = "" if stored is None else f"({stored:.1f})"
        lines.append(f"[book] {label}: {row['page']:<{width}}  {row['status']:<11}  {shown:>7}")
    stages = ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items())
    lines.append(f"[book] {label}: total {sum(seconds.values()):.1f} s ({stages})")
    return lines


def _stored_seconds(executed: Path) -> float | None:
    try:
        return json.loads(Path(executed).read_text(encoding="utf-8"))["metadata"]["sercore"]["seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def book(profile: str = "default", only=None, force: bool = False, build: bool = True, strict: bool = False,
         timeout: float | None = None, root: Path = ROOT, runs_file: Path = RUNS_FILE, workers: int | None = None,
         timing: bool = False) -> int:
    """The whole `python -m sercore book`: corpus, pages, summary, HTML, the time table; returns the exit code.

    workers: processes each page's results.run_grid trains in (SERCORE_GRID_WORKERS for the kernels); None:
    $SERCORE_GRID_WORKERS when set, else default_workers() (the usable cores, at most MAX_DEFAULT_WORKERS).
    timing: after the build, build again with nothing changed (the warm figure) and print both time tables
    and the phases of every run trained in the first build; the first is a cold figure when the build
    started from a fresh clone (no book/executed copies, runs/ or feature cache)."""
    from sercore.results import WORKERS_VARIABLE, grid_workers

    if workers is None and WORKERS_VARIABLE not in os.environ:
        workers = default_workers()
    before = os.environ.get(WORKERS_VARIABLE)
    if workers is not None:
        os.environ[WORKERS_VARIABLE] = str(grid_workers(workers))  # the page kernels inherit it
    try:
        with _sigterm_stops():
            return _book(profile, only, force, build, strict, timeout, root, runs_file, timing)
    finally:  # a caller's environment (a test, a script calling book()) is left as it was
        if before is None:
            os.environ.pop(WORKERS_VARIABLE, None)
        else:
            os.environ[WORKERS_VARIABLE] = before


MAX_DEFAULT_WORKERS = 4  # a default-profile fusion run holds ~1 GB resident; more at once would crowd a laptop


def default_workers() -> int:
    """The book's processes per grid when neither --workers nor $SERCORE_GRID_WORKERS says: one single-thread
    run per usable core (os.sched_getaffinity where it exists), at most MAX_DEFAULT_WORKERS. Runs of a grid
    are independent and a small model's step gains little from a second thread, so this is the quickest
    default on a laptop (issue 12); run_grid outside the driver (a notebook in Jupyter) still defaults to 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_DEFAULT_WORKERS, cores))


@contextlib.contextmanager
def _sigterm_stops():
    """While `book` runs, SIGTERM raises Terminated (Ctrl-C's way out); the previous handler comes back after.
    Python can set handlers only in the main thread: elsewhere SIGTERM keeps its handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        # None: a handler not set from Python, which cannot be put back; the default is the nearest
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _book(profile, only, force, build, strict, timeout, root, runs_file, timing) -> int:
    from sercore.results import grid_workers

    since = time.time()
    code, rows, seconds = _build_once(profile, only, force, build, strict, timeout, root, runs_file)
    first = timing_lines("this build", rows, seconds)
    if not timing or code in INTERRUPTED_CODES:
        print("\n".join(first))
        return code
    print("[book] --timing: building again with nothing changed (the warm figure)")
    warm_code, warm_rows, warm_seconds = _build_once(profile, only, False, build, strict, timeout, root, runs_file)
    print("\n".join(first + timing_lines("warm", warm_rows, warm_seconds)
                    + run_phase_lines(Path(root) / "runs", since)))
    print(f"[book] workers per grid: {grid_workers()}; this build {sum(seconds.values()):.1f} s, "
          f"warm {sum(warm_seconds.values()):.1f} s")
    return code or warm_code


def register(subparsers) -> None:
    parser = subparsers.add_parser("book", help="generate the demo corpus, run the notebooks, build the HTML book",
                                   description=__doc__)
    parser.add_argument("--profile", default="default", help="smoke | default | paper | path to a profile YAML")
    parser.add_argument("--only", nargs="*", help="run only these pages (names in book/runs.yaml)")
    parser.add_argument("--force", action="store_true", help="re-execute pages even when their inputs are unchanged")
    parser.add_argument("--no-build", dest="build", action="store_false", help="run the notebooks, skip the HTML")
    parser.add_argument("--strict", action="store_true", help="fail the build on Sphinx warnings (-W -n)")
    parser.add_argument("--cell-timeout", type=float, default=None,
                        help="fail a page whose cell runs longer than this many seconds (default: no limit)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (one thread each) a page trains its grid of runs in (default: "
                             f"$SERCORE_GRID_WORKERS, else the usable cores, at most {MAX_DEFAULT_WORKERS})")
    parser.add_argument("--timing", action="store_true",
                        help="then build again unchanged and print both time tables (cold/warm) and each "
                             "trained run's phases")
    parser.set_defaults(func=lambda args: book(args.profile, args.only, args.force, args.build, args.strict,
                                               args.cell_timeout, workers=args.workers, timing=args.timing))
