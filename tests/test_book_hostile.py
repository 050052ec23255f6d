"""Hostile inputs for the book driver (issue 8, item 12): a page that errors, kills its kernel, times out or
is interrupted fails alone, leaves no half-executed copy, keeps its previous copy unchanged, and is left out
of the HTML together with stale copies; the run ends with a summary and a non-zero exit code."""

import json
import shutil

import nbformat
import papermill
import pytest
import yaml

from sercore import book


def _notebook(path, source):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(source)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _tiny_book(root, pages):
    """pages: {name: cell source}; writes notebooks/NAME.ipynb, a runs list and a _toc.yml over them."""
    runs = []
    for name, source in pages.items():
        _notebook(root / "notebooks" / f"{name}.ipynb", source)
        runs.append({"name": name, "notebook": f"notebooks/{name}.ipynb", "output": f"executed/{name}.ipynb",
                     "parameters": {"profile": "{profile}"}})
    (root / "intro.md").write_text("# Intro\n")
    toc = {"format": "jb-book", "root": "intro",
           "parts": [{"caption": "Pages", "chapters": [{"file": f"executed/{name}"} for name in pages]}]}
    (root / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    (root / "runs.yaml").write_text(yaml.safe_dump({"runs": runs}, sort_keys=False))
    return runs


def _temporaries(root):
    return sorted((root / "executed").glob(".*.running.ipynb"))


OLD_COPY = '{"cells": [], "metadata": {"sercore": {"inputs_hash": "old"}}, "nbformat": 4, "nbformat_minor": 5}\n'


@pytest.fixture(scope="module")
def executed_book(tmp_path_factory):
    """One real papermill run over four pages: fine, a cell error, a dead kernel, a cell timeout."""
    root = tmp_path_factory.mktemp("book")
    runs = _tiny_book(root, {"fine": "x = 1", "error": "1 / 0", "dead": "import os\nos._exit(1)",
                             "slow": "import time\ntime.sleep(60)"})
    runs[3]["timeout"] = 2
    (root / "executed").mkdir()
    # A previous executed copy of the page that now errors: it must come out byte for byte the same.
    (root / "executed" / "error.ipynb").write_text(OLD_COPY)
    names = {"profile": "smoke", "root": str(root)}
    rows = book.execute_pages(runs, root, "smoke", names)
    return root, runs, names, {row["page"]: row for row in rows}


def test_each_failure_fails_its_page_alone(executed_book):
    _, _, _, rows = executed_book
    assert [rows[p]["status"] for p in ("fine", "error", "dead", "slow")] == ["executed", "failed", "failed",
                                                                              "failed"]
    assert rows["error"]["reason"].startswith("cell ") and "ZeroDivisionError" in rows["error"]["reason"]
    assert "kernel died" in rows["dead"]["reason"]
    assert "CellTimeoutError" in rows["slow"]["reason"] and "2 seconds" in rows["slow"]["reason"]
    assert all("\n" not in row["reason"] for row in rows.values())
    assert rows["slow"]["seconds"] < 30  # the timeout stopped it, not the minute-long sleep


def test_failed_pages_leave_no_output_and_old_copies_unchanged(executed_book):
    root, _, _, rows = executed_book
    assert not _temporaries(root)
    assert (root / "executed" / "error.ipynb").read_text() == OLD_COPY
    assert not (root / "executed" / "dead.ipynb").exists()
    assert not (root / "executed" / "slow.ipynb").exists()
    fine = json.loads((root / "executed" / "fine.ipynb").read_text())
    assert fine["metadata"]["sercore"]["inputs_hash"] == rows["fine"]["digest"]


def test_build_list_excludes_failed_pages(executed_book, monkeypatch):
    root, runs, names, rows = executed_book
    left_out = book.left_out_pages(runs, root, "smoke", names, list(rows.values()))
    assert set(left_out) == {"executed/error", "executed/dead", "executed/slow"}
    assert "failed" in left_out["executed/dead"] and "kernel died" in left_out["executed/dead"]
    commands = []
    monkeypatch.setattr(book, "_jupyter_book", lambda command, cwd: commands.append(command) or 0)
    code, missing = book.build_html(root=root, left_out=left_out)
    assert code == 0 and missing == [] and len(commands) == 1
    toc = yaml.safe_load((root / "_toc.filtered.yml").read_text())
    assert [c["file"] for part in toc["parts"] for c in part["chapters"]] == ["executed/fine"]


def test_stale_or_unfinished_copy_is_not_served(tmp_path):
    """Pages not run this time (--only) are served only if their copy holds a run of the current inputs."""
    runs = _tiny_book(tmp_path, {"stale": "x = 1", "fresh": "x = 2", "nohash": "x = 3", "never": "x = 4"})
    names = {"profile": "smoke", "root": str(tmp_path)}
    (tmp_path / "executed").mkdir()
    (tmp_path / "executed" / "stale.ipynb").write_text(OLD_COPY)
    # A copy written by an execution that never finished carries no hash at all.
    (tmp_path / "executed" / "nohash.ipynb").write_text(OLD_COPY.replace('"sercore": {"inputs_hash": "old"}', ""))
    digest = book.inputs_hash(tmp_path / "notebooks" / "fresh.ipynb", {"profile": "smoke"}, "smoke")
    (tmp_path / "executed" / "fresh.ipynb").write_text(OLD_COPY.replace('"old"', json.dumps(digest)))
    left_out = book.left_out_pages(runs, tmp_path, "smoke", names, rows=[])
    assert set(left_out) == {"executed/stale", "executed/nohash", "executed/never"}
    assert "stale" in left_out["executed/stale"] and "--only stale" in left_out["executed/stale"]
    assert "never executed" in left_out["executed/never"]


@pytest.mark.parametrize("entry, message", [
    ({"parameters": {"corpus": "{corpsu}"}}, r"runs.yaml: run 'p' uses \{corpsu\}.*fills only profile, corpus, root"),
    ({"timeout": "ten"}, r"runs.yaml: run 'p' has timeout 'ten'; expected seconds > 0"),
    ({"timeout": 0}, r"runs.yaml: run 'p' has timeout 0"),
    ({"after": ["nope"]}, r"runs.yaml: run 'p' comes after nope: no such page; pages: p"),
    ({"after": ["p"]}, r"runs.yaml: runs p wait on each other"),
    ({"after": "p"}, r"runs.yaml: run 'p' has after 'p'; expected a list of strings"),
    ({"reads": ["runs/{corpsu}/*.json"]}, r"runs.yaml: run 'p' uses \{corpsu\} in its reads"),
])
def test_bad_run_entry_is_refused_naming_the_file(tmp_path, entry, message):
    runs = tmp_path / "runs.yaml"
    runs.write_text(yaml.safe_dump({"runs": [{"name": "p", "notebook": "p.ipynb", "output": "o.ipynb", **entry}]}))
    with pytest.raises(ValueError, match=message):
        book.load_runs(runs)


def test_unknown_only_page_is_refused_before_running(tmp_path):
    runs = _tiny_book(tmp_path, {"data": "x = 1"})
    with pytest.raises(ValueError, match=r"--only dta: no such page; pages: data"):
        book.execute_pages(runs, tmp_path, "smoke", only=["dta"])
    assert not (tmp_path / "executed").exists()


def test_unreadable_notebook_fails_its_page_alone(tmp_path, monkeypatch):
    runs = _tiny_book(tmp_path, {"locked": "x = 1", "open": "x = 2"})
    real_read_bytes = book.Path.read_bytes

    def read_bytes(path):
        if path.name == "locked.ipynb":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(book.Path, "read_bytes", read_bytes)
    monkeypatch.setattr(papermill, "execute_notebook", lambda source, out, **kwargs: shutil.copy(source, out))
    rows = book.execute_pages(runs, tmp_path, "smoke", {"profile": "smoke"})
    assert [row["status"] for row in rows] == ["failed", "executed"]
    assert rows[0]["reason"].startswith("notebooks/locked.ipynb: PermissionError") and "\n" not in rows[0]["reason"]


def test_unknown_profile_is_refused_before_running(tmp_path):
    runs = _tiny_book(tmp_path, {"data": "x = 1"})
    with pytest.raises(FileNotFoundError, match="profile 'nosuch' not found"):
        book.execute_pages(runs, tmp_path, "nosuch")


def test_ctrl_c_stops_the_run_and_leaves_no_half_page(tmp_path, monkeypatch):
    runs = _tiny_book(tmp_path, {"first": "x = 1", "second": "x = 2"})
    (tmp_path / "executed").mkdir()
    (tmp_path / "executed" / "first.ipynb").write_text(OLD_COPY)

    def interrupted(input_path, output_path, **kwargs):
        with open(output_path, "w") as handle:  # papermill writes as it goes: half a notebook
            handle.write('{"cells": [')
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    rows = book.execute_pages(runs, tmp_path, "smoke", {"profile": "smoke"})
    assert [(row["page"], row["status"]) for row in rows] == [("first", "interrupted"), ("second", "not run")]
    assert (tmp_path / "executed" / "first.ipynb").read_text() == OLD_COPY
    assert not _temporaries(tmp_path) and not (tmp_path / "executed" / "second.ipynb").exists()


def test_ctrl_c_seen_first_by_the_kernel_also_stops_the_run(tmp_path, monkeypatch):
    runs = _tiny_book(tmp_path, {"first": "x = 1", "second": "x = 2"})

    def interrupted_cell(input_path, output_path, **kwargs):
        raise papermill.PapermillExecutionError(1, 2, "sleep()", "KeyboardInterrupt", "", [])

    monkeypatch.setattr(papermill, "execute_notebook", interrupted_cell)
    rows = book.execute_pages(runs, tmp_path, "smoke", {"profile": "smoke"})
    assert [row["status"] for row in rows] == ["interrupted", "not run"]
    assert not _temporaries(tmp_path) and not (tmp_path / "executed" / "first.ipynb").exists()


def test_book_prints_summary_names_left_out_pages_and_fails(tmp_path, monkeypatch, capsys):
    _tiny_book(tmp_path, {"good": "x = 1", "crash": "x = 2"})
    import sercore.data

    monkeypatch.setattr(sercore.data, "generate_corpus", lambda *args, **kwargs: None)

    def fake_execute(input_path, output_path, **kwargs):
        if "crash" in input_path:
            raise RuntimeError("Kernel died")
        with open(input_path) as source, open(output_path, "w") as out:
            out.write(source.read())

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.setattr(book, "_jupyter_book", lambda command, cwd: 0)
    code = book.book("smoke", root=tmp_path, runs_file=tmp_path / "runs.yaml")
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[1:4] == ["page", "status", "seconds"])
    assert lines[header + 1].split()[1:3] == ["good", "executed"]
    assert lines[header + 2].split()[1:3] == ["crash", "failed"] and "RuntimeError: Kernel died" in lines[header + 2]
    assert "left out of the HTML" in out and "executed/crash: crash failed" in out
    toc = yaml.safe_load((tmp_path / "_toc.filtered.yml").read_text())
    assert [c["file"] for part in toc["parts"] for c in part["chapters"]] == ["executed/good"]


def test_executed_copy_gets_the_mode_open_would(executed_book):
    """Issue 8, item 16: an executed page is readable as the umask says, not mkstemp's private 0600."""
    import os
    import stat

    from sercore.provenance import current_umask

    root, _, _, _ = executed_book
    mode = stat.S_IMODE(os.stat(root / "executed" / "fine.ipynb").st_mode)
    assert mode == 0o666 & ~current_umask()


def test_sigterm_stops_the_run_like_ctrl_c_and_restores_the_handler(tmp_path, monkeypatch, capsys):
    """A build stopped by SIGTERM (a job scheduler, `kill`) removes its temporary copy as Ctrl-C does."""
    import os
    import signal
    import time

    import sercore.data

    _tiny_book(tmp_path, {"first": "x = 1", "second": "x = 2"})
    (tmp_path / "executed").mkdir()
    (tmp_path / "executed" / "first.ipynb").write_text(OLD_COPY)
    monkeypatch.setattr(sercore.data, "generate_corpus", lambda *args, **kwargs: None)
    monkeypatch.setattr(book, "_jupyter_book", lambda command, cwd: 0)
    # Without the driver's handler this one swallows the signal (the page then fails below), not pytest's life.
    swallow = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    outer = signal.getsignal(signal.SIGTERM)

    def terminated(input_path, output_path, **kwargs):
        with open(output_path, "w") as handle:
            handle.write('{"cells": [')
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM did not stop the page")

    monkeypatch.setattr(papermill, "execute_notebook", terminated)
    try:
        code = book.book("smoke", root=tmp_path, runs_file=tmp_path / "runs.yaml")
        assert signal.getsignal(signal.SIGTERM) is outer  # the handler is the driver's only while it runs
    finally:
        signal.signal(signal.SIGTERM, swallow)
    out = capsys.readouterr().out
    assert code == 143
    assert any(line.split()[1:3] == ["first", "interrupted"] and "stopped by SIGTERM" in line
               for line in out.splitlines())
    assert (tmp_path / "executed" / "first.ipynb").read_text() == OLD_COPY
    assert not _temporaries(tmp_path) and not (tmp_path / "executed" / "second.ipynb").exists()


def test_stale_temporaries_of_gone_builds_are_removed_and_live_ones_kept(tmp_path, monkeypatch, capsys):
    import os
    import subprocess
    import sys
    from pathlib import Path

    runs = _tiny_book(tmp_path, {"page": "x = 1"})
    folder = tmp_path / "executed"
    folder.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    written = []

    def execute(source, out, **kwargs):
        written.append(Path(out).name)
        shutil.copy(source, out)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    stale = folder / f".page.pid{gone.pid}.ab12cd34.running.ipynb"
    running = folder / f".page.pid{live.pid}.ef56gh78.running.ipynb"  # a concurrent build's
    older = folder / ".page.k2j3h4l5.running.ipynb"  # no pid: a driver from before pids were in the name
    for path in (stale, running, older):
        path.write_text('{"cells": [')
    try:
        rows = book.execute_pages(runs, tmp_path, "smoke", {"profile": "smoke"})
    finally:
        live.kill()
        live.wait()
    assert not stale.exists() and running.exists() and older.exists()
    out = capsys.readouterr().out.splitlines()
    assert f"[book] removed executed/{stale.name}: left by a build that is gone (pid {gone.pid})" in out
    assert not any(running.name in line for line in out)
    assert any(line.startswith(f"[book] kept executed/{older.name}: its name carries no writer pid") for line in out)
    assert rows[0]["status"] == "executed"
    assert book.TEMPORARY.search(written[0]).group(1) == str(os.getpid())  # its own temporary names its pid
