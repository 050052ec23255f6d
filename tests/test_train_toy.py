"""A toy problem for the trainer (separable random features, a linear model) and the tests of the data side:
targets, crops, segments, the deterministic sampler.

The other trainer tests import make_toy_data / ToyModel / toy_settings from here; so does the torchrun worker.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sercore.train.datasets import (AVD_RANGES, CLASS_SETS, CropItems, EpochSampler, EvalItems, SegmentItems,
                                    Utterances, batch_plan, class_list, scale_avd, segment_starts, take_frames)
from sercore.train.settings import TrainSettings

TOY_CLASSES = ("ang", "hap", "neu", "sad")  # IEMOCAP codes, passed as the class list (and its 1..5 scale)
SPLITS = {"Train": 48, "Development": 24, "Test1": 24}


def make_toy_data(seed: int = 0, dim: int = 8, noise: float = 1.0, splits=SPLITS) -> Utterances:
    """Utterances of 30-150 frames whose frames are a class mean plus noise; A/V/D tied to the class."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1.5, size=(len(TOY_CLASSES), dim))
    rows, speech = [], []
    for split, n in splits.items():
        for i in range(n):
            c = i % len(TOY_CLASSES)
            frames = means[c] + rng.normal(scale=noise, size=(int(rng.integers(30, 150)), dim))
            speech.append(frames.astype(np.float32))
            rows.append({"utt_id": f"{split}_{i:03d}", "path": f"/nowhere/{split}_{i:03d}.wav",
                         "label": TOY_CLASSES[c], "arousal": 1.0 + c, "valence": 4.0 - c,
                         "dominance": 1.0 + c / 2, "speaker": f"spk{i % 3}",
                         "gender": ("Female", "Male")[i % 2], "split": split, "transcript": ""})
    return Utterances.from_table(pd.DataFrame(rows), speech, frames_per_second=100.0, classes=TOY_CLASSES,
                                 avd_range=AVD_RANGES["iemocap"])


class ToyModel(nn.Module):
    """Masked mean over time -> Linear -> tanh -> Dropout -> logits (or sigmoid A/V/D for regression)."""

    def __init__(self, dim: int = 8, n_classes: int = 4, regression: bool = False, dropout: float = 0.2):
        super().__init__()
        self.inputs = {"speech": "logmel", "text": False}
        self.regression = regression
        self.hidden = nn.Linear(dim, 16)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(16, 3 if regression else n_classes)

    def forward(self, batch):
        mask = batch["speech_mask"].float()
        pooled = (batch["speech"] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        h = self.dropout(torch.tanh(self.hidden(pooled)))
        return {"avd": torch.sigmoid(self.out(h))} if self.regression else {"logits": self.out(h)}

    def loss(self, batch, outputs, class_weights=None):
        if self.regression:
            return F.mse_loss(outputs["avd"], batch["avd"])
        return F.cross_entropy(outputs["logits"], batch["label"], weight=class_weights)


def toy_settings(**changes) -> TrainSettings:
    values = dict(epochs=4, batch_size=8, lr=0.02, eval_every=5, crop_seconds=0.5, eval_batch_size=16, n_boot=50,
                  progress=False, device="cpu")
    values.update(changes)
    return TrainSettings(**values)


# -- targets ---------------------------------------------------------------------------------------------

def test_targets_from_the_table():
    data = make_toy_data()
    assert data.classes == TOY_CLASSES
    assert data.label[:4].tolist() == [0, 1, 2, 3]
    assert data.gender[:2].tolist() == [0, 1]
    # IEMOCAP rates on 1..5: arousal 1 + c -> c / 4
    assert data.avd[:4, 0].tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_class_lists_and_scales():
    # the class set comes from the layout (sercore.data.corpus facts), never from what the labels look like
    msp = CLASS_SETS["msp-podcast"]
    assert class_list(["N", "A", "X", "O", None], msp) == ("N", "H", "A", "S", "C", "U", "D", "F")
    assert class_list(["N", "A", "X"]) == ("A", "N", "X")  # no facts (a manifest): the labels, sorted
    assert class_list(["b", "a", "b"]) == ("a", "b")
    assert scale_avd([1.0, 4.0, 7.0], 1.0, 7.0).tolist() == [0.0, 0.5, 1.0]  # MSP-Podcast: (x - 1) / 6


def test_labels_outside_the_class_list_are_counted_not_used():
    table = pd.DataFrame({"utt_id": ["a", "b", "c"], "path": ["", "", ""], "label": ["N", "X", "O"],
                          "arousal": [4.0, 4.0, np.nan], "valence": [4.0, 4.0, 4.0], "dominance": [4.0, 4.0, 4.0],
                          "speaker": ["1", "1", "1"], "gender": ["Male", None, "Female"],
                          "split": ["Train"] * 3, "transcript": ["", "", ""]})
    table.attrs["corpus"] = {"layout": "msp-podcast", "classes": CLASS_SETS["msp-podcast"], "avd_range": (1, 7),
                             "non_classes": ("O", "X"), "kind": "user corpus"}  # as load_corpus attaches them
    data = Utterances.from_table(table, [np.zeros((5, 2), np.float32)] * 3, frames_per_second=100)
    assert data.label.tolist() == [0, -1, -1]
    assert data.excluded_labels == {"X": 1, "O": 1}
    assert data.gender.tolist() == [1, -1, 0]
    assert data.rows("Train", "label").tolist() == [0]
    assert data.rows("Train", "avd").tolist() == [0, 1]


def test_avd_of_a_manifest_needs_a_scale():
    table = pd.DataFrame({"utt_id": ["a"], "path": [""], "label": ["x"], "arousal": [3.0], "valence": [3.0],
                          "dominance": [3.0], "speaker": ["1"], "gender": ["Male"], "split": ["Train"],
                          "transcript": [""]})
    data = Utterances.from_table(table, [np.zeros((5, 2), np.float32)], frames_per_second=100)
    with pytest.raises(ValueError, match="avd_range"):
        data.rows("Train", "avd")
    scaled = Utterances.from_table(table, [np.zeros((5, 2), np.float32)], frames_per_second=100, avd_range=(1, 5))
    assert scaled.avd[0].tolist() == [0.5, 0.5, 0.5]


# -- crops and segments ----------------------------------------------------------------------------------

def test_repetition_padding_and_ssl_time_axis():
    short = np.arange(3, dtype=np.float32)[:, None]  # [T=3, F=1]
    assert take_frames(short, 0, 7)[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
    ssl = np.arange(2 * 10 * 4, dtype=np.float32).reshape(2, 10, 4)  # [L, T, D]: time is axis 1
    assert np.array_equal(take_frames(ssl, 3, 4), ssl[:, 3:7])


def test_crops_depend_only_on_seed_epoch_and_row():
    data = make_toy_data()
    items = CropItems(data, data.rows("Train", "label"), crop_frames=50, seed=3)
    a = items.batch([0, 5, 7], epoch=2)
    b = items.batch([7, 0], epoch=2)  # same rows, other batch composition
    assert torch.equal(a["speech"][0], b["speech"][1]) and torch.equal(a["speech"][2], b["speech"][0])
    assert not torch.equal(items.batch([0], epoch=3)["speech"][0], a["speech"][0])
    assert a["speech"].shape == (3, 50, 8) and bool(a["speech_mask"].all())


def test_segments_skip_short_utterances_and_cover_long_ones():
    assert segment_starts(201, 81, 40) == [0, 40, 80, 120]
    assert segment_starts(200, 81, 40) == [0, 40, 80]  # a tail shorter than the hop is not seen
    assert segment_starts(60, 81, 40) == [] and segment_starts(60, 81, 40, "pad") == [0]
    data = make_toy_data()
    rows = data.rows("Development", "label")
    items = EvalItems(data, rows, batch_size=8, segment_frames=60, hop_frames=16)
    long_enough = [r for r in rows if data.n_frames(r) > 60]  # at most one window: skipped, as the code
    assert len(items) == len(long_enough) and items.skipped_rows == len(rows) - len(long_enough)
    seen = np.concatenate([b["utt_index"].numpy() for b in items.batches()])
    expected = sum(len(segment_starts(data.n_frames(r), 60, 16)) for r in long_enough)
    assert len(seen) == expected and set(seen.tolist()) == set(range(len(items)))
    train = SegmentItems(data, data.rows("Train", "label"), 60, 40)
    batch = train.batch([0, 1, 2], epoch=0)
    assert batch["speech"].shape == (3, 60, 8)


def test_eval_batches_pad_and_mask_whole_utterances():
    data = make_toy_data()
    rows = data.rows("Test1", "label")
    items = EvalItems(data, rows, batch_size=5)
    batch = next(items.batches())
    lengths = batch["speech_mask"].sum(1)
    for pos, n in zip(batch["utt_index"].tolist(), lengths.tolist()):
        assert n == data.n_frames(rows[pos])
    assert float(batch["speech"][~batch["speech_mask"]].abs().sum()) == 0.0



def test_eval_batch_plan_longest_first_within_units_and_frames():
    """datasets.batch_plan, EvalItems' and WaveEvalItems' one rule: ties keep index order, a unit longer than
    max_frames goes alone, a batch stops at batch_size units or units x its longest > max_frames."""
    lengths = [5, 9, 9, 3, 20, 4]
    assert batch_plan(lengths, 2, 18) == [[4], [1, 2], [0, 5], [3]]
    assert batch_plan(lengths, 4, None) == [[4, 1, 2, 0], [5, 3]]
    data = make_toy_data()
    rows = data.rows("Test1", "label")
    items = EvalItems(data, rows, batch_size=5, max_frames=300)
    assert items.plan == batch_plan([data.n_frames(r) for r in rows], 5, 300)


# -- the sampler -------------------------------------------------------------------------------------------

def test_sampler_is_a_pure_function_of_seed_and_step():
    a, b = EpochSampler(50, 8, seed=1), EpochSampler(50, 8, seed=1)
    assert a.steps_per_epoch == 7
    assert [a.batch(s) for s in range(20)] == [b.batch(s) for s in range(20)]
    epoch0 = sorted(i for s in range(7) for i in a.batch(s))
    assert epoch0 == list(range(50))  # every item once per epoch, the last batch smaller
    assert a.batch(0) != a.batch(7)  # a new permutation each epoch
    assert EpochSampler(50, 8, seed=2).batch(0) != a.batch(0)


def test_sharded_sampler_splits_the_global_batch():
    whole = EpochSampler(50, 8, seed=1)
    ranks = [EpochSampler(50, 8, seed=1, world=2, rank=r) for r in range(2)]
    for step in range(14):
        parts = [r.batch(step) for r in ranks]
        assert sorted(parts[0] + parts[1]) == sorted(whole.batch(step)) or len(whole.batch(step)) < 2
        assert parts[0] and parts[1]
    # 50 = 6 * 8 + 2: the last batch of an epoch still gives each of 2 ranks one item
    assert [len(r.batch(6)) for r in ranks] == [1, 1]
