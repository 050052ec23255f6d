"""The book driver's time table (issue 12, "Build time"): every build ends with each page's seconds and the
stage totals; --timing builds again unchanged (the warm figure) and lists the phases of each run trained;
--workers reaches the page kernels. papermill and Jupyter Book are replaced by fakes: the table is what is
tested, not the pages."""

import json
import sys
from pathlib import Path

import papermill
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_book_hostile import _tiny_book  # noqa: E402

from sercore import book  # noqa: E402
from sercore.results import WORKERS_VARIABLE  # noqa: E402


@pytest.fixture
def fake_book(tmp_path, monkeypatch):
    """Two pages; executing "train" writes a run's metrics.json with its phases, as a results page would."""
    import sercore.data

    _tiny_book(tmp_path, {"train": "x = 1", "draw": "x = 2"})
    monkeypatch.setattr(sercore.data, "generate_corpus", lambda *args, **kwargs: None)
    monkeypatch.setattr(book, "_jupyter_book", lambda command, cwd: 0)
    monkeypatch.setenv(WORKERS_VARIABLE, "1")
    seen = []

    def fake_execute(input_path, output_path, **kwargs):
        seen.append((Path(input_path).stem, __import__("os").environ[WORKERS_VARIABLE]))
        if "train" in input_path:
            run = tmp_path / "runs" / "smoke" / "train" / "kda-seed0"
            run.mkdir(parents=True, exist_ok=True)
            (run / "metrics.json").write_text(json.dumps({"wall_time_s": 12.5, "timing_s": {
                "load_and_keys": 0.5, "features": 2.0, "train_steps": 8.0, "dev_checks": 1.0, "evaluation": 0.5,
                "bootstrap": 0.3}}))
        Path(output_path).write_text(Path(input_path).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    return tmp_path, seen


def test_every_build_ends_with_the_time_table(fake_book, capsys):
    root, _ = fake_book
    assert book.book("smoke", root=root, runs_file=root / "runs.yaml") == 0
    lines = capsys.readouterr().out.splitlines()
    table = [line for line in lines if line.startswith("[book] this build:")]
    assert [line.split()[3:5] for line in table[1:3]] == [["train", "executed"], ["draw", "executed"]]
    assert table[-1].startswith("[book] this build: total ") and "pages" in table[-1] and "html" in table[-1]
    assert lines[-1] == table[-1]  # the table is the last thing printed


def test_timing_builds_again_warm_and_lists_the_trained_runs(fake_book, capsys):
    root, seen = fake_book
    assert book.book("smoke", root=root, runs_file=root / "runs.yaml", timing=True, workers=2) == 0
    out = capsys.readouterr().out
    warm = [line for line in out.splitlines() if line.startswith("[book] warm:")]
    # nothing changed: no page runs again, and each shows the seconds of its stored execution
    assert [line.split()[2:4] for line in warm[1:3]] == [["train", "unchanged"], ["draw", "unchanged"]]
    assert all(line.split()[-1].startswith("(") for line in warm[1:3])
    run = next(line for line in out.splitlines() if "train/kda-seed0" in line)
    assert run.split()[2:] == ["12.5", "0.5", "2.0", "8.0", "1.0", "0.5", "0.3"]
    assert seen == [("train", "2"), ("draw", "2")]  # executed once each, with the workers asked for
    assert "workers per grid: 2" in out


def test_a_worker_count_below_one_is_refused_before_anything_runs(fake_book):
    root, seen = fake_book
    with pytest.raises(ValueError, match="expected a whole number of processes"):
        book.book("smoke", root=root, runs_file=root / "runs.yaml", workers=0)
    assert seen == []


def test_without_workers_the_driver_uses_the_cores_and_restores_the_environment(fake_book, monkeypatch):
    """Neither --workers nor $SERCORE_GRID_WORKERS: one run per usable core (at most 4) reaches the kernels;
    afterwards the caller's environment is as it was."""
    root, seen = fake_book
    monkeypatch.delenv(WORKERS_VARIABLE)
    monkeypatch.setattr(book, "default_workers", lambda: 3)
    assert book.book("smoke", root=root, runs_file=root / "runs.yaml") == 0
    assert seen == [("train", "3"), ("draw", "3")]
    assert WORKERS_VARIABLE not in __import__("os").environ


def test_default_workers_counts_usable_cores_up_to_the_cap(monkeypatch):
    monkeypatch.setattr(book.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert book.default_workers() == book.MAX_DEFAULT_WORKERS
    monkeypatch.setattr(book.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert book.default_workers() == 2
