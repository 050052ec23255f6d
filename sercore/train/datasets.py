"""From the utterance table and its per-row feature arrays to the batches that models take (contracts.md).

Targets
- label: index into the corpus's class list: the `classes` option, else the class set the data layer
  attached to the table (sercore.data.corpus.corpus_facts: MSP-Podcast N, H, A, S, C, U, D, F, with O "other"
  and X "no agreement" left out of classification and counted; IEMOCAP ang, hap, neu, sad), else (a manifest,
  or a table built in memory) its labels in sorted order. Nothing is guessed from the labels.
- gender: 0 Female, 1 Male, -1 unknown.
- avd: arousal, valence, dominance scaled linearly to [0, 1] from the corpus scale [lo, hi] as
  (x - lo) / (hi - lo), [lo, hi] = `avd_range`, else the table's facts: MSP-Podcast rates on 1..7, so
  (x - 1) / 6; IEMOCAP on 1..5, so (x - 1) / 4. A manifest (or an in-memory table) has no known scale: pass
  `avd_range=(lo, hi)` when a study needs avd.

Inputs
- Training (utterance models), start="random": one random crop of `crop_frames` frames per utterance and
  epoch, the start drawn from numpy Generator([seed, epoch, row]) so that it depends on nothing but those
  three numbers (a resumed or sharded run draws the same crops). Shorter utterances are repeated end to end
  until they fill the crop ("repetition padding", as the main paper did), so training batches need no
  padding. start="first": the first `crop_frames` frames every epoch, shorter utterances whole, zero-padded
  with speech_mask (the Key-Sparse Transformer code's pad_input, utils/dataset.py).
- Evaluation: whole utterances, zero-padded to the longest in the batch, with speech_mask. Batches are cut
  by length (longest first) to at most `batch_size` items and `max_frames` padded frames (items x longest);
  an item longer than max_frames is a batch of its own (see EvalItems for the memory bound).
- Segment models (area-attention CNN): fixed windows of `segment_frames` frames every `hop_frames`
  (2 s windows, 1 s hop to train, 0.4 s hop to test in the paper). short_segments="skip" (the public
  code's rule, area_train.py: an utterance of at most 2 s is skipped) skips utterances of at most one window,
  n_frames <= segment_frames; sercore counts frames, not samples, so at hop 25 ms it also skips the
  utterances of 2 s + 1..399 samples that the code kept with one window. short_segments="pad" keeps an
  utterance of exactly one window and repetition-pads shorter ones to one window.
  Each window carries utt_index, the position of its utterance in the evaluated set.
- Text: token states [N, E] zero-padded with text_mask (at least one column, so a batch whose
  transcripts are all empty still has a well-formed [B, 1, E] tensor, fully masked).

The time axis of a speech array is 0 for [T, F] (log-Mel) and 1 for [L, T, F] (SSL hidden states).

Lazy features: `speech` (and `text`) may be any sequence with len and [i], e.g. a
sercore.features.store.LazyFeatures whose item is a memmap of one utterance; Utterances keeps such a
sequence as it is (a list is copied), asks it for shapes with `shape_of(i)` when it has one (so lengths
never touch the data), and the items above read only the crop (take_frames) or the one utterance they batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from sercore.data.corpus import AVD_RANGES, CLASS_SETS, NON_CLASSES, corpus_facts  # noqa: F401 (the layouts' facts)

AVD_COLUMNS = ("arousal", "valence", "dominance")
GENDERS = {"Female": 0, "Male": 1}
CROP_STARTS = ("random", "first")  # CropBase's start setting


def class_list(labels: Sequence, classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The classes to predict: `classes` when given (the run's, or the layout's set from corpus_facts), else
    the labels present, sorted."""
    if classes is not None:
        return tuple(classes)
    return tuple(sorted({str(x) for x in labels if isinstance(x, str) and x}))


def scale_avd(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(x - lo) / (hi - lo): the corpus scale [lo, hi] onto [0, 1]; NaN stays NaN."""
    if not hi > lo:
        raise ValueError(f"avd range must have hi > lo, got ({lo}, {hi})")
    return ((np.asarray(values, dtype=np.float64) - lo) / (hi - lo)).astype(np.float32)


@dataclass
class Utterances:
    """The table's rows as arrays, plus one speech array (and optionally text array) per row."""

    utt_id: np.ndarray
    split: np.ndarray
    label_name: np.ndarray
    label: np.ndarray          # int64 class index, -1 when the row has no usable class
    gender: np.ndarray         # int64 0 / 1 / -1
    avd: np.ndarray            # float32 [N, 3] on [0, 1], NaN when absent
    speech: Sequence  # a list of arrays, or a lazy sequence (see the module docstring)
    text: Sequence | None
    classes: tuple[str, ...]
    frames_per_second: float
    excluded_labels: dict = field(default_factory=dict)  # label -> rows kept out of classification
    avd_scale_known: bool = True  # False: the table has A/V/D values but no known scale to map them

    @classmethod
    def from_table(cls, table: pd.DataFrame, speech: list, text: list | None = None, *,
                   frames_per_second: float, classes: Sequence[str] | None = None,
                   avd_range: tuple[float, float] | None = None) -> "Utterances":
        if len(speech) != len(table) or (text is not None and len(text) != len(table)):
            raise ValueError(f"features must align with the table: {len(table)} rows, {len(speech)} speech "
                             f"arrays, {None if text is None else len(text)} text arrays")
        names = table["label"].tolist()
        facts = corpus_facts(table)
        classes = class_list(names, facts["classes"] if classes is None else classes)
        index = {c: i for i, c in enumerate(classes)}
        label = np.array([index.get(x, -1) if isinstance(x, str) else -1 for x in names], dtype=np.int64)
        excluded: dict = {}
        for name, code in zip(names, label):
            if code < 0 and isinstance(name, str) and name:
                excluded[name] = excluded.get(name, 0) + 1
        gender = np.array([GENDERS.get(g, -1) for g in table["gender"].tolist()], dtype=np.int64)
        raw_avd = table[list(AVD_COLUMNS)].to_numpy(dtype=np.float64)
        if avd_range is None:
            avd_range = facts["avd_range"]
        if avd_range is None:
            avd = np.full(raw_avd.shape, np.nan, dtype=np.float32)
        else:
            avd = scale_avd(raw_avd, *avd_range)
        return cls(utt_id=table["utt_id"].astype(str).to_numpy(), split=table["split"].astype(str).to_numpy(),
                   label_name=np.array([x if isinstance(x, str) else "" for x in names], dtype=object),
                   label=label, gender=gender, avd=avd, speech=_keep(speech),
                   text=None if text is None else _keep(text), classes=classes,
                   frames_per_second=float(frames_per_second), excluded_labels=excluded,
                   avd_scale_known=avd_range is not None or not np.isfinite(raw_avd).any())

    def rows(self, split: str, target: str) -> np.ndarray:
        """Row numbers of `split` that have the target ('label' or 'avd')."""
        in_split = self.split == split
        if target == "label":
            usable = self.label >= 0
        elif target == "avd":
            if not self.avd_scale_known:
                raise ValueError("this corpus has arousal/valence/dominance values but no known scale: "
                                 "pass avd_range=(lo, hi) (CLI: --set avd_range=[1,7])")
            usable = np.isfinite(self.avd).all(axis=1)
        else:
            raise ValueError(f"target must be 'label' or 'avd', got {target!r}")
        return np.flatnonzero(in_split & usable)

    def n_frames(self, row: int) -> int:
        shape_of = getattr(self.speech, "shape_of", None)
        shape = shape_of(row) if shape_of is not None else self.speech[row].shape
        return int(shape[0 if len(shape) == 2 else 1])


def _keep(arrays: Sequence) -> Sequence:
    """A lazy sequence as it is (copying it to a list would map every utterance), anything else as a list."""
    return arrays if hasattr(arrays, "shape_of") else list(arrays)


def time_axis(array: np.ndarray) -> int:
    return 0 if array.ndim == 2 else 1


def take_frames(array: np.ndarray, start: int, length: int) -> np.ndarray:
    """Frames [start, start + length) along the time axis; repeats the array end to end when it is shorter
    than `length` (repetition padding). Only the slice is read, so memory-mapped arrays stay on disk."""
    axis = time_axis(array)
    total = array.shape[axis]
    if total == 0:
        raise ValueError("cannot crop an utterance with 0 frames")
    if total >= start + length:
        return np.ascontiguousarray(np.take(array, np.arange(start, start + length), axis=axis))
    reps = math.ceil((start + length) / total)
    tiled = np.concatenate([np.asarray(array)] * reps, axis=axis)
    return np.ascontiguousarray(np.take(tiled, np.arange(start, start + length), axis=axis))


def pad_stack(arrays: Sequence[np.ndarray], min_length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad along the time axis to the longest; returns (tensor [B, ..., T, ...], mask [B, T] True = real)."""
    axis = time_axis(arrays[0])
    lengths = [a.shape[axis] for a in arrays]
    longest = max(max(lengths), min_length)
    shape = list(arrays[0].shape)
    shape[axis] = longest
    out = np.zeros([len(arrays)] + shape, dtype=np.float32)
    mask = np.zeros((len(arrays), longest), dtype=bool)
    for i, (a, n) in enumerate(zip(arrays, lengths)):
        if axis == 0:
            out[i, :n] = a
        else:
            out[i, :, :n] = a
        mask[i, :n] = True
    return torch.from_numpy(out), torch.from_numpy(mask)


def targets(data: Utterances, rows: Sequence[int]) -> dict[str, torch.Tensor]:
    rows = np.asarray(rows, dtype=np.int64)
    return {"label": torch.from_numpy(data.label[rows]), "gender": torch.from_numpy(data.gender[rows]),
            "avd": torch.from_numpy(np.ascontiguousarray(data.avd[rows]))}


def text_batch(data: Utterances, rows: Sequence[int]) -> dict[str, torch.Tensor]:
    if data.text is None:
        return {}
    text, mask = pad_stack([np.asarray(data.text[r], dtype=np.float32) for r in rows], min_length=1)
    return {"text": text, "text_mask": mask}


def segment_starts(n_frames: int, segment_frames: int, hop_frames: int, short: str = "skip") -> list[int]:
    """Window starts covering an utterance. 'skip': [] for an utterance of at most one window (the code skips
    utterances <= 2 s); 'pad': [0] for one shorter than a window (padded), windows as usual from one window on."""
    if short not in ("skip", "pad"):
        raise ValueError(f"short_segments must be 'skip' or 'pad', got {short!r}")
    if short == "skip" and n_frames <= segment_frames:
        return []
    if n_frames < segment_frames:
        return [0]
    return list(range(0, n_frames - segment_frames + 1, hop_frames))


class CropBase:
    """The skeleton shared by the items that train on one crop per utterance and epoch: CropItems (feature
    frames) and sercore.train.online.WaveCropItems (waveform samples). It holds the rows, the length, the item
    labels, the start setting ("random" | "first"), the crop's generator and the batch dict; a subclass says
    how one row is cut (`crop_row`, `crop` in its own units) and how the crops are stacked (`stack`)."""

    def __init__(self, data: Utterances, rows: Sequence[int], crop: int, seed: int, start: str = "random"):
        if start not in CROP_STARTS:
            raise ValueError(f"{type(self).__name__}: start must be 'random' or 'first', got {start!r}")
        self.data, self.rows, self.crop, self.seed = data, np.asarray(rows, dtype=np.int64), int(crop), seed
        self.start = start

    def __len__(self) -> int:
        return len(self.rows)

    def item_labels(self) -> np.ndarray:
        return self.data.label[self.rows]

    def rng(self, epoch: int, row) -> np.random.Generator:
        """The generator of row's crop in `epoch`: a function of (seed, epoch, row) alone, so a resumed or
        sharded run draws the same crops."""
        return np.random.default_rng([self.seed, epoch, int(row)])

    def crop_row(self, row, epoch: int) -> np.ndarray:
        raise NotImplementedError

    def stack(self, crops: list) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_stack(crops)

    def batch(self, items: Sequence[int], epoch: int) -> dict[str, torch.Tensor]:
        rows = self.rows[np.asarray(items, dtype=np.int64)]
        speech, mask = self.stack([self.crop_row(row, epoch) for row in rows])
        return {"speech": speech, "speech_mask": mask, **text_batch(self.data, rows), **targets(self.data, rows),
                "utt_index": torch.from_numpy(rows)}


class CropItems(CropBase):
    """Training items = utterances; item i of epoch e is a crop of `crop_frames` frames of row rows[i]: a random
    one, repetition-padded (start="random"), or its first crop_frames frames, zero-padded (start="first")."""

    def __init__(self, data: Utterances, rows: Sequence[int], crop_frames: int, seed: int, start: str = "random"):
        super().__init__(data, rows, crop_frames, seed, start)

    @property
    def crop_frames(self) -> int:
        return self.crop

    def crop_row(self, row, epoch: int) -> np.ndarray:
        n_frames = self.data.n_frames(row)
        if self.start == "first":  # no repetition: pad_stack zero-pads the shorter ones and masks them
            return take_frames(self.data.speech[row], 0, min(self.crop, n_frames))
        spare = n_frames - self.crop  # a shorter utterance starts at 0 and take_frames repeats it
        start = int(self.rng(epoch, row).integers(0, spare + 1)) if spare > 0 else 0
        return take_frames(self.data.speech[row], start, self.crop)


class SegmentItems:
    """Training items = fixed windows (row, start) of the utterances, in a fixed order."""

    def __init__(self, data: Utterances, rows: Sequence[int], segment_frames: int, hop_frames: int,
                 short: str = "skip"):
        self.data, self.segment_frames = data, segment_frames
        self.windows = [(int(r), s) for r in rows
                        for s in segment_starts(data.n_frames(r), segment_frames, hop_frames, short)]
        self.skipped_rows = sum(1 for r in rows if not segment_starts(data.n_frames(r), segment_frames, hop_frames, short))

    def __len__(self) -> int:
        return len(self.windows)

    def item_labels(self) -> np.ndarray:
        return np.array([self.data.label[r] for r, _ in self.windows], dtype=np.int64)

    def batch(self, items: Sequence[int], epoch: int) -> dict[str, torch.Tensor]:
        chosen = [self.windows[i] for i in items]
        rows = [r for r, _ in chosen]
        speech, mask = pad_stack([take_frames(self.data.speech[r], s, self.segment_frames) for r, s in chosen])
        return {"speech": speech, "speech_mask": mask, **text_batch(self.data, rows), **targets(self.data, rows),
                "utt_index": torch.tensor(rows, dtype=torch.int64)}


def batch_plan(lengths: Sequence[int], batch_size: int, max_frames: int | None) -> list[list[int]]:
    """Evaluation batches as lists of unit indices (EvalItems' rule, also online.WaveEvalItems'): units sorted
    longest first (ties in index order), cut into batches of at most `batch_size` units and at most
    `max_frames` padded frames (units x the batch's longest); a unit longer than max_frames goes alone."""
    order = sorted(range(len(lengths)), key=lambda u: -lengths[u])  # stable: ties keep row order
    plan: list[list[int]] = []
    for u in order:
        batch = plan[-1] if plan else None
        # longest first, so the batch's first unit sets its padded length
        if batch and len(batch) < batch_size and \
                (max_frames is None or (len(batch) + 1) * lengths[batch[0]] <= max_frames):
            batch.append(u)
        else:
            plan.append([u])
    return plan


class EvalItems:
    """Every utterance of a set, in batches; batch["utt_index"] is the position in `rows` (0..len-1), so
    predictions come back in the order of `rows` whatever the batching.

    Utterance models see whole utterances, segment models every window at the test hop (several windows per
    utterance). Units are sorted longest first (ties in row order) and cut into batches of at most
    `batch_size` units and at most `max_frames` padded frames (units x frames of the batch's longest); a
    unit longer than max_frames goes alone. So an evaluation batch holds at most
    max(max_frames, longest unit) frames per feature dimension: with a model whose memory grows linearly in
    the frames (the attention mechanisms' no-grad paths: sercore.attention.softmax chunks its queries),
    evaluation memory is bounded by that, not by batch_size x the longest utterance of the split.
    max_frames=None: batch_size alone decides (the former behaviour)."""

    def __init__(self, data: Utterances, rows: Sequence[int], batch_size: int, segment_frames: int | None = None,
                 hop_frames: int | None = None, short: str = "skip", max_frames: int | None = None):
        if batch_size < 1 or (max_frames is not None and max_frames < 1):
            raise ValueError(f"EvalItems: batch_size and max_frames must be >= 1, got {batch_size}, {max_frames}")
        self.data, self.batch_size, self.segment_frames = data, batch_size, segment_frames
        self.max_frames = max_frames
        rows = np.asarray(rows, dtype=np.int64)
        if segment_frames is None:
            self.rows = rows
            self.units = [(i, 0) for i in range(len(rows))]
            lengths = [data.n_frames(r) for r in rows]
            self.skipped_rows = 0
        else:
            starts = [segment_starts(data.n_frames(r), segment_frames, hop_frames, short) for r in rows]
            self.rows = rows[[i for i, s in enumerate(starts) if s]]
            kept = [s for s in starts if s]
            self.units = [(i, s) for i, ss in enumerate(kept) for s in ss]
            lengths = [segment_frames] * len(self.units)
            self.skipped_rows = len(rows) - len(self.rows)
        self.plan = batch_plan(lengths, batch_size, max_frames)
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.rows)

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        for plan in self.plan:
            chunk = [self.units[u] for u in plan]
            positions = [i for i, _ in chunk]
            rows = self.rows[positions]
            if self.segment_frames is None:
                arrays = [np.asarray(self.data.speech[r], dtype=np.float32) for r in rows]
            else:
                arrays = [take_frames(self.data.speech[r], s, self.segment_frames)
                          for r, (_, s) in zip(rows, chunk)]
            speech, mask = pad_stack(arrays)
            yield {"speech": speech, "speech_mask": mask, **text_batch(self.data, rows),
                   **targets(self.data, rows), "utt_index": torch.tensor(positions, dtype=torch.int64)}

    def n_batches(self) -> int:
        return len(self.plan)


class EpochSampler:
    """Which items each step trains on: a permutation per epoch from torch.Generator seeded by
    seed * 1_000_003 + epoch, cut into batches of batch_size (the last one may be smaller).

    The batch of global step s is a pure function of (seed, s), so a run resumed at step s reads exactly
    the batches an uninterrupted run would. With world > 1 each rank takes every world-th item of the
    global batch (the global batch, and so the optimisation, stays that of a single process); a final
    batch smaller than world is topped up with the epoch's first items so every rank has work."""

    def __init__(self, n_items: int, batch_size: int, seed: int, world: int = 1, rank: int = 0):
        if n_items <= 0:
            raise ValueError("no training items: the Train split is empty (or has no usable targets)")
        if batch_size < world:
            raise ValueError(f"batch_size {batch_size} is smaller than the number of processes {world}")
        self.n_items, self.batch_size, self.seed, self.world, self.rank = n_items, batch_size, seed, world, rank
        self.steps_per_epoch = math.ceil(n_items / batch_size)

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n_items, generator=generator)

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch within the epoch) of a 0-based global step."""
        return divmod(step, self.steps_per_epoch)

    def global_batch(self, step: int) -> list[int]:
        epoch, b = self.position(step)
        order = self.permutation(epoch)
        items = order[b * self.batch_size:(b + 1) * self.batch_size].tolist()
        if len(items) < self.world:
            items += order[:self.world - len(items)].tolist()
        return items

    def batch(self, step: int) -> list[int]:
        return self.global_batch(step)[self.rank::self.world]
