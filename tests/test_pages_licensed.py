"""Every corpus page on a corpus sercore did not generate (issue 9, section 2).

The pages call sercore.data.ensure_corpus, which generates the demonstration corpus only where the path is
absent or already generated, and reads a licensed copy as it is. Here each page runs under papermill (kernel
python3, cwd notebooks/, as the README's command) on two small corpora built by hand in the published formats:
MSP-Podcast (Labels/labels_consensus.csv, Audios/, Transcripts/) and IEMOCAP (Session1..5 with
dialog/EmoEvaluation, dialog/transcriptions, sentences/wav). Their audio is synthetic tones, so the numbers mean
nothing; what is checked is that every page runs end to end, says which corpus it used, writes only where its
parameters say (never inside the corpus, nowhere in the repository), and that a page needing the generated
`localized` variant says so in one line on a licensed copy.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sercore.data import ensure_corpus, is_generated, load_corpus
from sercore.data.corpus import INCOMPLETE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RATE = 16000
SECONDS = 3.0  # > 2 s: the area CNN classifies 2 s segments and skips utterances of one segment or less
MSP_CLASSES = "NHASCUDF"
IEMOCAP_CODES = ("neu", "hap", "exc", "ang", "sad")  # exc is merged into hap
MSP_HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"


def _tone(path: Path, index: int, seconds: float = SECONDS) -> None:
    """A class-dependent tone with a slow amplitude swing and a little noise (deterministic per index)."""
    rng = np.random.default_rng(index)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 120.0 + 25.0 * (index % 8)
    signal = 0.2 * np.sin(2 * np.pi * pitch * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (signal + 0.01 * rng.standard_normal(t.size)).astype(np.float32), RATE, subtype="PCM_16")


def build_msp(root: Path) -> Path:
    """An MSP-Podcast 1.11-style folder: all eight classes in Train (3 each), Development, Test1 and Test2 (1 each),
    speakers disjoint across partitions, A/V/D on 1..7, plus an X (no agreement) and an O (other) row."""
    rows, index = [], 0
    plan = [("Train", 3, (1, 2, 3, 4)), ("Development", 1, (5, 6)), ("Test1", 1, (7, 8)), ("Test2", 1, (9, 10))]
    for split, per_class, speakers in plan:
        for k, code in enumerate(MSP_CLASSES):
            for j in range(per_class):
                speaker = speakers[(k + j) % len(speakers)]
                name = f"MSP-PODCAST_{index // 10:04d}_{index % 10:04d}.wav"
                avd = (1.5 + 0.6 * k, 6.5 - 0.6 * k, 2.0 + 0.5 * (k % 4))
                gender = "Female" if speaker % 2 else "Male"
                rows.append(f"{name},{code},{avd[0]:.1f},{avd[1]:.1f},{avd[2]:.1f},{speaker},{gender},{split}")
                _tone(root / "Audios" / name, k)
                (root / "Transcripts").mkdir(exist_ok=True)
                (root / "Transcripts" / f"{Path(name).stem}.txt").write_text(f"utterance {index} of class {code}\n")
                index += 1
    for code in "XO":  # kept out of the classes, counted by the loader
        name = f"MSP-PODCAST_9999_{len(rows):04d}.wav"
        rows.append(f"{name},{code},4.0,4.0,4.0,1,Female,Train")
        _tone(root / "Audios" / name, 0)
        (root / "Transcripts" / f"{Path(name).stem}.txt").write_text("no agreement\n")
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join([MSP_HEADER] + rows) + "\n")
    return root


def build_iemocap(root: Path) -> Path:
    """An IEMOCAP_full_release-style folder: five sessions, one improvised dialog each, ten utterances per dialog
    (both speakers; the four classes twice, exc among them, plus fru and xxx that the 4-class set drops)."""
    codes = ["neu", "hap", "ang", "sad", "exc", "neu", "ang", "sad", "fru", "xxx"]
    for session in range(1, 6):
        dialog = f"Ses0{session}F_impro01"
        base = root / f"Session{session}"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        words = []
        for i, code in enumerate(codes):
            utt = f"{dialog}_{'FM'[i % 2]}{i // 2:03d}"
            start = 3.5 * i
            level = IEMOCAP_CODES.index(code) if code in IEMOCAP_CODES else 0
            vad = (1.5 + 0.7 * level, 4.5 - 0.6 * level, 2.0 + 0.5 * (level % 3))
            lines += [f"[{start:.4f} - {start + SECONDS:.4f}]\t{utt}\t{code}\t[{vad[0]:.4f}, {vad[1]:.4f}, "
                      f"{vad[2]:.4f}]", f"C-E1:\t{code.capitalize()};\t()", "A-E1:\tval 3; act 3; dom  3;\t()", ""]
            words.append(f"{utt} [{start:08.4f}-{start + SECONDS:08.4f}]: words of {code} [LAUGHTER]")
            _tone(base / "sentences" / "wav" / dialog / f"{utt}.wav", level + 3 * session)
        (base / "dialog" / "EmoEvaluation").mkdir(parents=True)
        (base / "dialog" / "transcriptions").mkdir(parents=True)
        (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        (base / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(words) + "\n")
    return root


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- ensure_corpus

def test_built_corpora_load_as_licensed_copies(tmp_path):
    """The hand-built corpora are read by the real loaders and are not taken for generated ones."""
    msp = build_msp(tmp_path / "msp")
    table, _ = load_corpus(msp)
    assert len(table) == 48 and set(table.label) == set(MSP_CLASSES)
    assert set(table.split) == {"Train", "Development", "Test1", "Test2"} and not is_generated(msp)
    iemocap = build_iemocap(tmp_path / "iemocap")
    table, _ = load_corpus(iemocap)
    assert len(table) == 40 and set(table.label) == {"neu", "hap", "ang", "sad"} and not is_generated(iemocap)
    assert {"Test", "Development", "Train"} <= set(table.split)


@pytest.mark.parametrize("build", [build_msp, build_iemocap])
def test_ensure_corpus_reads_a_licensed_copy_untouched(tmp_path, build):
    corpus = build(tmp_path / "copy")
    before = snapshot(corpus)
    assert ensure_corpus(corpus, profile="smoke") == corpus.resolve()
    assert ensure_corpus(corpus, profile="smoke", variant="localized") == corpus.resolve()  # nothing generated
    assert snapshot(corpus) == before


def test_ensure_corpus_refuses_a_folder_of_no_known_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("not a corpus\n")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))) as error:
        ensure_corpus(tmp_path, profile="smoke")
    assert "\n" not in str(error.value)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_ensure_corpus_takes_a_manifest_file_and_refuses_other_files(tmp_path):
    _tone(tmp_path / "a.wav", 0)
    (tmp_path / "m.csv").write_text("path,label\na.wav,N\n")
    assert ensure_corpus(tmp_path / "m.csv") == (tmp_path / "m.csv").resolve()
    (tmp_path / "notes.txt").write_text("x\n")
    with pytest.raises(ValueError, match="notes.txt is a file but not a manifest"):
        ensure_corpus(tmp_path / "notes.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "m.csv", "notes.txt"]


def test_ensure_corpus_generates_when_absent_and_reuses(tmp_path):
    target = tmp_path / "demo"
    corpus = ensure_corpus(target, profile="smoke", n_utterances=12, workers=1, progress=False)
    assert corpus == target.resolve() and is_generated(corpus) and not (corpus / INCOMPLETE).exists()
    assert len(load_corpus(corpus)[0]) == 12
    before = snapshot(corpus)
    assert ensure_corpus(target, profile="smoke", n_utterances=12, workers=1, progress=False) == corpus
    assert snapshot(corpus) == before  # reused, not written again


def test_ensure_corpus_regenerates_an_unfinished_generation(tmp_path):
    target = tmp_path / "demo"
    target.mkdir()
    (target / INCOMPLETE).write_text("")  # killed before it could write its pid: that run is over
    (target / "Audios").mkdir()
    assert is_generated(target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        corpus = ensure_corpus(target, profile="smoke", n_utterances=10, workers=1, progress=False)
    assert any("unfinished generation" in str(w.message) for w in caught)
    assert not (corpus / INCOMPLETE).exists() and len(load_corpus(corpus)[0]) == 10


# ---------------------------------------------------------------- every corpus page on a licensed copy

# Runs shrunk to seconds: a few optimizer steps, few bootstrap resamples, the smallest grid each page allows.
TRAIN_OPTIONS = {"max_steps": 2, "eval_every": 2, "n_boot": 10}
PAGES = {  # page -> parameters besides profile and corpus; "{tmp}" is the test's folder
    "data": {"figures": "{tmp}/figures"},
    "efficiency": {"device": "cpu", "results_dir": "{tmp}/results/efficiency", "figures": "{tmp}/figures"},
    "dimensional": {"out_root": "{tmp}/runs/dimensional", "seeds": [0], "snr_db": [0], "gain_db": [6], "n_perm": 20,
                    "figures": "{tmp}/figures", "train_options": TRAIN_OPTIONS},
    "multitask": {"out_root": "{tmp}/runs/multitask", "gender_weights": [1.0], "seeds": [0], "figures": "{tmp}/figures",
                  "train_options": TRAIN_OPTIONS},
    "accuracy": {"out_root": "{tmp}/runs/accuracy", "mechanisms": ["softmax", "kda"], "seeds": [0],
                 "compare_directions": False, "figures": "{tmp}/figures", "train_options": TRAIN_OPTIONS},
    "area": {"out_root": "{tmp}/runs/area", "area_sizes": [3], "vtlp_copies": [0, 1],
             "train_options": TRAIN_OPTIONS},
    "keysparse": {"out_root": "{tmp}/runs/keysparse", "keep_rates": [0.5], "seeds": [0], "standard_corpus": None,
                  "figures": "{tmp}/figures", "train_options": TRAIN_OPTIONS},
}
RESULTS_PAGES = ("dimensional", "multitask", "accuracy", "area", "keysparse")
SKIPPED_SEGMENTS = "is not a generated localized corpus: it marks no emotional segment (segments.csv)"


def _fill(value, tmp: Path):
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, dict):
        return {key: _fill(item, tmp) for key, item in value.items()}
    return value


def _printed(notebook: Path) -> str:
    """Everything the executed notebook's cells printed (stream outputs and plain-text results)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    texts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            texts.append("".join(output.get("text", "")))
            texts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def _repository_files() -> set:
    """Files the pages could write inside the repository by default: under notebooks/, runs/ and data/."""
    return {p for folder in (NOTEBOOKS, ROOT / "runs", ROOT / "data") if folder.is_dir()
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("build", [build_msp, build_iemocap], ids=["msp-podcast", "iemocap"])
def test_every_corpus_page_runs_on_a_licensed_copy(tmp_path, build, monkeypatch):
    import papermill

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    corpus = build(tmp_path / "licensed-copy")
    before, repository = snapshot(corpus), _repository_files()
    for page, extra in PAGES.items():
        executed = tmp_path / "executed" / f"{page}.ipynb"
        executed.parent.mkdir(exist_ok=True)
        parameters = {"profile": "smoke", "corpus": str(corpus), **_fill(extra, tmp_path)}
        papermill.execute_notebook(str(NOTEBOOKS / f"{page}.ipynb"), str(executed), parameters=parameters,
                                   kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False)
        printed = _printed(executed)
        if page in RESULTS_PAGES:
            assert f"Computed on user corpus ({corpus})." in printed, page
        assert (SKIPPED_SEGMENTS in printed) == (page == "keysparse"), page
    assert snapshot(corpus) == before  # nothing written inside the corpus
    assert _repository_files() == repository  # nor in the repository: everything went where the parameters say
    assert {p.name for p in (tmp_path / "figures").iterdir()} >= {
        "data_prosody.png", "data_spectrograms.png", "efficiency_this_machine.png", "multitask_ua.png",
        "accuracy_macro_f1.png", "accuracy_confusion.png", "keysparse_curve.png"}
    for page in RESULTS_PAGES:
        metrics = sorted((tmp_path / "runs" / page).glob("*/metrics.json"))
        assert metrics, page
        assert all(json.loads(m.read_text())["corpus"] == str(corpus) for m in metrics)
    assert (tmp_path / "results" / "efficiency").is_dir()


# ---------------------------------------------------------------- the README's papermill command

def _readme_command() -> list[str]:
    """The README's one-page papermill command, as a person would type it at the repository root."""
    lines = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
             if line.startswith(".venv/bin/papermill --cwd notebooks notebooks/data.ipynb")]
    assert len(lines) == 1, "README.md: expected one papermill command for notebooks/data.ipynb"
    return shlex.split(lines[0])


@pytest.mark.slow
def test_readme_papermill_command_resolves_the_pages_relative_defaults(tmp_path):
    """The command, run from a folder laid out like the repository, finds the page's relative corpus path and
    writes its figures beside the page: --cwd notebooks makes paths relative to notebooks/, as in the book."""
    command = _readme_command()
    assert command[1:3] == ["--cwd", "notebooks"] and "-k" in command
    checkout = tmp_path / "checkout"
    (checkout / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOKS / "data.ipynb", checkout / "notebooks" / "data.ipynb")
    corpus_parameter = command[command.index("corpus", command.index("-p")) + 1]
    assert not Path(corpus_parameter).is_absolute()
    corpus = build_msp((checkout / "notebooks" / corpus_parameter).resolve())  # e.g. ../data/demo-smoke
    executed = tmp_path / "data.ipynb"
    papermill = Path(sys.executable).with_name("papermill")  # the environment's own papermill
    argv = [str(papermill), *command[1:]]
    argv[argv.index(command[4])] = str(executed)  # the output notebook: here, not in /tmp
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = _printed(executed)
    assert f"msp-podcast corpus at {corpus}: 48 utterances kept" in printed
    assert (checkout / "notebooks" / "figures" / "data_prosody.png").is_file()
    assert not (tmp_path / "data").exists() and not (checkout / "figures").exists()  # nothing beside the checkout
