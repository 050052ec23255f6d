"""The generated demonstration corpus: emotional prosody synthesised with espeak-ng, deterministic from a seed.

No emotional speech corpus can be shipped, so sercore makes one offline. Each class is a prosody profile
(sercore.data.prosody) applied to sentences from a bank where only 40 % of the sentences carry lexical
emotion (sercore.data.sentences), spoken by espeak voice variants of both genders with their own pitch
and tempo. It is written in the MSP-Podcast layout (or the IEMOCAP layout), so the same loaders serve
real and generated data, with a corpus.json that says what it is and how it was made.

Splits (MSP-Podcast layout, sercore.data.msp_layout): Test2 holds 15 % of the utterances, spoken only by
speakers that appear in no other split, mixed with white noise at 10 dB SNR and with imbalanced classes:
the harder split, like the real Test2. The rest is split 70/15/15 into Train, Development and Test1 with
balanced classes and the same eight speakers. IEMOCAP layout: sercore.data.iemocap_layout.

Variants:
    standard   one sentence per utterance (about 2-4 s).
    localized  one short emotional phrase (mostly 1-2 s, never cut) inside neutral speech, the whole file
               LOCALIZED_SECONDS long (4.2-4.55 s, drawn per utterance), so all of it lies inside the
               key-sparse model's fixed input of the first 460 log-Mel frames (4.6 s at 100 frames/s,
               sercore.models.ks_transformer). The phrase's position is drawn uniformly per utterance: the
               room left beside it is split at a random point, the part before it filled with the end of one
               neutral sentence, the part after with the beginning of another (each cut with a 10 ms fade;
               silence where a sentence is too short). The label is the phrase's class and its start/end
               (seconds) go to segments.csv at the corpus root: the case key-sparse attention targets. The
               transcript names the sentences of which some part is heard, in full.
    long-form  sentences of one class and one speaker joined until a target length (long_form_lengths_s,
               10 s up to 400 s), cut at exactly that length (the transcript lists every sentence begun,
               the last one possibly cut); all in Test1, for length experiments on models trained on a
               standard corpus. `n_utterances` here means files per length.

Layouts: "msp-podcast" (Audios/, Labels/labels_consensus.csv, Transcripts/) and "iemocap"
(sercore.data.iemocap_layout).

Interruptions: corpus.incomplete is written at the corpus root before anything else and removed after
corpus.json, the last file; a folder that holds it is an unfinished generation that the next run replaces
(once the process that wrote it has ended).
"""

from __future__ import annotations

import json
import numbers
import os
import shutil
import socket
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sercore.data import iemocap_layout, msp_layout
from sercore.data.corpus import INCOMPLETE
from sercore.data.prosody import AVD_NOISE, AVD_PROTOTYPES, JITTER, PROFILES, draw_avd, draw_prosody
from sercore.data.render import Job, Piece, RenderError, Rendered, prepare_worker, render_isolated
from sercore.data.speakers import Speaker
from sercore.data.sentences import (EMOTIONAL, EMOTIONAL_PHRASES, EMOTIONAL_SHARE, NEUTRAL,
                                    NEUTRAL_PHRASES)
from sercore.profiles import section
from sercore.progress import bar_disabled
from sercore.provenance import atomic_write_json, atomic_write_text, provenance

VARIANTS = ("standard", "localized", "long-form")
LAYOUTS = ("msp-podcast", "iemocap")
DESCRIPTION = ("generated demonstration corpus: synthetic speech (espeak-ng) with acted-emotion prosody "
               "profiles; a working demonstration, not real emotional speech")

# Localized variant: length of the whole file, drawn uniformly per utterance. At most 4.55 s so that even
# the log-Mel frame centred on the last sample (frame 456 at a 10 ms hop) is inside the ks-transformer's
# 460-frame input; at least 4.2 s so that the phrase is a small part of each file (a quarter to a half).
LOCALIZED_SECONDS = (4.2, 4.55)

DEFAULTS = {"n_utterances": 200, "long_form_lengths_s": [10, 30, 60], "long_form_per_length": 2,
            "test2_fraction": msp_layout.TEST2_FRACTION, "test2_snr_db": msp_layout.TEST2_SNR_DB}


@dataclass
class Utterance:
    """One planned utterance: what the layouts write as labels, and the job that renders its audio."""

    index: int
    label: str  # prosody class, one of CLASSES
    code: str  # the label the corpus files carry (MSP code, or IEMOCAP code such as "exc")
    speaker: Speaker
    group: str  # MSP split, or IEMOCAP session number
    avd: tuple[float, float, float]  # arousal, valence, dominance on 1..7
    pieces: tuple[Piece, ...]
    lead_silence: float
    segment_piece: int | None = None
    target_seconds: float | None = None
    fit_seconds: float | None = None  # localized: the file's length
    segment_position: float | None = None  # localized: share of the room beside the phrase that precedes it
    snr_db: float | None = None
    utt_id: str = ""
    path: str = ""
    transcript: str = ""
    duration: float = 0.0
    segment: tuple[float, float] | None = None


class CorpusOptionError(ValueError):
    """An argument of generate_corpus, or a value in the profile's corpus: section, that cannot be used."""


def _whole(value, least: int = 1) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))


def _check_options(profile, config: dict, seed, workers) -> None:
    """Refuse, before anything is written, what would fail later or be silently ignored (a misspelt key)."""
    where = f"profile {profile!r}, corpus section"
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise CorpusOptionError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(DEFAULTS)})")
    for key in ("n_utterances", "long_form_per_length"):
        if not _whole(config[key]):
            raise CorpusOptionError(f"{where}: {key} must be a whole number >= 1, got {config[key]!r}")
    lengths = config["long_form_lengths_s"]
    if not isinstance(lengths, list) or not lengths or not all(_number(x) and x > 0 for x in lengths):
        raise CorpusOptionError(f"{where}: long_form_lengths_s must be a list of positive seconds, got {lengths!r}")
    if not (_number(config["test2_fraction"]) and 0 <= config["test2_fraction"] < 1):
        raise CorpusOptionError(f"{where}: test2_fraction must be in [0, 1), got {config['test2_fraction']!r}")
    if not _number(config["test2_snr_db"]):
        raise CorpusOptionError(f"{where}: test2_snr_db must be a number (dB), got {config['test2_snr_db']!r}")
    if not _whole(seed, least=0):
        raise CorpusOptionError(f"seed must be a whole number >= 0, got {seed!r}")
    if workers is not None and not _whole(workers):
        raise CorpusOptionError(f"workers must be a whole number >= 1, got {workers!r}")


def _sentence(label: str, rng: np.random.Generator, bank_emotional=EMOTIONAL, bank_neutral=NEUTRAL) -> str:
    if rng.random() < EMOTIONAL_SHARE:
        options = bank_emotional[label]
    else:
        options = bank_neutral
    return options[rng.integers(len(options))]


def _pieces(variant: str, label: str, speaker: Speaker, rng: np.random.Generator,
            target_seconds: float | None) -> tuple[tuple[Piece, ...], int | None]:
    """The spoken pieces of one utterance, and which one carries the emotion (localized variant)."""
    def prosody(cls):
        return draw_prosody(cls, rng, speaker.pitch_offset, speaker.rate_factor)

    def pause(low=0.15, high=0.35):
        return float(round(rng.uniform(low, high), 3))

    if variant == "standard":
        return (Piece(_sentence(label, rng), speaker.voice, prosody(label), pause()),), None
    if variant == "localized":
        # neutral sentence (its end is heard), the phrase, neutral sentence (its beginning is heard): the
        # renderer cuts the two to fit (sercore.data.render, Job.fit_seconds)
        neutral = [Piece(NEUTRAL[rng.integers(len(NEUTRAL))], speaker.voice, prosody("N"), pause(0.2, 0.4))
                   for _ in range(2)]
        phrase = Piece(_sentence(label, rng, EMOTIONAL_PHRASES, NEUTRAL_PHRASES), speaker.voice,
                       prosody(label), pause(0.2, 0.4))
        return (neutral[0], phrase, neutral[1]), 1
    # long-form: plan more sentences than needed (a lower bound on each sentence's length); rendering
    # stops at the target.
    pieces, planned = [], 0.0
    while planned < target_seconds:
        piece = Piece(_sentence(label, rng), speaker.voice, prosody(label), pause(0.25, 0.6))
        words = len(piece.text.split())
        planned += 0.7 * words * 60.0 / piece.prosody.rate + piece.pause_after
        pieces.append(piece)
    return tuple(pieces), None


def plan(n: int, variant: str, layout: str, seed: int, config: dict) -> list[Utterance]:
    writer = msp_layout if layout == "msp-podcast" else iemocap_layout
    slots = writer.slots(n, variant, config, np.random.default_rng([seed, 1]))
    utterances = []
    for index, (label, code, speaker, group, snr_db, target) in enumerate(slots):
        rng = np.random.default_rng([seed, 0, index])  # per utterance: the plan of one file never depends on others
        pieces, segment_piece = _pieces(variant, label, speaker, rng, target)
        avd, lead = draw_avd(label, rng), float(round(rng.uniform(0.1, 0.3), 3))
        fit = position = None
        if variant == "localized":  # drawn last: the other variants' draws are unchanged
            fit, position = float(round(rng.uniform(*LOCALIZED_SECONDS), 3)), float(round(rng.random(), 4))
        utterances.append(Utterance(index=index, label=label, code=code, speaker=speaker, group=group,
                                    avd=avd, pieces=pieces, lead_silence=lead, segment_piece=segment_piece,
                                    target_seconds=target, fit_seconds=fit, segment_position=position,
                                    snr_db=snr_db))
    return utterances


def _render_chunk(jobs: list[Job]) -> list[Rendered]:
    return [render_isolated(job) for job in jobs]


def _render_all(jobs: list[Job], workers: int, progress: bool) -> list[Rendered]:
    """Render every job on `workers` processes. They are spawned, not forked: a fresh, small interpreter
    forks cheaply for every file (render_isolated), and espeak is never initialised in the caller.
    A worker that dies (killed, out of memory, or a script that calls generate_corpus without an
    `if __name__ == "__main__":` guard, so that every spawned worker re-runs the script) ends the run with
    a one-line RenderError; a multiprocessing.Pool would replace such workers forever and hang."""
    bar = tqdm(total=len(jobs), desc="generating corpus", unit="utt", disable=bar_disabled(progress))
    results = []
    pool = ProcessPoolExecutor(max(1, workers), mp_context=get_context("spawn"), initializer=prepare_worker)
    try:
        # four jobs per task, as Pool(chunksize=4) did: fewer round trips to the workers
        for future in as_completed([pool.submit(_render_chunk, jobs[i:i + 4]) for i in range(0, len(jobs), 4)]):
            chunk = future.result()
            results += chunk
            bar.update(len(chunk))
    except BrokenProcessPool:
        raise RenderError("a corpus rendering process died; if generate_corpus is called from a script, "
                           "put the call under `if __name__ == \"__main__\":` (workers are spawned and "
                           "import the script)") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, do not render the rest first
        bar.close()
    return sorted(results, key=lambda r: r.index)


def _segments_csv(utterances: list[Utterance]) -> str:
    """Where the emotional phrase lies in each localized utterance, in seconds from the file's start."""
    lines = ["utt_id,seg_start,seg_end,duration"]
    for u in sorted(utterances, key=lambda u: u.utt_id):
        lines.append(f"{u.utt_id},{u.segment[0]:.4f},{u.segment[1]:.4f},{u.duration:.4f}")
    return "\n".join(lines) + "\n"


# Written first and removed last (after corpus.json), so a folder holding it is an unfinished generation
# (killed, or failed on one file) that any rerun may replace. Recognised by its name alone, since a kill
# while it is being written must still leave a folder the generator recognises; the pid and host inside,
# when readable, tell whether its writer still runs.
MARKER = INCOMPLETE  # sercore.data.corpus refuses to load a folder that holds it
GENERATOR = "sercore.data.generate_corpus"
# Everything a generation writes at the corpus root (both layouts): what a rerun removes, nothing else.
WRITTEN = ("Audios", "Labels", "Transcripts", "corpus.json", "segments.csv",
           *(f"Session{k}" for k in range(1, iemocap_layout.SESSIONS + 1)))


class IncompleteCorpusWarning(UserWarning):
    """A rerun found an unfinished generation (corpus.incomplete) in the output folder and replaced it."""


def _written_by_us(out_dir: Path) -> bool:
    try:
        return json.loads((out_dir / "corpus.json").read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _live_writer(marker: Path) -> int | None:
    """The pid of a generation still running on this machine that wrote `marker`, if any (POSIX only:
    elsewhere os.kill would end the process instead of probing it)."""
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
        pid, host = int(info["pid"]), info["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # cut short by a kill while it was written: that run is over
    if os.name != "posix" or host != socket.gethostname() or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return pid


def _prepare(out_dir: Path, overwrite: bool) -> None:
    """Make `out_dir` ready for a new corpus, or refuse with a one-line message (nothing changed then).

    Empty or missing: used. An unfinished generation (MARKER present): replaced, with an
    IncompleteCorpusWarning, whatever `overwrite` says, unless the process that wrote it still runs. A
    finished corpus of this generator: replaced only with `overwrite`. Anything else: refused. Only the
    generator's own entries (WRITTEN) are removed."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} is a file: choose a folder for the corpus")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        incomplete = (out_dir / MARKER).exists()
        if not incomplete and not _written_by_us(out_dir):
            raise FileExistsError(f"{out_dir} is not empty and holds no corpus.json written by this generator "
                                  f"(nor {MARKER}): refusing to touch it; choose a new or empty folder")
        if not incomplete and not overwrite:
            raise FileExistsError(f"{out_dir} already holds a generated corpus: choose a new folder, or replace "
                                  "it with --overwrite on the command line (overwrite=True from Python)")
        if incomplete and (pid := _live_writer(out_dir / MARKER)) is not None:
            raise FileExistsError(f"{out_dir} is being generated by process {pid} ({MARKER}): wait for it, "
                                  f"or stop it; delete {MARKER} if no generate is running")
        if incomplete:
            warnings.warn(f"{out_dir} holds an unfinished generation ({MARKER}): replacing it",
                          IncompleteCorpusWarning, stacklevel=3)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Plain write, not atomic: the marker must exist before anything is removed or written.
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (out_dir / MARKER).write_text(json.dumps({"generator": GENERATOR, "started": started, "pid": os.getpid(),
                                              "host": socket.gethostname()}) + "\n", encoding="utf-8")
    for name in WRITTEN:
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        for leftover in out_dir.glob(f".{name}.*.tmp"):  # a root file's atomic write cut short by a kill
            leftover.unlink()


def _same_corpus(out_dir: Path, variant: str, layout: str, seed: int, n_utterances: int, config: dict) -> bool:
    if (out_dir / MARKER).exists():
        return False  # unfinished: its corpus.json, if any, may not describe the files
    try:
        written = json.loads((out_dir / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    parameters = written.get("provenance", {}).get("parameters", {})
    return written.get("generator") == GENERATOR and (
        written.get("variant"), written.get("layout"), written.get("seed"), parameters.get("n_utterances"),
        parameters.get("config")) == (variant, layout, seed, n_utterances, json.loads(json.dumps(config)))


def generate_corpus(out_dir, profile: str = "smoke", variant: str = "standard", layout: str = "msp-podcast",
                    seed: int = 0, n_utterances: int | None = None, workers: int | None = None,
                    progress: bool = True, overwrite: bool = False, reuse: bool = False) -> Path:
    """Write a generated demonstration corpus to `out_dir` and return that folder.

    Sizes come from the profile's `corpus:` section (n_utterances, long_form_lengths_s,
    long_form_per_length, test2_fraction, test2_snr_db); `n_utterances` overrides the size (for
    long-form: files per length). Rendering runs on `workers` processes (default os.cpu_count()).
    reuse=True returns an existing corpus in `out_dir` untouched when its corpus.json records the same
    variant, layout, seed, size and corpus settings (otherwise it is regenerated, as with overwrite=True).
    A folder left by an interrupted or failed generation (it still holds corpus.incomplete, see MARKER) is
    replaced by any call, with an IncompleteCorpusWarning (refused while the process that left it still
    runs); a finished corpus only with overwrite=True or
    reuse=True; a non-empty folder this generator did not write is refused (FileExistsError). Unusable
    arguments or profile values (a misspelt corpus key too) raise CorpusOptionError, a ValueError, before
    anything is written.
    Same arguments, same seed -> identical labels and identical wav bytes (on systems with os.fork;
    see sercore.data.render), whatever the number of workers.
    """
    if variant not in VARIANTS:
        raise CorpusOptionError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    if layout not in LAYOUTS:
        raise CorpusOptionError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    config = {**DEFAULTS, **section(profile, "corpus")}
    _check_options(profile, config, seed, workers)
    if n_utterances is None:
        n_utterances = config["long_form_per_length"] if variant == "long-form" else config["n_utterances"]
    if not _whole(n_utterances):
        raise CorpusOptionError(f"n_utterances must be a whole number >= 1, got {n_utterances!r}")
    seed, n_utterances = int(seed), int(n_utterances)  # numpy integers would reach corpus.json as strings
    out_dir = Path(out_dir).resolve()
    if reuse and _same_corpus(out_dir, variant, layout, seed, n_utterances, config):
        return out_dir
    _prepare(out_dir, overwrite or reuse)

    utterances = plan(n_utterances, variant, layout, seed, config)
    writer = msp_layout if layout == "msp-podcast" else iemocap_layout
    writer.assign_paths(utterances, out_dir)
    jobs = [Job(index=u.index, path=u.path, pieces=u.pieces, lead_silence=u.lead_silence, seed=seed,
                segment_piece=u.segment_piece, target_seconds=u.target_seconds, fit_seconds=u.fit_seconds,
                segment_position=u.segment_position, snr_db=u.snr_db)
            for u in utterances]
    for u, rendered in zip(utterances, _render_all(jobs, workers or os.cpu_count() or 1, progress)):
        u.duration, u.segment = rendered.duration, rendered.segment
        heard = rendered.heard if rendered.heard is not None else range(rendered.pieces_used)
        u.transcript = " ".join(u.pieces[i].text for i in heard)
    written = writer.write_metadata(utterances, out_dir)
    if variant == "localized":
        atomic_write_text(out_dir / "segments.csv", _segments_csv(utterances))
        written["segments_csv"] = "segments.csv"

    parameters = {"profile": profile if isinstance(profile, str) else str(profile), "variant": variant,
                  "layout": layout, "n_utterances": n_utterances, "config": config,
                  "class_profiles": {c: asdict(p) for c, p in PROFILES.items()}, "jitter": asdict(JITTER),
                  "avd_prototypes": AVD_PROTOTYPES, "avd_noise": AVD_NOISE, "emotional_share": EMOTIONAL_SHARE,
                  **({"localized_seconds": list(LOCALIZED_SECONDS)} if variant == "localized" else {}),
                  **writer.PARAMETERS,
                  "speakers": [asdict(s) for s in writer.SPEAKERS]}
    atomic_write_json(out_dir / "corpus.json", {
        "description": DESCRIPTION, "generator": GENERATOR, "layout": layout,
        "variant": variant, "seed": seed, "utterances": len(utterances),
        "total_seconds": round(sum(u.duration for u in utterances), 3), **written,
        "provenance": provenance(parameters, seed)})
    (out_dir / MARKER).unlink()  # last: the corpus is complete
    return out_dir
