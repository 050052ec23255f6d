"""One entry point for any corpus on disk: `load_corpus(root)` finds the layout and calls its loader.

The facts the data layer knows travel with the table, in table.attrs["corpus"] (corpus_facts reads them):
  layout       "msp-podcast" | "iemocap" | "manifest"
  classes      the layout's class set (MSP-Podcast: N H A S C U D F; IEMOCAP: ang hap neu sad), None for a
               manifest (its labels, sorted, unless the run names its classes)
  non_classes  labels the layout uses that are deliberately not classes (MSP-Podcast: O other, X no agreement)
  avd_range    the layout's A/V/D scale (MSP-Podcast 1..7, IEMOCAP 1..5), None for a manifest
  kind         "generated demonstration corpus" when the folder's corpus.json says the generator wrote it,
               else "user corpus" (corpus_kind)
Downstream code (sercore.train) reads these instead of guessing them again from the labels or the path. A table
built in memory has no facts: corpus_facts gives layout None, no class set, no scale, kind "user corpus".
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sercore.data import iemocap, msp_podcast
from sercore.data.iemocap import find_root, load_iemocap
from sercore.data.manifest import SUFFIXES, load_manifest
from sercore.data.msp_podcast import LABELS, labels_path, load_msp_podcast
from sercore.data.report import LoadReport

# The generator's mark of an unfinished folder (sercore.data.synth writes it first and removes it last).
INCOMPLETE = "corpus.incomplete"
# What each layout fixes (the module docstring); a manifest fixes none of them.
CLASS_SETS = {"msp-podcast": msp_podcast.CLASSES, "iemocap": iemocap.CLASSES}
NON_CLASSES = {"msp-podcast": tuple(msp_podcast.DROPPED_NAMES), "iemocap": ()}
AVD_RANGES = {"msp-podcast": msp_podcast.SCALE, "iemocap": iemocap.SCALE}
GENERATED_MARK = "generated demonstration corpus"  # how the generator's corpus.json description starts
USER_CORPUS = "user corpus"


def detect_layout(root) -> str:
    """"manifest" for a CSV or JSON-lines (.jsonl) file, "msp-podcast" for a folder with Labels/labels_consensus.csv (or the
    pre-1.11 labels_concensus.csv), "iemocap" for a folder with Session* folders or with exactly one
    subfolder that has them (the parent of IEMOCAP_full_release); FileNotFoundError saying what was
    expected otherwise."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"corpus {root} does not exist: expected an MSP-Podcast folder (with {LABELS}), "
                                "an IEMOCAP folder (with Session1..Session5) or a manifest file (.csv or .jsonl)")
    if root.is_file():
        if root.suffix.lower() in SUFFIXES:
            return "manifest"
        raise ValueError(f"{root} is a file but not a manifest: expected a .csv file or a .jsonl file (JSON lines, "
                         "EmoBox's metadata format)")
    if labels_path(root) is not None:
        return "msp-podcast"
    if any(p.is_dir() for p in root.glob("Session*")):
        return "iemocap"
    if find_root(root) != root:  # the parent of IEMOCAP_full_release: load_iemocap reads inside, with a note
        return "iemocap"
    raise FileNotFoundError(f"{root} holds no known corpus layout: expected {LABELS} (MSP-Podcast) or "
                            "Session1..Session5 folders (IEMOCAP); for other corpora pass a manifest (.csv or .jsonl)")


def load_corpus(root, **options) -> tuple[pd.DataFrame, LoadReport]:
    """The utterance table and the load report of the corpus at `root`, whatever its layout. Options go
    to the layout's loader (e.g. fold= for IEMOCAP, classes=, check_audio=). A generated corpus says so
    in the report."""
    layout = detect_layout(root)
    if layout != "manifest" and (Path(root) / INCOMPLETE).exists():
        raise ValueError(f"{Path(root) / INCOMPLETE} exists: {root} is a generated corpus whose generation did "
                         "not finish; run `python -m sercore generate` into it again to complete it")
    loader = {"msp-podcast": load_msp_podcast, "iemocap": load_iemocap, "manifest": load_manifest}[layout]
    table, report = loader(root, **options)
    info = Path(root) / "corpus.json"
    kind = USER_CORPUS
    if layout != "manifest" and info.is_file():
        meta = json.loads(info.read_text(encoding="utf-8"))
        if "description" in meta:
            report.note(f"{meta['description']} (variant {meta.get('variant')}, seed {meta.get('seed')})")
            kind = GENERATED_MARK if str(meta["description"]).startswith(GENERATED_MARK) else USER_CORPUS
    table.attrs["corpus"] = {"layout": layout, "classes": CLASS_SETS.get(layout),
                             "non_classes": NON_CLASSES.get(layout, ()), "avd_range": AVD_RANGES.get(layout),
                             "kind": kind}
    return table, report


def corpus_facts(table: pd.DataFrame) -> dict:
    """The facts load_corpus attached to `table` (the module docstring); those of no known corpus otherwise."""
    facts = table.attrs.get("corpus")
    if facts is None:
        return {"layout": None, "classes": None, "non_classes": (), "avd_range": None, "kind": USER_CORPUS}
    return dict(facts)


def corpus_kind(table: pd.DataFrame) -> str:
    """'generated demonstration corpus' or 'user corpus': what load_corpus found (corpus_facts)."""
    return corpus_facts(table)["kind"]


def load_segments(root) -> pd.DataFrame:
    """Where the emotional phrase lies in each utterance of a generated `localized` corpus:
    utt_id, seg_start, seg_end, duration (seconds)."""
    path = Path(root) / "segments.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: only a generated corpus of the 'localized' variant has one")
    return pd.read_csv(path, dtype={"utt_id": str})
