"""MSP-Podcast loader (also reads the generated corpus, which uses the same layout).

    <root>/Audios/<FileName>
    <root>/Labels/labels_consensus.csv   FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
    <root>/Labels/labels_consensus.json  (read only when no CSV is there) {FileName: {EmoClass, EmoAct,
                                         EmoVal, EmoDom, SpkrID, Gender, Split_Set}, ...}
    <root>/Partitions.txt                (optional; or Partition.txt) one "Split; FileName" per line
    <root>/Transcripts/<stem>.txt        (optional; "" when missing, counted)

Rows are kept for the requested classes (default the eight of the Odyssey 2024 challenge: N H A S C U D F);
O (other) and X (no agreement) are dropped and counted, as is any code the corpus does not define;
classes=ALL_CODES keeps O and X, whose A/V/D ratings are real (the dimensional study reads them so, as the
challenge's attribute task uses every row).
Split_Set must be one of Train, Development, Test1, Test2, Test3. A/V/D stay on MSP-Podcast's 1..7
scale; an empty A/V/D cell becomes NaN, and so does a value outside 1..7 (counted as repaired; the
class label stays). SpkrID "Unknown" stays the string "Unknown". A FileName that leaves Audios/
("../x.wav", "/abs/x.wav") is skipped. The utt_id is the FileName's stem, so a second row with the
same stem (X.wav again, or X.flac after X.wav) is skipped, saying which file was kept.

Releases before 1.11 name the labels file Labels/labels_concensus.csv (sic) and the development split
"Validation": that file is read when labels_consensus.csv is absent (noted), and "Validation" becomes
Development (counted as repaired).

The JSON form (the same fields, keyed by FileName, as public MSP-Podcast preparation scripts read it:
json.load, then labels[FileName]["EmoClass"], ...) is read with the same checks, entry by entry; a FileName
given twice in the object is counted as a duplicate (a plain JSON reader would keep the last silently).
Invalid JSON is refused with one line naming the file, line and column.

Test3 (the challenge set of releases 1.11 and 1.12) is released as audio in Audios/ with no labels row;
the partition file (Partitions.txt or Partition.txt, in the root or in Labels/; lines "Test3; <FileName>",
also accepted as "<FileName>; Test3") lists it. A listed file
without a labels row stays in the table, in the listed split, with label None and NaN A/V/D, speaker
"Unknown" and gender None: it is never trained on or scored (sercore.train.run counts such rows in
metrics.json data.excluded) but `python -m sercore predict` writes predictions for it. Where the labels
file and the partition file both give a split, Split_Set is kept and disagreements are counted in a note.

Some copies nest the audio folder in itself (Audios/Audios/*.wav, from unpacking an archive inside its own
folder). When Audios/ holds no audio of its own but Audios/Audios/ exists, the audio is read from there
and a note says so (rather than every file being reported missing).

The report accounts for every line and every audio file: the labels file is read one physical line at
a time (sercore.data.table.read_lines: a line that is not UTF-8 or has an unbalanced quote costs that
line only), and report.accounts (also printed as a note) gives data lines = kept + skipped + blank
(JSON: entries = kept + skipped; the partition file: lines = with a labels row + kept unlabelled +
skipped + blank). Every file under Audios/ is kept, named by a skipped row, or counted as audio without
a labels row or partition entry (NO_ROW). Transcripts that are not valid UTF-8 are read with the bad
bytes replaced, counted as repaired.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from pathlib import Path

import pandas as pd

from sercore.data.audio import SAMPLE_RATE
from sercore.data.prosody import CLASSES
from sercore.data.report import LoadReport
from sercore.data.table import (NOT_UTF8, account_audio, audio_files, audio_usable, csv_cells, is_blank,
                                make_table, normal_path, normalise_gender, read_lines, require_root)

LABELS = Path("Labels") / "labels_consensus.csv"
LABELS_BEFORE_1_11 = Path("Labels") / "labels_concensus.csv"  # sic: the name releases before 1.11 use
LABELS_JSON = Path("Labels") / "labels_consensus.json"
PARTITION_FILES = (Path("Partitions.txt"), Path("Partition.txt"), Path("Labels") / "Partitions.txt",
                   Path("Labels") / "Partition.txt")
REQUIRED = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")
ALL_CODES = CLASSES + ("O", "X")
DROPPED_NAMES = {"O": "other", "X": "no agreement"}
SCALE = (1.0, 7.0)
NO_ROW = ("audio without a labels row or partition entry (Test3 challenge audio is kept, unlabelled, when "
          "Partitions.txt lists it)")
PARTITION_LINE = "malformed partition line (expected \"Split; FileName\")"


class _Pairs(list):
    """A JSON object as its (key, value) pairs in file order, so a key given twice is seen, not overwritten."""


def _number(text: str) -> float:
    """A/V/D cell -> float; empty -> NaN; anything else raises ValueError (a malformed row)."""
    text = text.strip()
    if not text:
        return math.nan
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _outside(value: float) -> bool:
    return not math.isnan(value) and not SCALE[0] <= value <= SCALE[1]


def labels_path(root: Path) -> Path | None:
    """The labels file of the corpus at root (the current CSV name, the pre-1.11 one, the JSON form), or None."""
    for relative in (LABELS, LABELS_BEFORE_1_11, LABELS_JSON):
        if (root / relative).is_file():
            return root / relative
    return None


def partition_path(root: Path) -> Path | None:
    """The partition file of the corpus at root (Partitions.txt or Partition.txt, root or Labels/), or None."""
    for relative in PARTITION_FILES:
        if (root / relative).is_file():
            return root / relative
    return None


def _transcript(path: Path, name: str, report: LoadReport) -> str:
    if not path.is_file():
        report.repair("transcript missing (set to \"\")", name)
        return ""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        report.repair("transcript not valid UTF-8 (bad bytes replaced)", name)
        return raw.decode("utf-8-sig", errors="replace").strip()


def _audio_folder(root: Path, report: LoadReport) -> Path:
    """Audios/, or Audios/Audios/ when the copy nests the folder in itself and Audios/ has no audio of its own."""
    audios = root / "Audios"
    nested = audios / "Audios"
    if not nested.is_dir():
        return audios
    if any(p.is_file() and not p.name.startswith(".") for p in audios.iterdir()):
        report.note("Audios/Audios/ exists beside audio in Audios/: its files are not where the labels point "
                    "and are counted as audio without a row")
        return audios
    report.note("Audios/Audios/: this copy nests the audio folder in itself; audio read from Audios/Audios/")
    return nested


def _csv_records(path: Path, audios: Path, report: LoadReport, named_files: set):
    """(records [(where, row)], data lines, blank lines) of the CSV labels file; malformed lines are counted
    as skipped here, and the file such a line most likely names is added to named_files."""
    lines = read_lines(path, report)
    header = [name.strip() for name in next(csv.reader([lines[0].text]))] if lines else []
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ValueError(f"{path}:1: header lacks {', '.join(missing)} "
                         f"(expected {','.join(REQUIRED)}; found {','.join(header) or 'nothing'})")
    where = {name: header.index(name) for name in REQUIRED}
    records, blank = [], 0
    for line in lines[1:]:
        if is_blank(line):
            blank += 1
            continue
        item = f"line {line.number}"
        cells = csv_cells(line, report, item)
        if cells is None or len(cells) != len(header):
            if cells is not None:
                report.skip(f"malformed row ({len(cells)} fields, header has {len(header)})", item)
            # the file this broken line most likely names is accounted for by its skip, not counted again
            guess = line.text.split(",")
            if len(guess) > where["FileName"]:
                named_files.add(normal_path(audios / guess[where["FileName"]].strip().strip('"')))
            continue
        records.append((item, {name: cells[index].strip() for name, index in where.items()}))
    return records, len(lines) - 1, blank


def _cell(value) -> str | None:
    """A JSON value as the text a CSV cell would hold ("" for null); None for an object or array."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return None
    return str(value).strip()


def _json_records(path: Path, audios: Path, report: LoadReport, named_files: set):
    """(records [(where, row)], entries) of labels_consensus.json; malformed entries are counted as skipped
    (and the file each names added to named_files, so its audio is not counted again)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 (byte {error.start}); re-save it as UTF-8") from None
    try:
        top = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})") from None
    if not isinstance(top, _Pairs):
        raise ValueError(f"{path}: expected a JSON object keyed by FileName, found a {type(top).__name__}")
    records = []
    for number, (name, value) in enumerate(top, start=1):
        item = f"entry {number}"
        if _inside(str(name)) is not None:
            named_files.add(normal_path(audios / _inside(str(name))))
        if not isinstance(value, _Pairs):
            report.skip("malformed entry (not an object)", f"{item} ({name!r})")
            continue
        fields = dict(value)
        missing = [key for key in REQUIRED[1:] if key not in fields]
        if missing:
            report.skip(f"malformed entry (lacks {', '.join(missing)})", f"{item} ({name!r})")
            continue
        row = {"FileName": str(name).strip(), **{key: _cell(fields[key]) for key in REQUIRED[1:]}}
        if any(cell is None for cell in row.values()):
            report.skip("malformed entry (a field is an object or array)", f"{item} ({name!r})")
            continue
        records.append((item, row))
    return records, len(top)


def _partition_entries(path: Path, report: LoadReport):
    """(entries [(where, split, FileName)], lines, blank) of a partition file; bad lines counted as skipped."""
    lines = read_lines(path, report)
    entries, blank = [], 0
    for line in lines:
        item = f"{path.name} line {line.number}"
        if is_blank(line):
            blank += 1
            continue
        if not line.valid:
            report.skip(NOT_UTF8, item)
            continue
        parts = [part.strip() for part in line.text.split(";")]
        if len(parts) != 2:
            report.skip(PARTITION_LINE, item)
            continue
        known = SPLITS + ("Validation",)
        if parts[0] in known and parts[1]:
            entries.append((item, parts[0], parts[1]))
        elif parts[1] in known and parts[0]:  # "FileName; Split" written the other way round
            entries.append((item, parts[1], parts[0]))
        else:
            report.skip(f"{PARTITION_LINE[:-1]}; the split must be one of {', '.join(known)})",
                        f"{item} ({line.text.strip()!r})")
    return entries, len(lines), blank


def _inside(name: str) -> str | None:
    """The FileName as a relative path inside Audios/, or None when it leaves the folder."""
    relative = os.path.normpath(name)
    if os.path.isabs(relative) or relative.split(os.sep)[0] == os.pardir:
        return None
    return relative


def load_msp_podcast(root, classes=CLASSES, check_audio: bool = True,
                     sample_rate: int = SAMPLE_RATE) -> tuple[pd.DataFrame, LoadReport]:
    """The utterance table of an MSP-Podcast-layout corpus and the report of what was kept or left out.

    classes: class codes to keep (others are skipped and counted; ALL_CODES keeps O and X too, as the
    attribute task does). check_audio: read every file's header (sample rate, channels, length) rather
    than only checking that it exists.
    """
    root = require_root(root, f"an MSP-Podcast folder with {LABELS}, Audios/ and Transcripts/")
    path = labels_path(root)
    if path is None:
        raise FileNotFoundError(f"{root / LABELS} not found: an MSP-Podcast corpus needs {LABELS} (or "
                                f"{LABELS_JSON}) under {root}")
    report = LoadReport("msp-podcast", str(root))
    if path.name == LABELS_BEFORE_1_11.name:
        report.note(f"labels read from {path.relative_to(root)} (the name releases before 1.11 use)")
    elif path.suffix == ".json":
        report.note(f"labels read from {path.relative_to(root)} (no labels_consensus.csv)")
    audios = _audio_folder(root, report)
    audio_where = f"{audios.relative_to(root).as_posix()}/"
    classes = tuple(classes)
    rows, first = [], {}  # first: stem -> (FileName, where) of the row kept under that utt_id
    kept_files, named_files, kept_split = set(), set(), {}
    skipped_before = report.n_skipped
    if path.suffix == ".json":
        records, total = _json_records(path, audios, report, named_files)
        blank = None
    else:
        records, total, blank = _csv_records(path, audios, report, named_files)

    def keep(stem, name, where, audio, code, avd, speaker, gender, split) -> None:
        transcript = _transcript(root / "Transcripts" / f"{stem}.txt", name, report)
        first[stem] = (name, where)
        kept_files.add(audio)
        kept_split[audio] = split
        rows.append({"utt_id": stem, "path": str(audio), "label": code, "arousal": avd[0], "valence": avd[1],
                     "dominance": avd[2], "speaker": speaker, "gender": normalise_gender(gender, report, name),
                     "split": split, "transcript": transcript})

    def shares_stem(stem, name, where) -> bool:
        if stem not in first:
            return False
        kept_name, kept_where = first[stem]
        if kept_name == name:
            report.skip("duplicate FileName", f"{name} ({where}; {kept_where} kept)")
        else:
            report.skip("two FileNames share a stem (the utt_id; the first row is kept)",
                        f"{name} (stem {stem}: {kept_name} kept, {name} skipped)")
        return True

    for where, row in records:
        name = row["FileName"]
        if not name:
            report.skip("malformed row (empty FileName)", where)
            continue
        relative = _inside(name)
        if relative is None:
            report.skip("FileName outside Audios/", f"{where} ({name!r})")
            continue
        item, audio = name, normal_path(audios / relative)
        named_files.add(audio)
        try:
            avd = [_number(row[k]) for k in ("EmoAct", "EmoVal", "EmoDom")]
        except ValueError:
            report.skip("malformed row (A/V/D not a number)", item)
            continue
        split = row["Split_Set"]
        if split not in SPLITS and split != "Validation":
            report.skip(f"malformed row (Split_Set not one of {', '.join(SPLITS)})", f"{item} ({split!r})")
            continue
        code = row["EmoClass"]
        if code not in classes:
            if code in DROPPED_NAMES:
                report.skip(f"class {code} ({DROPPED_NAMES[code]}) not in the class set", item)
            elif code in ALL_CODES:
                report.skip(f"class {code} not in the class set", item)
            elif not code:
                report.skip("no class label", item)
            else:
                report.skip("unknown class code", f"{item} ({code!r})")
            continue
        stem = Path(name).stem
        if shares_stem(stem, name, where):
            continue
        if not audio_usable(audio, name, report, check_audio, sample_rate):
            continue
        if any(_outside(value) for value in avd):
            report.repair("A/V/D outside 1..7 (set to NaN)", f"{item} ({row['EmoAct']}, {row['EmoVal']}, "
                                                              f"{row['EmoDom']})")
            avd = [math.nan if _outside(value) else value for value in avd]
        if split == "Validation":
            report.repair("Split_Set Validation (the pre-1.11 name; set to Development)", item)
            split = "Development"
        keep(stem, name, where, audio, code, avd, row["SpkrID"], row["Gender"], split)
    n_labelled = len(rows)
    report.kept = n_labelled
    source = str(path.relative_to(root))
    if blank is None:
        report.account(source, "entries of the JSON object", total,
                       {"kept": n_labelled, "skipped": report.n_skipped - skipped_before})
    else:
        report.account(source, "data lines after the header", total,
                       {"kept": n_labelled, "skipped": report.n_skipped - skipped_before, "blank": blank})

    partitions = partition_path(root)
    if partitions is not None:
        _add_partition_rows(partitions, root, audios, report, named_files, kept_split, shares_stem, keep,
                            check_audio, sample_rate)
    report.kept = len(rows)
    files = audio_files(audios, report, audio_where)
    unlisted = [p for p in files if p not in kept_files and p not in named_files]
    like_test3 = sum("test3" in p.name.lower() for p in unlisted)
    if like_test3 and partitions is None:
        report.note(f"{audio_where}: {like_test3} file(s) named *test3* have no labels row and there is no "
                    "Partitions.txt: put the release's partition file in the corpus root to keep them as Test3")
    account_audio(files, kept_files, named_files, report, NO_ROW, audio_where, root)
    return make_table(rows), report


def _add_partition_rows(path, root, audios, report, named_files, kept_split, shares_stem, keep, check_audio,
                        sample_rate) -> None:
    """Keep every file the partition file lists without a labels row (Test3), unlabelled; account its lines."""
    skipped_before = report.n_skipped
    entries, total, blank = _partition_entries(path, report)
    with_row, kept, disagree, seen = 0, Counter(), 0, set()
    for where, split, name in entries:
        relative = _inside(name)
        if relative is None:
            report.skip("FileName outside Audios/", f"{where} ({name!r})")
            continue
        audio = normal_path(audios / relative)
        if audio in seen:
            report.skip("duplicate partition entry", f"{name} ({where})")
            continue
        seen.add(audio)
        if audio in named_files:  # the labels file has its row (kept or skipped there)
            with_row += 1
            split = "Development" if split == "Validation" else split
            disagree += audio in kept_split and kept_split[audio] != split
            continue
        stem = Path(name).stem
        if shares_stem(stem, name, where):
            named_files.add(audio)
            continue
        named_files.add(audio)
        if not audio_usable(audio, name, report, check_audio, sample_rate):
            continue
        if split == "Validation":
            report.repair("Split_Set Validation (the pre-1.11 name; set to Development)", name)
            split = "Development"
        keep(stem, name, where, audio, None, [math.nan] * 3, "Unknown", None, split)
        kept[split] += 1
    source = str(path.relative_to(root))
    report.account(source, "lines", total, {"with a labels row": with_row, "kept unlabelled": sum(kept.values()),
                                            "skipped": report.n_skipped - skipped_before, "blank": blank})
    if kept:
        splits = ", ".join(f"{split}: {n}" for split, n in sorted(kept.items()))
        report.note(f"{source}: {sum(kept.values())} file(s) without a labels row kept unlabelled ({splits}): "
                    "never trained on or scored; `python -m sercore predict` writes their predictions")
    if disagree:
        report.note(f"{source}: {disagree} file(s) listed in another split than their labels row's Split_Set "
                    "(Split_Set kept)")
