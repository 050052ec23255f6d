"""VTLP copies: warped Train copies are added, reproducibly, and only where they make sense."""

import numpy as np
import pytest

from sercore.data import generate_corpus, load_corpus
from sercore.features import extract, make_encoder
from sercore.train.augment import FACTOR_RANGE, add_vtlp_copies, vtlp_factor


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = generate_corpus(tmp_path_factory.mktemp("vtlp") / "c", profile="smoke", n_utterances=16, progress=False)
    table, _ = load_corpus(root)
    return root, table


def test_copies_are_appended_for_train_rows_only(corpus, tmp_path):
    root, table = corpus
    encoder = make_encoder("logmel")
    speech = list(extract(table, encoder, tmp_path, progress=False))
    text = [f"t{i}" for i in range(len(table))]
    n_train = int((table["split"] == "Train").sum())
    aug_table, aug_speech, aug_text = add_vtlp_copies(table, speech, text, encoder, 2, seed=0, cache_dir=tmp_path,
                                                      progress=False)
    assert len(aug_table) == len(aug_speech) == len(aug_text) == len(table) + 2 * n_train
    added = aug_table.iloc[len(table):]
    assert (added["split"] == "Train").all()
    assert added["utt_id"].str.contains("#vtlp").all()
    first = table.index[table["split"] == "Train"][0]
    copy = aug_speech[len(table)]
    assert copy.shape[1] == speech[first].shape[1]
    # nlpaug's VTLP (the default warp) returns 512 * (N // 512) samples: the copy may be a frame or two shorter
    assert 0 <= speech[first].shape[0] - copy.shape[0] <= 2
    assert not np.allclose(copy, speech[first][:len(copy)]), "a warped copy differs from its original"
    assert aug_text[len(table)] == text[first]
    again = add_vtlp_copies(table, speech, text, encoder, 2, seed=0, cache_dir=tmp_path, progress=False)[1]
    assert all(np.array_equal(a, b) for a, b in zip(aug_speech, again))


def test_factor_is_seeded_and_in_range():
    factors = [vtlp_factor(0, copy, f"u{i}") for copy in (1, 2) for i in range(50)]
    assert all(FACTOR_RANGE[0] <= f <= FACTOR_RANGE[1] for f in factors)
    assert vtlp_factor(0, 1, "u1") == vtlp_factor(0, 1, "u1") != vtlp_factor(1, 1, "u1")


def test_zero_copies_is_identity_and_bad_inputs_fail(corpus):
    _, table = corpus
    encoder = make_encoder("logmel")
    assert add_vtlp_copies(table, [], None, encoder, 0, 0, None)[0] is table
    with pytest.raises(ValueError, match="0 or more"):
        add_vtlp_copies(table, [], None, encoder, -1, 0, None)

    class NotLogMel:
        name = "text-model"

    with pytest.raises(ValueError, match="log-Mel"):
        add_vtlp_copies(table, [], None, NotLogMel(), 1, 0, None)
