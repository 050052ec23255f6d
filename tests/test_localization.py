"""sercore.localization: attention over time of a model, the localization score, and the localized corpus
that it is scored against (every phrase inside the key-sparse model's fixed 4.6 s input)."""

import hashlib

import numpy as np
import pytest
import torch

from sercore.data import generate_corpus, load_segments
from sercore.localization import attention_over_time, default_attention, default_reads, localization_score
from sercore.models import build_model

FPS = 100.0


def _fusion(mechanism="softmax", **options):
    torch.manual_seed(0)
    return build_model("fusion", speech="logmel", speech_dim=8, text=False, mechanism=mechanism, width=16,
                       heads=2, head_blocks=1, **options).eval()


def _batch(lengths, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    speech = torch.zeros(len(lengths), t, dim)
    mask = torch.zeros(len(lengths), t, dtype=torch.bool)
    for i, n in enumerate(lengths):
        speech[i, :n] = torch.randn(n, dim, generator=g)
        mask[i, :n] = True
    return {"speech": speech, "speech_mask": mask}


def test_uniform_weights_score_exactly_one():
    assert localization_score(np.ones(440), FPS, (1.2, 2.9), 4.4) == 1.0
    # frames after the duration (padding) are not part of the utterance
    assert localization_score(np.r_[np.ones(440), np.full(20, 7.0)], FPS, (1.2, 2.9), 4.4) == 1.0


def test_weights_on_the_segment_score_above_one_and_off_it_below():
    w = np.zeros(400)
    w[150:250] = 1.0  # the segment 1.5-2.5 s: a quarter of the frames, all the mass
    assert localization_score(w, FPS, (1.5, 2.5), 4.0) == pytest.approx(4.0)
    assert localization_score(1.0 - w, FPS, (1.5, 2.5), 4.0) == 0.0


def test_a_segment_without_frames_or_weights_without_mass_is_refused():
    with pytest.raises(ValueError, match="no frame"):
        localization_score(np.ones(100), FPS, (2.0, 3.0), 1.0)
    with pytest.raises(ValueError, match="no mass"):
        localization_score(np.zeros(100), FPS, (0.2, 0.5), 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        localization_score(-np.ones(100), FPS, (0.2, 0.5), 1.0)


def test_pooling_forced_onto_the_segment_scores_above_one():
    model = _fusion()
    segment = (0.2, 0.4)  # frames 20..39 of 60

    def onto_segment(x, mask):
        scores = torch.full(mask.shape, -30.0)
        scores[:, 20:40] = 0.0
        return scores.masked_fill(~mask, float("-inf")).softmax(1)

    model.pooling.weights = onto_segment
    att = attention_over_time(model, _batch([60]), FPS)
    assert default_attention(model) == "pooling"
    assert default_reads(model) == ["pooling", "block0"]  # the pooling weights and what the mixer attends to
    assert set(default_reads(model)) <= set(att.names())
    score = localization_score(att.frames(0, "pooling"), FPS, segment, 0.6)
    assert score == pytest.approx(3.0, rel=1e-6)  # all the mass on a third of the frames
    # the trained-model path is the same path: an untouched model's pooling is read, not made up
    plain = attention_over_time(_fusion(), _batch([60]), FPS)
    assert plain.frames(0, "pooling").sum() == pytest.approx(1.0)
    assert localization_score(plain.frames(0, "pooling"), FPS, segment, 0.6) != pytest.approx(3.0)


@pytest.mark.parametrize("mechanism", ["softmax", "retnet", "gsa"])
def test_shapes_with_padding_and_padding_changes_nothing(mechanism):
    model = _fusion(mechanism)
    batch = _batch([50, 30])
    att = attention_over_time(model, batch, FPS)
    assert att.mask.shape == (2, 50) and att.mask[1].sum() == 30
    assert att.pooling.shape == (2, 50) and (att.pooling[1, 30:] == 0).all()
    assert att.pooling.sum(1) == pytest.approx([1.0, 1.0])  # speech only: the pooling weights sum to 1
    assert list(att.layers) == ["block0"] and att.layers["block0"].shape == (2, 2, 50)
    assert (att.layers["block0"][1, :, 30:] == 0).all()
    assert att.frames(1, "block0").shape == (30,)
    # the short sample, padded in the batch, gets the weights it gets alone
    alone = attention_over_time(model, {k: v[1:, :30] for k, v in batch.items()}, FPS)
    np.testing.assert_allclose(att.pooling[1, :30], alone.pooling[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(att.layers["block0"][1, :, :30], alone.layers["block0"][0], rtol=1e-4, atol=1e-5)


def test_a_signed_linear_matrix_is_read_as_magnitudes_so_every_default_read_scores():
    torch.manual_seed(0)
    model = _fusion("retnet")
    batch = _batch([60])
    signed = model.blocks[0].mixer.attention_matrix(torch.randn(1, 60, 16), batch["speech_mask"])
    assert (signed < 0).any()  # RetNet's q.k carries a sign: plain column sums are no share of mass
    att = attention_over_time(model, batch, FPS)
    assert (att.layers["block0"] >= 0).all()
    for name in default_reads(model):
        assert localization_score(att.frames(0, name), FPS, (0.2, 0.4), 0.6) > 0


def test_the_forward_pass_is_unchanged_by_the_hooks():
    model = _fusion()
    batch = _batch([40, 25])
    before = model(batch)["logits"]
    attention_over_time(model, batch, FPS)
    assert torch.equal(model(batch)["logits"], before)
    assert not model.pooling._forward_pre_hooks and not model.blocks[0].mixer._forward_pre_hooks


def _ks(keep_rate=0.3, max_frames=50):
    torch.manual_seed(0)
    return build_model("ks-transformer", speech="logmel", speech_dim=8, text_dim=6, audio_width=16, text_width=16,
                       audio_ffn=16, text_ffn=16, heads=2, encoder_layers=1, ccab_layers=1, final_layers=1,
                       keep_rate=keep_rate, n_classes=4, max_frames=max_frames, max_tokens=5).eval()


def _ks_batch(lengths, seed=0):
    batch = _batch(lengths, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    batch["text"] = torch.randn(len(lengths), 5, 6, generator=g)
    batch["text_mask"] = torch.ones(len(lengths), 5, dtype=torch.bool)
    return batch


def test_key_sparse_mask_rows_keep_k_keys_and_match_the_applied_weights():
    model = _ks(keep_rate=0.3)
    att = attention_over_time(model, _ks_batch([50, 50]), FPS)
    sparse = ["ccab0.self0", "ccab0.text_from_audio0", "final0"]
    assert sorted(att.kept) == sorted(sparse + ["encoder0"])
    for name in sparse:
        kept = att.kept[name]
        assert kept.shape == (2, 2, 50)
        assert (kept.sum(-1) == int(50 * 0.3)).all(), name  # k = int(L * keep_rate) per head and sample
        # a key that is not kept receives no attention at all
        assert (att.layers[name][~kept] == 0).all() and (att.layers[name][kept] > 0).all()
    assert att.kept["encoder0"].all()  # the vanilla encoder: keep_rate 1, every key
    assert default_attention(model) == "final0"
    assert default_reads(model) == ["final0", "kept:final0"]
    assert att.frames(0, "kept:final0").mean() == pytest.approx(0.3)


def test_key_sparse_input_is_the_fixed_first_frames():
    model = _ks(max_frames=50)
    att = attention_over_time(model, _ks_batch([70, 35]), FPS)
    assert att.mask.shape == (2, 50) and att.mask.sum(1).tolist() == [50, 35]
    assert att.layers["final0"].shape == (2, 2, 50)
    assert (att.kept["final0"][1, :, 35:] == 0).all()  # padding is never reported as a kept frame


def _digests(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "Audios").iterdir())}


def test_localized_utterances_fit_the_fixed_input_and_are_deterministic(tmp_path):
    a = generate_corpus(tmp_path / "a", variant="localized", n_utterances=12, workers=1, progress=False)
    b = generate_corpus(tmp_path / "b", variant="localized", n_utterances=12, workers=2, progress=False)
    assert _digests(a) == _digests(b)
    assert (a / "segments.csv").read_text() == (b / "segments.csv").read_text()
    segments = load_segments(a)
    assert (segments.seg_end <= 4.6).all() and (segments.duration < 4.6).all()
    assert segments.seg_start.nunique() == len(segments)  # positions drawn per utterance


def _keep_run(tmp_path, rate, seed, labels, preds):
    import pandas as pd

    out = tmp_path / f"keep {rate}-seed{seed}"
    out.mkdir()
    ids = [f"u{i:03d}" for i in range(len(labels))]
    pd.DataFrame({"utt_id": ids, "split": "Test1", "label": labels, "pred": preds}).to_csv(out / "predictions.csv",
                                                                                         index=False)
    return {"variant": f"keep {rate}", "out_dir": str(out),
            "provenance": {"seed": seed, "parameters": {"model": {"keep_rate": rate}}}}


def test_sweep_summary_orders_by_keep_rate_and_the_figures_draw(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from sercore import plots, results

    labels = list("ABCD" * 10)
    runs = [_keep_run(tmp_path, rate, s, labels, labels if rate == 1.0 else ["A"] * 40)
            for rate in (1.0, 0.3) for s in range(3)]
    table = results.sweep_summary(runs, "balanced_accuracy", n_boot=50)
    assert table["keep_rate"].tolist() == [0.3, 1.0]
    assert table["mean"].tolist() == [pytest.approx(0.25), 1.0]
    path = tmp_path / "curve.png"
    plots.sparsity_curves({"localized": table, "standard": table}, splits=["Test1"], chance=0.25, path=path)
    assert path.stat().st_size > 0
    scores = table.assign(attention="final0")
    plots.localization_beside_metric(table, scores, chance=0.25, path=tmp_path / "side.png")
    by_variant = table.assign(variant=["softmax", "retnet"])  # a categorical x: the fusion mechanisms
    fig = plots.localization_beside_metric(by_variant, by_variant.assign(attention="pooling"), x="variant",
                                           chance=0.25, path=tmp_path / "side_variants.png")
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["softmax", "retnet"]
    read = {"name": "final0", "weights": np.ones(120), "heads": np.ones((2, 120)), "score": 1.0}
    item = {"utt_id": "u", "label": "A", "predicted": "A", "spectrogram": np.zeros((120, 8), np.float32),
            "frame_rate": FPS, "segment": (0.3, 0.7), "duration": 1.2, "kept": np.ones((2, 120), bool),
            "reads": [{"name": "pooling", "weights": np.ones(120) / 120, "heads": None, "score": 1.0}, read]}
    fig = plots.attention_heatmaps([item, item], path=tmp_path / "heat.png")
    assert (tmp_path / "heat.png").stat().st_size > 0
    # spectrogram, one row per read (pooling, column sums), the kept-key mask: 4 rows x 2 utterances
    assert len(fig.axes) == 8 and fig.axes[4].get_ylabel() == "final0 column sum"
    assert len(fig.axes[4].lines) == 3  # one line per head and their mean


def test_sweep_summary_refuses_a_variant_whose_runs_differ(tmp_path):
    from sercore import results

    a = _keep_run(tmp_path, 0.3, 0, list("AB"), list("AB"))
    b = _keep_run(tmp_path, 0.5, 1, list("AB"), list("AB"))
    b["variant"] = a["variant"]
    with pytest.raises(ValueError, match="differ in keep_rate"):
        results.sweep_summary([a, b])


def test_findings_rank_only_with_three_seeds_and_separate_intervals():
    import pandas as pd

    from sercore.localization import findings

    def curve(n_seeds, low_sparse):
        return pd.DataFrame([
            {"keep_rate": 0.3, "split": "Test1", "mean": 0.40, "ci95_low": low_sparse, "ci95_high": 0.45,
             "n_seeds": n_seeds},
            {"keep_rate": 1.0, "split": "Test1", "mean": 0.30, "ci95_low": 0.26, "ci95_high": 0.33,
             "n_seeds": n_seeds}])

    separated = findings(curve(3, 0.35), chance=0.125)
    assert "keep_rate 0.3" in separated[0] and "lies above twice chance" in separated[1]
    assert "observation" not in separated[0]
    assert "keep_rate 0.3 is higher than keep_rate 1.0" in separated[2]
    few = findings(curve(2, 0.35), chance=0.125)
    assert "few-seed observation, not a ranking" in few[0]  # a highest mean on two seeds is no ranking
    assert "not distinguishable (fewer than 3 seeds)" in few[2]
    assert "single-seed observation" in findings(curve(1, 0.35))[0]
    dense_best = findings(curve(3, 0.32).assign(mean=[0.38, 0.40]))  # the dense setting highest: vs the next
    assert "highest against next: keep_rate 1.0" in dense_best[1] and "not distinguishable" in dense_best[1]
    tie = findings(curve(3, 0.35).assign(mean=0.4))[0]
    assert "keep_rate 0.3" in tie and "tied with keep_rate [1.0]" in tie
    assert "not distinguishable (the intervals overlap)" in findings(curve(3, 0.32), chance=0.125)[2]
    assert "does not lie above twice chance" in findings(curve(3, 0.24), chance=0.125)[1]
    scores = pd.DataFrame([{"attention": "final0", "keep_rate": 0.3, "mean": 1.25, "ci95_low": 1.1,
                            "ci95_high": 1.4, "n_seeds": 3},
                           {"attention": "final0", "keep_rate": 1.0, "mean": 0.98, "ci95_low": 0.9,
                            "ci95_high": 1.05, "n_seeds": 3}])
    lines = findings(curve(3, 0.35), scores)
    assert "above 1 (more attention" in lines[-2] and "at keep_rate [0.3]" in lines[-2]
    assert "including 1 at [1.0]" in lines[-2] and "3 seed(s)" in lines[-2]
    assert "Localization (final0): keep_rate 0.3 is higher than keep_rate 1.0" in lines[-1]
    one_seed = findings(curve(3, 0.35), scores.assign(n_seeds=1))[-1]
    assert "not distinguishable (fewer than 3 seeds)" in one_seed  # intervals apart, but one seed


def test_findings_compare_each_variant_with_the_reference_variant():
    import pandas as pd

    from sercore.localization import findings

    curve = pd.DataFrame([{"variant": v, "split": "Test1", "mean": m, "ci95_low": m - 0.02, "ci95_high": m + 0.02,
                           "n_seeds": 1} for v, m in (("softmax", 0.5), ("retnet", 0.6), ("lightnet", 0.4))])
    scores = curve.assign(attention="pooling", mean=[1.0, 1.5, 0.8], ci95_low=[0.9, 1.3, 0.7],
                          ci95_high=[1.1, 1.7, 0.9])
    lines = findings(curve, scores, x="variant", dense="softmax")
    assert lines[0].startswith("Highest Test1 mean: variant retnet") and "single-seed observation" in lines[0]
    assert "variant retnet" in lines[1] and "not distinguishable (fewer than 3 seeds)" in lines[1]
    assert "at variant ['retnet']; below 1 at ['lightnet']; including 1 at ['softmax']" in lines[2]
    assert [("retnet" in line, "lightnet" in line) for line in lines[3:]] == [(True, False), (False, True)]
