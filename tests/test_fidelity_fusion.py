"""Issue 10, fusion study: the code-faithful defaults of the main paper's model (AttentionAlternatives) and
the alternatives kept beside them. The classifier is the authors' ClassifierLayer; SSL layers are weighed
with raw weights (init 1/N, no softmax) over the transformer-layer outputs only, with the softmax form over
every cached state as the named alternative; the `paper` profile refuses to swap the text encoder, and
every run records which text encoder it used."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sercore import fidelity
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from test_train_hostile import FAST, write_corpus  # noqa: E402

from sercore import attention  # noqa: E402
from sercore.fidelity import FUSION  # noqa: E402
from sercore.models import build_model, model_options  # noqa: E402
from sercore.models.pooling import LayerWeightedSum  # noqa: E402
from sercore.profiles import section  # noqa: E402
from sercore.train.run import DEFAULT_TEXT_ENCODER, data_options, text_encoder_name  # noqa: E402

STATES, T, F = 5, 7, 6  # a cache of 5 hidden states = the CNN-side input + 4 transformer layers


def hidden(seed=0, batch=2):
    return torch.randn(batch, STATES, T, F, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- item 1: the classifier head

def test_fusion_classifier_is_the_authors_classifier_layer():
    classifier = build_model("fusion").classifier.layers  # the paper's sizes: 1024 in, 8 classes
    block = [nn.Linear, nn.LayerNorm, nn.GELU, nn.Dropout]
    assert [type(m) for m in classifier] == [nn.Dropout] + block * 5 + [nn.Linear]
    linears = [(m.in_features, m.out_features) for m in classifier if isinstance(m, nn.Linear)]
    assert linears == [(1024, 512)] + [(512, 512)] * 4 + [(512, 8)]
    assert {m.p for m in classifier if isinstance(m, nn.Dropout)} == {0.1}


def test_the_misread_classifier_layout_is_gone():
    assert "head" not in model_options("fusion")
    with pytest.raises(TypeError, match="unknown option"):
        build_model("fusion", head="notes")


# ---------------------------------------------------------------- item 5: SSL layer weighting

def test_raw_weights_start_at_one_over_n_and_give_the_mean_of_the_transformer_layers():
    weighted = LayerWeightedSum(STATES)  # the defaults: raw, transformer
    assert weighted.weights.tolist() == pytest.approx([1 / (STATES - 1)] * (STATES - 1))
    h = hidden()
    torch.testing.assert_close(weighted(h), h[:, 1:].mean(dim=1))


def test_raw_weights_are_not_normalised():
    weighted = LayerWeightedSum(STATES)
    h = hidden()
    before = weighted(h)
    with torch.no_grad():
        weighted.weights.mul_(3.0)  # a softmax would map these to the same mixture; raw weights scale the sum
    torch.testing.assert_close(weighted(h), 3.0 * before)


def test_softmax_over_all_states_differs_from_the_code_form():
    h = hidden(seed=1)
    raw = LayerWeightedSum(STATES, "raw", "transformer")
    soft = LayerWeightedSum(STATES, "softmax", "all")
    assert soft.weights.shape == (STATES,) and raw.weights.shape == (STATES - 1,)
    torch.testing.assert_close(soft(h), h.mean(dim=1))  # equal logits: the mean of all five states
    assert not torch.allclose(raw(h), soft(h))
    # same trained values, two forms: raw sums w_l h_l, softmax sums softmax(w)_l h_l
    w = torch.tensor([2.0, -1.0, 0.5, 0.0])
    soft_transformer = LayerWeightedSum(STATES, "softmax", "transformer")
    with torch.no_grad():
        raw.weights.copy_(w)
        soft_transformer.weights.copy_(w)
    torch.testing.assert_close(raw(h), torch.einsum("l,bltf->btf", w, h[:, 1:]))
    torch.testing.assert_close(soft_transformer(h), torch.einsum("l,bltf->btf", w.softmax(0), h[:, 1:]))
    assert not torch.allclose(raw(h), soft_transformer(h))


def test_weighting_options_are_checked():
    with pytest.raises(ValueError, match="layer weighting must be one of"):
        LayerWeightedSum(STATES, "sigmoid")
    with pytest.raises(ValueError, match="weighted layers must be one of"):
        LayerWeightedSum(STATES, "raw", "cnn")
    with pytest.raises(ValueError, match="needs at least 2 SSL hidden states"):
        LayerWeightedSum(1)


def fusion_on_ssl(**options):
    torch.manual_seed(0)
    return build_model("fusion", speech="ssl", speech_dim=F, ssl_layers=STATES, text=False, width=8, heads=2,
                       head_width=8, head_blocks=1, **options).eval()


def ssl_batch(h):
    return {"speech": h, "speech_mask": torch.ones(h.shape[0], T, dtype=torch.bool)}


def test_fusion_default_ignores_the_cnn_state_and_all_uses_it():
    h = hidden(seed=2)
    changed = h.clone()
    # only state 0 (the input of the first transformer layer); not a constant, which LayerNorm would undo
    changed[:, 0] += torch.randn(changed[:, 0].shape, generator=torch.Generator().manual_seed(9))
    default = fusion_on_ssl()
    assert model_options("fusion")["layer_weighting"] == "raw" and model_options("fusion")["layers"] == "transformer"
    with torch.no_grad():
        torch.testing.assert_close(default(ssl_batch(h))["logits"], default(ssl_batch(changed))["logits"])
        every = fusion_on_ssl(layer_weighting="softmax", layers="all")
        assert not torch.allclose(every(ssl_batch(h))["logits"], every(ssl_batch(changed))["logits"])


def test_dimensional_weighted_uses_the_same_switch():
    h = hidden(seed=3)
    changed = h.clone()
    changed[:, 0] += torch.randn(changed[:, 0].shape, generator=torch.Generator().manual_seed(9))

    def dimensional(**options):
        torch.manual_seed(0)
        return build_model("dimensional", speech="ssl", speech_dim=F, layers="weighted", ssl_layers=STATES,
                           **options).eval()

    with torch.no_grad():
        code_form = dimensional()
        assert code_form.layer_weights.weighting == "raw" and code_form.layer_weights.first == 1
        torch.testing.assert_close(code_form(ssl_batch(h))["avd"], code_form(ssl_batch(changed))["avd"])
        softmax_all = dimensional(layer_weighting="softmax", weighted_layers="all")
        assert not torch.allclose(softmax_all(ssl_batch(h))["avd"], softmax_all(ssl_batch(changed))["avd"])


def test_ssl_layers_from_the_cache_count_every_state_and_the_model_selects():
    # run.data_options reads ssl_layers off the cached array [S, T, F]: S = 25 for a Large model
    data = SimpleNamespace(speech=[np.zeros((25, T, F), dtype=np.float16)], classes=list("NHASCUDF"), text=None)
    sizes = data_options("fusion", data, None)
    assert sizes["ssl_layers"] == 25 and sizes["speech_dim"] == F
    model = build_model("fusion", **sizes, text=False, width=8, heads=2, head_width=8, head_blocks=1)
    assert model.layer_weights.weights.shape == (24,)  # the 24 transformer layers, as the public code
    assert model.layer_weights.weights.tolist() == pytest.approx([1 / 24] * 24)


def test_paper_profile_spells_out_the_code_forms():
    fusion = section("paper", "model")["fusion"]
    assert (fusion["layer_weighting"], fusion["layers"], fusion["ssl_layers"]) == ("raw", "transformer", 25)
    assert "head" not in fusion


def test_stable_layer_norm_last_state_is_before_the_final_layer_norm(tmp_path):
    """State L of a "stable layer norm" model (the Large ones) is the last layer's own output, as torchaudio's
    extract_features gives it, under transformers 4 and 5 alike; last_hidden_state is that state after the
    encoder's final LayerNorm."""
    import transformers

    from sercore.features.ssl import SSLEncoder

    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, conv_dim=(8,) * 7, num_conv_pos_embeddings=8,
                                         num_conv_pos_embedding_groups=2, vocab_size=8,
                                         do_stable_layer_norm=True, feat_extract_norm="layer")
    model = transformers.Wav2Vec2Model(config).eval()
    model.save_pretrained(tmp_path)
    wave = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    encoder = SSLEncoder(tmp_path, dtype="float32", device="cpu")
    states = torch.from_numpy(encoder(wave))
    normalised = torch.from_numpy((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7))[None]
    with torch.no_grad():
        last = model(normalised).last_hidden_state[0]
        assert states.shape[0] == 3 and not torch.allclose(states[-1], last, atol=1e-3)
        torch.testing.assert_close(model.encoder.layer_norm(states[-1]), last, rtol=1e-4, atol=1e-4)

    # transformers 4's convention, put on this model: the last hidden state after the final LayerNorm
    loaded = encoder.model
    plain_forward = loaded.forward

    def forward_as_transformers_4(*args, **kwargs):
        out = plain_forward(*args, **kwargs)
        out.hidden_states = tuple(out.hidden_states[:-1]) + (out.last_hidden_state,)
        return out

    loaded.forward = forward_as_transformers_4
    torch.testing.assert_close(torch.from_numpy(encoder(wave)), states)  # the cache does not change

    # last_state="normed": state L is last_hidden_state, what a released head reading it sees
    normed = torch.from_numpy(SSLEncoder(tmp_path, dtype="float32", device="cpu", last_state="normed")(wave))
    torch.testing.assert_close(normed[:-1], states[:-1])
    torch.testing.assert_close(normed[-1], last, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="unknown last_state 'final'"):
        SSLEncoder(tmp_path, last_state="final")


# ---------------------------------------------------------------- item 6: the text encoder

@pytest.mark.parametrize("study, wanted", [("fusion", "bert-large-uncased"), ("ks-transformer", "roberta-large")])
def test_paper_profile_requires_the_published_text_encoder(study, wanted):
    features = section("paper", "features")
    with pytest.raises(ValueError) as error:
        text_encoder_name(study, features)
    message = str(error.value)
    assert "\n" not in message and wanted in message and "features.text_model_dir" in message
    named = text_encoder_name(study, {**features, "text_model_dir": f"/models/{wanted}"})
    assert named == f"{wanted} (/models/{wanted})"


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_cpu_profiles_keep_minilm_and_say_so(profile):
    features = section(profile, "features")
    assert features["require_text_model"] is False
    assert text_encoder_name("fusion", features) == DEFAULT_TEXT_ENCODER


def test_paper_run_without_a_text_model_fails_before_any_feature(tmp_path):
    from sercore.train import train_run

    corpus = write_corpus(tmp_path / "corpus")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="reads bert-large-uncased token states under this profile"):
        train_run("fusion", corpus, tmp_path / "run", profile="paper", seed=0,
                  **{**FAST, "model.text": True, "model.speech": "logmel", "model.speech_dim": 80,
                     "cache_dir": str(cache)})
    assert not cache.exists() or not any(path.is_file() for path in cache.rglob("*"))  # nothing extracted


def test_every_metrics_json_records_the_text_encoder(tmp_path):
    from sercore.train import train_run

    corpus = write_corpus(tmp_path / "corpus")
    common = {**FAST, "cache_dir": str(tmp_path / "cache")}
    speech_only = train_run("fusion", corpus, tmp_path / "speech", profile="smoke", seed=0, **common)
    assert speech_only["data"]["text_encoder"] is None and speech_only["data"]["text_features"] is False
    with_text = train_run("fusion", corpus, tmp_path / "text", profile="smoke", seed=0,
                          **{**common, "model.text": True})
    assert with_text["data"]["text_encoder"] == DEFAULT_TEXT_ENCODER
    written = json.loads((tmp_path / "text" / "metrics.json").read_text())
    assert written["data"]["text_encoder"] == DEFAULT_TEXT_ENCODER


# ---------------------------------------------------------------- the registry and the confound

def test_fusion_registry_defaults_are_where_they_say():
    settings = {d.setting for d in FUSION}
    assert {"model.fusion.head_blocks", "model.fusion.layer_weighting", "model.fusion.layers",
            "features.require_text_model", "model.fusion.mechanism_options",
            "train.by_study.fusion.batch_size"} <= settings
    for entry in FUSION:  # the registry's own checker: library default and what each profile runs
        assert fidelity.check(entry) == [], entry.setting


def test_direction_defaults_are_the_codes_confound():
    """mechanism_options=None keeps the code's directions: softmax bidirectional, the fla-style five causal."""
    assert attention.build("softmax", 8, 2).causal is False
    for name in ("retnet", "gsa", "fox", "kda", "lightnet"):
        assert attention.build(name, 64, 2).bidirectional is False, name
    assert model_options("fusion")["mechanism_options"] is None
