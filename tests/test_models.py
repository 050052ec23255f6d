"""sercore.models: forward/backward of every study's model on tiny shapes, padding invariance, output
orders, losses, the segment -> utterance decision, option validation and hand-computed parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sercore import attention
from sercore.losses import ccc, ccc_loss
from sercore.metrics import ccc as numpy_ccc
from sercore.models import STUDIES, build_model, model_options, utterance_scores
from sercore.models.dimensional import AVD_FROM_HEAD
from sercore.models.fusion import concat_along_time
from sercore.profiles import PROFILES, section

SEQUENCE_MIXERS = [name for name in attention.NAMES if name != "area"]
F_SPEECH, F_TEXT, L_SSL = 12, 10, 3


def mechanism_or_skip(name: str) -> None:
    """Skip only when the mechanism's module has not been written yet."""
    try:
        attention.mechanism_class(name)
    except ModuleNotFoundError as error:
        if error.name and error.name.startswith("sercore.attention"):
            pytest.skip(f"sercore.attention mechanism {name!r}: module {error.name} does not exist yet")
        raise


def lengths_mask(lengths, total) -> torch.Tensor:
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]


def make_batch(seed=0, speech_lengths=(20, 14, 9), text_lengths=(7, 3, 5), ssl=False, text=True):
    g = torch.Generator().manual_seed(seed)
    b, t, n = len(speech_lengths), max(speech_lengths), max(text_lengths)
    speech = torch.randn(b, L_SSL, t, F_SPEECH, generator=g) if ssl else torch.randn(b, t, F_SPEECH, generator=g)
    batch = {"speech": speech, "speech_mask": lengths_mask(speech_lengths, t),
             "label": torch.arange(b) % 4, "gender": torch.tensor([0, -1, 1, 1, 0][:b]),
             "avd": torch.rand(b, 3, generator=g)}
    if text:
        batch["text"] = torch.randn(b, n, F_TEXT, generator=g)
        batch["text_mask"] = lengths_mask(text_lengths, n)
    return batch


def sample(batch: dict, i: int) -> dict:
    """Sample i alone, cut to its real length (no padding at all)."""
    out = {}
    for key, value in batch.items():
        if key.endswith("_mask") or value.dim() == 0:
            continue
        one = value[i:i + 1]
        mask = batch.get(f"{key}_mask")
        if mask is not None:
            real = int(mask[i].sum())
            one = one[..., :real, :]
            out[f"{key}_mask"] = torch.ones(1, real, dtype=torch.bool)
        out[key] = one
    return out


TINY = {
    "fusion": dict(speech="logmel", speech_dim=F_SPEECH, text_dim=F_TEXT, width=32, heads=2, head_width=16),
    "ks-transformer": dict(speech="logmel", speech_dim=F_SPEECH, text_dim=F_TEXT, audio_width=16, text_width=8,
                           audio_ffn=8, text_ffn=8, heads=2, encoder_layers=1, ccab_layers=1, final_layers=1),
    "area-cnn": dict(n_mels=16, frames=12, area_options={"max_height": 2, "max_width": 2}),
    "multitask": dict(speech_dim=F_SPEECH, channels=(4, 6), lstm_hidden=8, attention_dim=8),
    "dimensional": dict(speech="ssl", speech_dim=F_SPEECH, layers="weighted", ssl_layers=L_SSL),
}


def tiny_batch(study: str) -> dict:
    if study == "area-cnn":
        g = torch.Generator().manual_seed(1)
        return {"speech": torch.randn(4, 1, 16, 12, generator=g), "label": torch.tensor([0, 1, 2, 3]),
                "utt_index": torch.tensor([0, 0, 1, 2])}
    return make_batch(ssl=study == "dimensional")


def assert_all_params_get_finite_grads(model: torch.nn.Module) -> None:
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------- building

def test_every_study_is_registered():
    assert set(STUDIES) == {"fusion", "ks-transformer", "area-cnn", "multitask", "dimensional"}


def test_unknown_study_and_option_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid studies: fusion, ks-transformer"):
        build_model("transformer")
    with pytest.raises(TypeError, match=r"unknown option\(s\) widht; valid options: .*width"):
        build_model("fusion", widht=32)


def test_invalid_choices_fail_with_the_valid_ones():
    with pytest.raises(ValueError, match="sequence mixer"):
        build_model("fusion", mechanism="area")
    with pytest.raises(ValueError, match="norm must be one of"):
        build_model("fusion", **TINY["fusion"], norm="middle")
    with pytest.raises(ValueError, match="pooling must be one of"):
        build_model("dimensional", pooling="median")
    with pytest.raises(ValueError, match="needs ssl_layers"):
        build_model("dimensional", layers="weighted")
    with pytest.raises(ValueError, match="may not set keep_rate"):
        build_model("ks-transformer", **TINY["ks-transformer"], ks_options={"keep_rate": 0.3})


@pytest.mark.parametrize("study", list(STUDIES))
def test_inputs_attribute_follows_the_contract(study):
    model = build_model(study, **TINY[study])
    assert model.inputs["speech"] in {"logmel", "ssl", "logmel128-segments"}
    assert isinstance(model.inputs["text"], bool)


def test_feature_size_mismatch_names_the_option():
    model = build_model("fusion", **TINY["fusion"])
    batch = make_batch()
    batch["speech"] = torch.randn(3, 20, F_SPEECH + 1)
    with pytest.raises(ValueError, match="speech_dim=12"):
        model(batch)


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_build_every_study(profile):
    options = section(profile, "model")
    assert set(options) == set(STUDIES), f"profile {profile}: model section should cover every study"
    if profile == "paper":  # published widths: check the options are valid without building 85M parameters
        for study, study_options in options.items():
            assert not set(study_options) - set(model_options(study)), study
        return
    for study, study_options in options.items():
        build_model(study, **study_options)


# ---------------------------------------------------------------- forward / backward

@pytest.mark.parametrize("study", list(STUDIES))
def test_forward_backward_tiny(study):
    torch.manual_seed(0)
    model = build_model(study, **TINY[study])
    batch = tiny_batch(study)
    outputs = model(batch)
    n = batch["speech"].shape[0]
    expected = {"fusion": {"logits": (n, 8)}, "ks-transformer": {"logits": (n, 4)},
                "area-cnn": {"logits": (n, 4)}, "multitask": {"logits": (n, 4), "gender_logits": (n, 2)},
                "dimensional": {"avd": (n, 3), "adv": (n, 3)}}[study]
    assert {k: tuple(v.shape) for k, v in outputs.items()} == expected
    loss = model.loss(batch, outputs)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert_all_params_get_finite_grads(model)


def test_fusion_ssl_layer_weights_are_the_trainable_encoder_part():
    model = build_model("fusion", **{**TINY["fusion"], "speech": "ssl", "ssl_layers": L_SSL})
    assert model.inputs == {"speech": "ssl", "text": True}
    batch = make_batch(ssl=True)
    batch["speech"].requires_grad_(True)  # stands in for the frozen encoder's output
    model.loss(batch, model(batch)).backward()
    assert model.layer_weights.weights.grad is not None and model.layer_weights.weights.grad.abs().sum() > 0
    assert_all_params_get_finite_grads(model)


def test_class_weights_change_the_loss():
    model = build_model("fusion", **TINY["fusion"]).eval()
    batch = make_batch()
    outputs = model(batch)
    plain = model.loss(batch, outputs)
    weights = torch.tensor([5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    manual = torch.nn.functional.cross_entropy(outputs["logits"], batch["label"], weight=weights)
    assert torch.allclose(model.loss(batch, outputs, class_weights=weights), manual)
    assert not torch.allclose(plain, manual)


# ---------------------------------------------------------------- fusion

def test_concat_along_time_packs_real_rows_then_pads():
    a = torch.tensor([[[1.0], [2.0], [0.0]], [[3.0], [0.0], [0.0]]])
    b = torch.tensor([[[10.0], [0.0]], [[20.0], [30.0]]])
    x, mask = concat_along_time(a, lengths_mask([2, 1], 3), b, lengths_mask([1, 2], 2))
    assert x.squeeze(-1).tolist() == [[1.0, 2.0, 10.0], [3.0, 20.0, 30.0]]
    assert mask.all()
    x, mask = concat_along_time(a, lengths_mask([2, 1], 3), b, lengths_mask([1, 1], 2))
    assert x.squeeze(-1).tolist() == [[1.0, 2.0, 10.0], [3.0, 20.0, 0.0]]
    assert mask.tolist() == [[True, True, True], [True, True, False]]


# Each mixer as the paper ran it, plus the direction flipped: bidirectional versions of the causal linear
# mechanisms (the confound the notes point out) and causal softmax attention.
VARIANTS = [(name, "") for name in SEQUENCE_MIXERS] + [
    (name, "bidirectional") for name in ("retnet", "lightnet", "gsa", "fox", "kda")] + [("softmax", "causal")]


def fusion_for(name: str, flag: str = "") -> torch.nn.Module:
    mechanism_or_skip(name)
    # keysparse is padding-invariant only with k from the real length and padded queries not voting.
    options = {"k_from": "real", "padded_queries_vote": False} if name == "keysparse" else {}
    if flag:
        options[flag] = True
    torch.manual_seed(0)
    return build_model("fusion", **TINY["fusion"], mechanism=name, mechanism_options=options)


@pytest.mark.parametrize("name, flag", VARIANTS)
def test_fusion_with_every_mechanism(name, flag):
    model = fusion_for(name, flag)
    batch = make_batch()
    model.loss(batch, model(batch)).backward()
    assert_all_params_get_finite_grads(model)


@pytest.mark.parametrize("name, flag", VARIANTS)
def test_fusion_padding_does_not_change_a_real_sample(name, flag):
    model = fusion_for(name, flag).eval()
    batch = make_batch()
    with torch.no_grad():
        together = model(batch)["logits"]
        for i in range(3):
            alone = model(sample(batch, i))["logits"]
            torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-4, atol=1e-5)


def test_fusion_speech_only_when_the_batch_has_no_text():
    model = build_model("fusion", **TINY["fusion"]).eval()
    with_text = make_batch()
    speech_only = {k: v for k, v in with_text.items() if not k.startswith("text")}
    with torch.no_grad():
        a, b = model(with_text)["logits"], model(speech_only)["logits"]
    assert b.shape == a.shape and torch.isfinite(b).all()
    assert not torch.allclose(a, b)  # the text tokens do take part when present


def test_fusion_ablation_options_build_and_run():
    model = build_model("fusion", **TINY["fusion"], num_layers=2, ffn=True, residual=True, norm="pre",
                        mechanism_options={"causal": True})
    assert len(model.blocks) == 2 and model.blocks[0].ffn is not None and model.blocks[0].mixer.causal
    batch = make_batch()
    model.loss(batch, model(batch)).backward()
    assert_all_params_get_finite_grads(model)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_paper_size_fusion_parameter_counts_by_hand():
    model = build_model("fusion")  # paper defaults: SSL 25 x 1024, text 1024, width 1024, 4 heads, 8 classes
    w, hidden, classes = 1024, 512, 8
    linear = lambda i, o: i * o + o  # noqa: E731
    layer_norm = 2 * hidden
    # The authors' ClassifierLayer: a Linear in the input block and in each of the 4 hidden blocks.
    code_head = linear(w, hidden) + layer_norm + 4 * (linear(hidden, hidden) + layer_norm) + linear(hidden, classes)
    assert count(model.classifier) == code_head == 1_584_648
    softmax_mixer = 3 * w * w + linear(w, w)  # bias-free q, k, v; output projection with bias
    encoders = 24 + 2 * (2 * w)  # weights of the 24 transformer layers; speech and text LayerNorms (no projections)
    assert count(model) == encoders + softmax_mixer + w + code_head == 5_785_120


# ---------------------------------------------------------------- KS-Transformer

def test_ks_transformer_passes_keep_rate_to_every_ks_layer():
    model = build_model("ks-transformer", **TINY["ks-transformer"], keep_rate=0.7)
    encoders = {id(m) for m in [*model.audio_encoder.modules(), *model.text_encoder.modules()]}
    ks = [m for m in model.modules() if isinstance(m, attention.mechanism_class("keysparse")) and id(m) not in encoders]
    assert len(ks) == 2 * (2 * 1 + 1)  # per modality: (cross + self) per CCAB, plus the final layer
    assert {m.keep_rate for m in ks} == {0.7}
    # the vanilla encoders (encoder_attention="code") are KS layers that keep every key
    assert {m.keep_rate for m in model.audio_encoder.modules() if hasattr(m, "keep_rate")} == {1.0}
    cross = model.audio_from_text[0].cross.layers[0].mixer
    assert (cross.dim, cross.context_dim) == (16, 8)


def test_ks_transformer_padding_invariant_when_keys_count_from_real_length():
    torch.manual_seed(0)
    # without the fixed-length input (max_frames=None), under padding="masked"
    model = build_model("ks-transformer", **TINY["ks-transformer"], padding="masked", max_frames=None,
                        max_tokens=None, ks_options={"k_from": "real", "padded_queries_vote": False}).eval()
    batch = make_batch()
    with torch.no_grad():
        together = model(batch)["logits"]
        for i in range(3):
            torch.testing.assert_close(together[i:i + 1], model(sample(batch, i))["logits"], rtol=1e-4, atol=1e-5)


def test_ks_transformer_code_variants_run_and_differ():
    torch.manual_seed(0)
    masked = build_model("ks-transformer", **TINY["ks-transformer"], padding="masked").eval()
    code = build_model("ks-transformer", **TINY["ks-transformer"], padding="code", residual_twice=False).eval()
    code.load_state_dict(masked.state_dict())
    batch = make_batch()
    with torch.no_grad():
        assert not torch.allclose(masked(batch)["logits"], code(batch)["logits"])


# ---------------------------------------------------------------- area CNN

def test_area_cnn_paper_shapes_and_classifier_size():
    model = build_model("area-cnn", area_options={"dropout": 0.0}).eval()
    assert model.map_shape == (80, 64, 20)  # 128 mels doubled by the branch concat, two 2x2 pools; 81 -> 20
    assert count(model.classifier) == 80 * 64 * 20 * 4 + 4
    x = torch.randn(2, 1, 128, 81)
    with torch.no_grad():
        four_d = model({"speech": x})["logits"]
        three_d = model({"speech": x[:, 0].transpose(1, 2)})["logits"]  # [B, frames, mels]
    assert four_d.shape == (2, 4)
    torch.testing.assert_close(four_d, three_d)


def test_area_cnn_rejects_wrong_segment_shape():
    with pytest.raises(ValueError, match=r"\[B, 1, 128, 81\]"):
        build_model("area-cnn")({"speech": torch.randn(2, 1, 128, 80)})


def test_segment_scores_average_into_utterances():
    probs = torch.tensor([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8], [0.1, 0.9], [0.6, 0.4]])
    utt = torch.tensor([4, 1, 4, 1, 4])
    ids, scores = utterance_scores(probs, utt)
    assert ids.tolist() == [1, 4]
    expected = torch.tensor([[(0.5 + 0.1) / 2, (0.5 + 0.9) / 2],
                             [(0.7 + 0.2 + 0.6) / 3, (0.3 + 0.8 + 0.4) / 3]])
    torch.testing.assert_close(scores, expected)
    ids2, scores2 = build_model("area-cnn", **TINY["area-cnn"]).utterance_scores(probs, utt)
    assert torch.equal(ids2, ids) and torch.equal(scores2, scores)


# ---------------------------------------------------------------- multitask

def test_multitask_padding_does_not_change_a_real_sample():
    torch.manual_seed(0)
    model = build_model("multitask", **TINY["multitask"]).eval()
    batch = make_batch(speech_lengths=(20, 13, 9), text=False)
    with torch.no_grad():
        together = model(batch)
        for i in range(3):
            alone = model(sample(batch, i))
            for key in ("logits", "gender_logits"):
                torch.testing.assert_close(together[key][i:i + 1], alone[key], rtol=1e-4, atol=1e-5)


def test_multitask_loss_ignores_unknown_gender():
    torch.manual_seed(0)
    model = build_model("multitask", **TINY["multitask"], gender_weight=0.3).eval()
    batch = make_batch(text=False)  # gender [0, -1, 1]
    outputs = model(batch)
    ce = torch.nn.functional.cross_entropy
    expected = ce(outputs["logits"], batch["label"]) + 0.3 * ce(outputs["gender_logits"][[0, 2]],
                                                                 torch.tensor([0, 1]))
    torch.testing.assert_close(model.loss(batch, outputs), expected)
    changed = dict(outputs, gender_logits=outputs["gender_logits"].clone())
    changed["gender_logits"][1] = torch.tensor([9.0, -9.0])
    torch.testing.assert_close(model.loss(batch, changed), expected)
    unknown = dict(batch, gender=torch.full((3,), -1))
    loss = model.loss(unknown, outputs)
    torch.testing.assert_close(loss, ce(outputs["logits"], batch["label"]))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------- dimensional

def test_dimensional_output_order_maps_head_rows_to_batch_order():
    assert AVD_FROM_HEAD == (0, 2, 1)
    model = build_model("dimensional", speech_dim=F_SPEECH).eval()
    last = model.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))  # released order: arousal, dominance, valence
    out = model(make_batch(ssl=True, text=False))
    torch.testing.assert_close(out["adv"][0], torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(out["avd"][0], torch.tensor([0.1, 0.3, 0.2]))  # arousal, valence, dominance


def test_dimensional_loss_compares_avd_in_batch_order():
    model = build_model("dimensional", speech_dim=F_SPEECH).eval()
    batch = make_batch(ssl=True, text=False)
    outputs = model(batch)
    batch["avd"] = outputs["avd"].detach().clone()
    assert model.loss(batch, outputs).item() < 1e-5
    batch["avd"] = outputs["adv"].detach().clone()  # the released order is NOT what the batch holds
    assert model.loss(batch, outputs).item() > 1e-3


@pytest.mark.parametrize("speech", ["ssl", "logmel"])
def test_dimensional_masked_mean_ignores_padding(speech):
    model = build_model("dimensional", speech=speech, speech_dim=F_SPEECH).eval()
    batch = make_batch(ssl=speech == "ssl", text=False)
    with torch.no_grad():
        together = model(batch)["avd"]
        for i in range(3):
            torch.testing.assert_close(together[i:i + 1], model(sample(batch, i))["avd"])
        unmasked = build_model("dimensional", speech=speech, speech_dim=F_SPEECH, pooling="unmasked-mean").eval()
        unmasked.load_state_dict(model.state_dict())
        # the public head's unmasked mean sees the padding: same for the full-length sample, not for the others
        torch.testing.assert_close(unmasked(batch)["avd"][0], together[0])
        assert not torch.allclose(unmasked(batch)["avd"][1], together[1])


# ---------------------------------------------------------------- losses

def test_torch_ccc_matches_the_numpy_metric():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(50, 3, generator=g, dtype=torch.float64)
    target = 0.5 * pred + 0.3 * torch.rand(50, 3, generator=g, dtype=torch.float64) + 0.1
    values = ccc(pred, target)
    for k in range(3):
        assert values[k].item() == pytest.approx(numpy_ccc(target[:, k].numpy(), pred[:, k].numpy()), rel=1e-6)
    assert float(ccc_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(ccc_loss(-target + 2 * target.mean(0), target)) > 1.5  # mirrored around the mean: CCC -1


def test_ccc_of_one_sample_is_finite():
    pred = torch.tensor([[0.2, 0.4, 0.6]], requires_grad=True)
    loss = ccc_loss(pred, torch.tensor([[0.3, 0.3, 0.3]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="NaN"):
        ccc(pred, torch.tensor([[0.3, np.nan, 0.3]]))
