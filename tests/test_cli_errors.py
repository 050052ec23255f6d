"""Expected user errors end as one stderr line and exit code 2; --debug or SERCORE_DEBUG=1 shows the
traceback; bugs keep theirs (issue 8, item 15)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sercore import cli

WORKTREE = Path(__file__).resolve().parents[1]


def _sercore(*args, debug_env=False):
    env = {**os.environ, "PYTHONPATH": str(WORKTREE), "OMP_NUM_THREADS": "1"}
    env.pop("SERCORE_DEBUG", None)
    if debug_env:
        env["SERCORE_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", "sercore", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """An IEMOCAP-layout folder (empty sessions: enough to reach the fold check), a non-empty folder, a CSV."""
    root = tmp_path_factory.mktemp("cli")
    for session in range(1, 6):
        (root / "iemocap" / f"Session{session}" / "sentences" / "wav").mkdir(parents=True)
        (root / "iemocap" / f"Session{session}" / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (root / "full").mkdir()
    (root / "full" / "notes.txt").write_text("someone's files\n")
    (root / "manifest.csv").write_text("path,label\n")
    return root


CASES = {
    "missing root": (lambda r: ["corpus", r / "nope"], ["nope does not exist"]),
    "bad fold": (lambda r: ["corpus", "--fold", 9, r / "iemocap"], ["fold must be one of 1..5", "got 9"]),
    "fold on a manifest": (lambda r: ["corpus", "--fold", 2, r / "manifest.csv"],  # a SystemExit("...")
                           ["--fold applies to IEMOCAP corpora only"]),
    "existing output": (lambda r: ["generate", "--out", r / "full"], ["full is not empty"]),
    "unknown profile": (lambda r: ["train", "--study", "fusion", "--corpus", r / "iemocap", "--out", r / "o1",
                                   "--profile", "nosuch"], ["profile 'nosuch' not found"]),
    "bad setting": (lambda r: ["train", "--study", "fusion", "--corpus", r / "iemocap", "--out", r / "o2",
                               "--profile", "smoke", "--set", "bogus=1"], ["unknown train setting(s) bogus"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_expected_error_is_one_line_exit_2(folders, case):
    make_args, expected = CASES[case]
    args = make_args(folders)
    result = _sercore(*args)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"python -m sercore {args[0]}: error: ")
    assert lines[0].endswith("(--debug for the traceback)")
    assert all(text in lines[0] for text in expected), lines[0]
    assert "Traceback" not in result.stderr and "'unknown" not in lines[0]  # KeyError's quotes are gone
    assert not (folders / "o1").exists() and not (folders / "o2").exists()


def test_debug_before_or_after_the_command_or_in_env_shows_the_traceback(folders):
    for result in (_sercore("--debug", "corpus", folders / "nope"), _sercore("corpus", folders / "nope", "--debug"),
                   _sercore("corpus", folders / "nope", debug_env=True)):
        assert result.returncode == 1 and "Traceback" in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("FileNotFoundError: corpus ")


def test_message_kinds():
    assert cli.user_error_message(FileExistsError("out is not empty\n  choose another")) == \
        "out is not empty choose another"
    assert cli.user_error_message(KeyError("overrides: unknown setting x")) == "overrides: unknown setting x"
    assert cli.user_error_message(SystemExit("--fold applies to IEMOCAP corpora only")) == \
        "--fold applies to IEMOCAP corpora only"
    # Bugs keep their traceback: a bare-key lookup, an exit code, any other exception type.
    assert cli.user_error_message(KeyError("label")) is None
    assert cli.user_error_message(SystemExit(3)) is None
    assert cli.user_error_message(RuntimeError("boom")) is None
    assert cli.user_error_message(TypeError("unsupported operand")) is None


def test_a_bug_keeps_its_traceback_in_process(monkeypatch):
    import sercore.data.cli

    def broken(args):
        raise TypeError("a bug")

    monkeypatch.setattr(sercore.data.cli, "_corpus", broken)  # register() picks the command up by name
    with pytest.raises(TypeError, match="a bug"):
        cli.main(["corpus", "anywhere"])


def test_in_process_user_error_returns_2(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("SERCORE_DEBUG", raising=False)
    assert cli.main(["corpus", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("python -m sercore corpus: error: corpus ")


# A command that blocks until interrupted: `corpus` with its work replaced (register() calls it by name).
BLOCKING = ("import sys, time\nimport sercore.data.cli\nfrom sercore import cli\n"
            "def block(args):\n    print('ready', flush=True)\n    time.sleep(60)\n"
            "sercore.data.cli._corpus = block\nsys.exit(cli.main(sys.argv[1:]))\n")


def _interrupted(*args):
    """Run the blocking command, press Ctrl-C (SIGINT) once it runs; (exit code, stderr)."""
    import signal

    env = {**os.environ, "PYTHONPATH": str(WORKTREE), "OMP_NUM_THREADS": "1"}
    env.pop("SERCORE_DEBUG", None)
    # A child of a background job inherits SIGINT ignored, and Python then installs no KeyboardInterrupt.
    child = subprocess.Popen([sys.executable, "-c", BLOCKING, *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
    return child.returncode, err


def test_ctrl_c_is_one_line_and_exit_130():
    code, err = _interrupted("corpus", "anywhere")
    assert code == 130 and err == "python -m sercore corpus: interrupted\n", err


def test_ctrl_c_with_debug_keeps_its_traceback():
    code, err = _interrupted("--debug", "corpus", "anywhere")
    assert code != 130 and "Traceback" in err and err.strip().splitlines()[-1] == "KeyboardInterrupt", err
