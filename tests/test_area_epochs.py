"""Area study at equal epochs: VTLP copies add steps to an epoch instead of taking passes away under a cap."""

import pytest

from sercore import results
from sercore.data import generate_corpus
from sercore.fidelity import AREA
from sercore.train.settings import resolve


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_cpu_profiles_train_the_area_cnn_by_epochs_not_a_step_cap(profile):
    settings = resolve(profile, "area-cnn")
    assert settings.max_steps is None
    entry = next(e for e in AREA if e.setting == "train.by_study.area-cnn.epochs")
    assert settings.epochs == entry.profiles[profile]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("area-epochs")
    corpus = generate_corpus(root / "corpus", profile="smoke", n_utterances=16, progress=False)
    variants = {"3x3": {}, "3x3, 1 VTLP copies": {"vtlp_copies": 1}}
    return results.run_grid("area-cnn", corpus, root / "runs", profile="smoke", variants=variants, seeds=[0],
                            progress=False, epochs=2, eval_every=1000, n_boot=10)


def test_vtlp_copies_double_the_steps_of_an_epoch_at_equal_epochs(runs):
    table = results.budget_table(runs)
    plain, copied = table.loc[("3x3", 0)], table.loc[("3x3, 1 VTLP copies", 0)]
    assert plain["epochs"] == copied["epochs"] == 2
    assert plain["max_steps"] is None and copied["max_steps"] is None
    for row in (plain, copied):
        assert row["steps"] == row["epochs"] * row["steps per epoch"]
    # One copy per Train utterance: about twice the segments (a warped copy can lose a frame, so a segment).
    assert 1.7 <= copied["training items"] / plain["training items"] <= 2.0
    assert copied["steps per epoch"] > plain["steps per epoch"]
    assert plain["VTLP warp"] == "-" and copied["VTLP warp"] == "nlpaug"
    assert "generated demonstration corpus; profile smoke; 1 seed (0)" == results.caption(runs)


def test_seeds_come_from_the_profile_with_a_per_study_override(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("results:\n  seeds: [0, 1, 2]\n  by_study:\n    area-cnn: [7]\n")
    assert results.profile_seeds(str(profile)) == [0, 1, 2]
    assert results.profile_seeds(str(profile), "fusion") == [0, 1, 2]
    assert results.profile_seeds(str(profile), "area-cnn") == [7]
    (tmp_path / "none.yaml").write_text("train: {}\n")
    with pytest.raises(ValueError, match="results.seeds must be a non-empty list of integers, got None"):
        results.profile_seeds(str(tmp_path / "none.yaml"))
    # a misspelt study would silently train results.seeds
    (tmp_path / "typo.yaml").write_text("results:\n  seeds: [0]\n  by_study:\n    ks-tranformer: [0, 1]\n")
    with pytest.raises(ValueError, match=r"typo.yaml'?: results.by_study has ks-tranformer, which is no study; "
                                         r"studies: fusion, ks-transformer"):
        results.profile_seeds(str(tmp_path / "typo.yaml"), "ks-transformer")
