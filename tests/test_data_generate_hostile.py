"""Hostile conditions for the corpus generator (issue 8): reproducibility across processes, interrupted or
failed generations, folders it did not write, and the messages that refuse them."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sercore.cli import main


def cli_error(capsys, argv) -> str:
    """The one-line message `python -m sercore` prints for a refused command (exit status 2)."""
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    prefix = f"python -m sercore {argv[0]}: error: "
    assert lines[0].startswith(prefix) and lines[0].endswith(" (--debug for the traceback)")
    return lines[0][len(prefix):-len(" (--debug for the traceback)")]
from sercore.data import generate_corpus, load_corpus
from sercore.data import synth
from sercore.data.espeak import Prosody
from sercore.data.render import Job, Piece, RenderError, render_isolated
from sercore.data.synth import MARKER, IncompleteCorpusWarning

ROOT = Path(__file__).resolve().parents[1]
BREATH_VOICES = ("f2", "f3", "f5")  # variant files with a `breath` line: the noise espeak seeds from the clock


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under root; corpus.json without its creation time (the one field that must
    differ between two runs)."""
    digests = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "corpus.json":
            meta = json.loads(data)
            del meta["provenance"]["created"]
            data = json.dumps(meta, sort_keys=True).encode()
        digests[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return digests


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["msp-podcast", "iemocap"])
def test_same_seed_gives_byte_identical_smoke_corpora(tmp_path, layout):
    # Two generations, each in fresh spawned worker processes (so a fresh espeak clock seed each time).
    a = generate_corpus(tmp_path / "a", profile="smoke", layout=layout, seed=0, workers=2, progress=False)
    b = generate_corpus(tmp_path / "b", profile="smoke", layout=layout, seed=0, workers=2, progress=False)
    voices = {s["voice"].split("+")[1] for s in json.loads((a / "corpus.json").read_text())["provenance"]
              ["parameters"]["speakers"]}
    assert set(BREATH_VOICES) <= voices, "the breath-noise voices must be part of the test"
    first, second = _digests(a), _digests(b)
    assert first.keys() == second.keys()
    identical = [name for name in first if first[name] == second[name]]
    wavs = [name for name in first if name.endswith(".wav")]
    print(f"{layout}: {len(first)} files compared ({len(wavs)} wav), {len(identical)} identical")
    assert len(wavs) == 200
    assert sorted(set(first) - set(identical)) == []


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sercore", "generate", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _kill_mid_render(out: Path, n: int) -> float:
    """Start `generate` in its own process group and SIGKILL the whole group (workers included) once the
    first wav is on disk: a real interruption in the middle of rendering."""
    process = subprocess.Popen(_cli("--out", str(out), "--n-utterances", str(n), "--workers", "1"),
                               env=_env(), cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    start = time.monotonic()
    try:
        deadline = start + 120
        while not list(out.glob("Audios/*.wav")):
            assert process.poll() is None, "generate ended before it wrote a wav"
            assert time.monotonic() < deadline, "generate wrote no wav within 120 s"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return time.monotonic() - start


def _assert_complete(out: Path, n: int) -> None:
    assert not (out / MARKER).exists()
    assert json.loads((out / "corpus.json").read_text())["utterances"] == n
    table, report = load_corpus(out)
    assert len(table) == n and report.n_skipped == 0 and report.n_repaired == 0
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("rerun", ["plain", "overwrite", "reuse"])
def test_killed_generate_is_replaced_by_any_rerun(tmp_path, rerun):
    out, n = tmp_path / "corpus", 80
    seconds = _kill_mid_render(out, n)
    assert (out / MARKER).exists() and not (out / "corpus.json").exists()
    wavs = len(list((out / "Audios").glob("*.wav")))
    assert 0 < wavs < n, f"the kill should land mid-render ({wavs} of {n} wavs)"
    print(f"killed after {seconds:.1f} s with {wavs} of {n} wavs written")
    if rerun == "reuse":  # what the book does
        with pytest.warns(IncompleteCorpusWarning, match="unfinished generation"):
            generate_corpus(out, profile="smoke", n_utterances=n, workers=1, progress=False, reuse=True)
    else:
        done = subprocess.run(_cli("--out", str(out), "--n-utterances", str(n), "--workers", "2",
                                   *(["--overwrite"] if rerun == "overwrite" else [])),
                              env=_env(), cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert f"note: {out} holds an unfinished generation ({MARKER}): replacing it" in done.stderr
    _assert_complete(out, n)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("rerun", ["plain", "overwrite", "reuse"])
def test_failure_mid_render_leaves_a_folder_any_rerun_replaces(tmp_path, monkeypatch, rerun):
    real = synth._render_all

    def fail_after_four(jobs, workers, progress):
        real(jobs[:4], workers, progress)  # four files really written, then the run dies
        raise Boom("espeak died")

    monkeypatch.setattr(synth, "_render_all", fail_after_four)
    out = tmp_path / "corpus"
    with pytest.raises(Boom):
        generate_corpus(out, n_utterances=12, workers=1, progress=False)
    assert (out / MARKER).exists() and not (out / "corpus.json").exists()
    assert len(list((out / "Audios").glob("*.wav"))) == 4
    monkeypatch.setattr(synth, "_render_all", real)
    with pytest.warns(IncompleteCorpusWarning, match="unfinished generation"):
        generate_corpus(out, n_utterances=12, workers=1, progress=False, overwrite=rerun == "overwrite",
                        reuse=rerun == "reuse")
    _assert_complete(out, 12)


def test_failure_while_replacing_a_finished_corpus_is_still_recoverable(tmp_path, monkeypatch):
    out = generate_corpus(tmp_path / "corpus", n_utterances=8, workers=1, progress=False)

    def fail(*_):
        raise Boom("killed")

    monkeypatch.setattr(synth, "_render_all", fail)
    with pytest.raises(Boom):
        generate_corpus(out, n_utterances=8, seed=1, workers=1, progress=False, overwrite=True)
    # the old corpus is gone (it was being replaced), and the folder says so
    assert (out / MARKER).exists() and not (out / "corpus.json").exists()
    monkeypatch.undo()
    with pytest.warns(IncompleteCorpusWarning):
        generate_corpus(out, n_utterances=8, seed=1, workers=1, progress=False)
    _assert_complete(out, 8)


@pytest.mark.parametrize("content", ["keep.txt", "corpus.json"])
def test_a_folder_the_generator_did_not_write_is_refused(tmp_path, capsys, content):
    # a stray file, or someone else's corpus.json: nothing may be removed, with or without --overwrite
    (tmp_path / content).write_text(json.dumps({"generator": "another tool"}))
    (tmp_path / "Audios").mkdir()
    (tmp_path / "Audios" / "theirs.wav").write_bytes(b"RIFF")
    for options in ({}, {"overwrite": True}, {"reuse": True}):
        with pytest.raises(FileExistsError) as error:
            generate_corpus(tmp_path, n_utterances=8, progress=False, **options)
        message = str(error.value)
        assert "\n" not in message and str(tmp_path) in message
        assert "no corpus.json written by this generator" in message and "choose a new or empty folder" in message
    message = cli_error(capsys, ["generate", "--out", str(tmp_path), "--n-utterances", "8", "--overwrite"])
    assert message.startswith(f"{tmp_path} is not empty")
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([content, "Audios", "theirs.wav"])


def test_a_finished_corpus_message_names_the_flag_and_the_argument(tmp_path, capsys):
    out = generate_corpus(tmp_path / "corpus", n_utterances=8, workers=1, progress=False)
    with pytest.raises(FileExistsError) as error:
        generate_corpus(out, n_utterances=8, progress=False)
    message = str(error.value)
    assert "--overwrite on the command line" in message and "overwrite=True from Python" in message
    assert "--overwrite" in cli_error(capsys, ["generate", "--out", str(out), "--n-utterances", "8"])
    _assert_complete(out, 8)


def test_a_file_as_output_folder_is_refused(tmp_path, capsys):
    target = tmp_path / "corpus"
    target.write_text("x")
    assert "is a file: choose a folder" in cli_error(capsys, ["generate", "--out", str(target), "--n-utterances", "8"])
    assert target.read_text() == "x"


def test_a_script_without_main_guard_fails_at_once_instead_of_hanging(tmp_path):
    # Spawned workers import the calling script: unguarded, each one calls generate_corpus again and dies.
    # A multiprocessing.Pool replaced them forever (a silent hang); the run must stop with one clear line.
    script = tmp_path / "make_corpus.py"
    script.write_text("from sercore.data import generate_corpus\n"
                      f"generate_corpus({str(tmp_path / 'corpus')!r}, n_utterances=4, workers=1, progress=False)\n")
    done = subprocess.run([sys.executable, str(script)], env=_env(), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("sercore.data.render.RenderError: a corpus rendering process died")
    assert "__main__" in last
    assert (tmp_path / "corpus" / MARKER).exists()  # unfinished, so the next (guarded) run replaces it


@pytest.mark.parametrize("corpus_section, options, message", [
    ("{n_utterance: 50}", {}, "unknown key(s) n_utterance"),  # misspelt: would be ignored silently
    ("{test2_fraction: 1.5}", {}, "test2_fraction must be in [0, 1), got 1.5"),
    ("{long_form_lengths_s: [10, -5]}", {}, "long_form_lengths_s must be a list of positive seconds"),
    ("{n_utterances: many}", {}, "n_utterances must be a whole number >= 1, got 'many'"),
    ("{}", {"seed": -1}, "seed must be a whole number >= 0, got -1"),
    ("{}", {"workers": 0}, "workers must be a whole number >= 1, got 0"),
    ("{}", {"n_utterances": 0}, "n_utterances must be a whole number >= 1, got 0"),
])
def test_unusable_options_are_refused_before_anything_is_written(tmp_path, corpus_section, options, message):
    profile = tmp_path / "mine.yaml"
    profile.write_text(f"corpus: {corpus_section}\n")
    out = tmp_path / "corpus"
    with pytest.raises(synth.CorpusOptionError) as error:
        generate_corpus(out, profile=str(profile), progress=False, **options)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()


def test_cli_refusals_are_one_line(tmp_path, capsys):
    assert cli_error(capsys, ["generate", "--profile", "nosuch", "--out", str(tmp_path / "a")]) \
        .startswith("profile 'nosuch' not found")
    assert cli_error(capsys, ["generate", "--seed", "-1", "--out", str(tmp_path / "b")]) \
        == "seed must be a whole number >= 0, got -1"
    assert not list(tmp_path.iterdir())


def test_a_file_that_cannot_be_written_fails_in_one_line_naming_it(tmp_path):
    (tmp_path / "file.txt").write_text("a file where a folder should be")
    target = tmp_path / "file.txt" / "x.wav"
    job = Job(index=0, path=str(target), pieces=(Piece("Hello there.", "en-us+f1", Prosody(), 0.2),),
              lead_silence=0.1, seed=0)
    with pytest.raises(RenderError) as error:
        render_isolated(job)  # renders in a forked child, like the generator's workers
    message = str(error.value)
    assert message.startswith(f"{target}: rendering failed: FileExistsError") and "\n" not in message


def test_cli_reports_a_failed_file_in_one_line_and_the_rerun_replaces_it(tmp_path, monkeypatch, capsys):
    def fail(jobs, workers, progress):
        raise RenderError(f"{jobs[0].path}: espeak-ng produced silence")

    monkeypatch.setattr(synth, "_render_all", fail)
    out = tmp_path / "corpus"
    message = cli_error(capsys, ["generate", "--out", str(out), "--n-utterances", "8", "--workers", "1"])
    assert "espeak-ng produced silence" in message and "the next generate replaces it" in message
    assert (out / MARKER).exists()
    monkeypatch.undo()
    assert main(["generate", "--out", str(out), "--n-utterances", "8", "--workers", "1"]) == 0
    _assert_complete(out, 8)


def test_a_generation_still_running_in_the_folder_is_not_replaced(tmp_path):
    out = tmp_path / "corpus"
    (out / "Audios").mkdir(parents=True)
    (out / "Audios" / "SERDEMO_0001_0001.wav").write_bytes(b"RIFF")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / MARKER).write_text(json.dumps({"generator": synth.GENERATOR, "pid": writer.pid,
                                              "host": socket.gethostname()}))
        with pytest.raises(FileExistsError) as error:
            generate_corpus(out, n_utterances=8, workers=1, progress=False, overwrite=True)
        message = str(error.value)
        assert f"is being generated by process {writer.pid}" in message and "\n" not in message
        assert (out / "Audios" / "SERDEMO_0001_0001.wav").read_bytes() == b"RIFF"
    finally:
        writer.kill()
        writer.wait()
    with pytest.warns(IncompleteCorpusWarning):  # that process is gone now: its folder is replaced
        generate_corpus(out, n_utterances=8, workers=1, progress=False)
    _assert_complete(out, 8)


def test_breath_noise_follows_our_seed_and_only_in_breath_voices(tmp_path):
    def render(voice, seed):
        path = tmp_path / f"{voice}-{seed}.wav"
        render_isolated(Job(index=0, path=str(path), lead_silence=0.1, seed=seed,
                            pieces=(Piece("The meeting starts at noon.", voice, Prosody(), 0.2),)))
        return path.read_bytes()

    assert render("en-us+f2", 0) == render("en-us+f2", 0)
    assert render("en-us+f2", 0) != render("en-us+f2", 1)  # f2 breathes: its noise comes from our seed
    assert render("en-us+f1", 0) == render("en-us+f1", 1)  # f1 has no breath setting: no noise to seed


def test_numpy_integers_are_accepted_as_whole_numbers(tmp_path):
    import numpy as np

    out = generate_corpus(tmp_path / "c", n_utterances=np.int64(8), seed=np.int32(2), workers=np.int64(1),
                          progress=False)
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["seed"] == 2 and meta["utterances"] == 8
