"""Online SSL (sercore.train.online): the frozen model runs inside the training step on waveform crops.

Tiny randomly initialised wav2vec2 / WavLM models saved with save_pretrained in a temporary folder (nothing is
downloaded); a few noise utterances of 0.3-0.9 s."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from sercore.data import load_corpus
from sercore.features.ssl import SSLEncoder
from sercore.train.datasets import EvalItems, Utterances
from sercore.train.online import (OnlineSSLModel, WaveCropItems, WaveEvalItems, Waveforms, crop_wave,
                                  resolve_mode)

SR = 16000
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16, 16), conv_kernel=(10, 8, 4), conv_stride=(5, 8, 8),
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
# layer: the feature extractor of WavLM-Large / wav2vec2-large (takes an attention mask);
# group: wav2vec2-base's group norm over time (no attention mask: padded batches go one at a time)
KINDS = {"w2v2-layer": ("Wav2Vec2", {"feat_extract_norm": "layer", "do_stable_layer_norm": True}),
         "w2v2-group": ("Wav2Vec2", {"feat_extract_norm": "group"}),
         "wavlm-layer": ("WavLM", {"feat_extract_norm": "layer", "do_stable_layer_norm": True, "num_buckets": 16,
                                   "max_bucket_distance": 64})}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import transformers

    folders = {}
    for name, (family, extra) in KINDS.items():
        torch.manual_seed(0)
        config = getattr(transformers, f"{family}Config")(**TINY, **extra)
        folder = tmp_path_factory.mktemp(name)
        getattr(transformers, f"{family}Model")(config).eval().save_pretrained(folder)
        folders[name] = folder
    return folders


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def test_frame_mask_from_waveform_lengths_equals_the_models_own_output_length(models):
    encoder = SSLEncoder(models["w2v2-layer"], device="cpu", dtype="float32")
    assert encoder.frames_per_second == 50.0  # 16000 / (5 * 8 * 8)
    lengths = [165, 166, 484, 485, 1999, 4321, 16000]  # 165: the tiny CNN's receptive field
    for n in lengths:
        with torch.inference_mode():
            own = encoder.model(torch.zeros(1, n)).last_hidden_state.shape[1]
        assert int(encoder.frames(n)) == own == int(encoder.model._get_feat_extract_output_lengths(n)), n
    assert int(encoder.frames(164)) == 0  # shorter than the receptive field: no frame
    waves = [noise(n / SR, i) for i, n in enumerate(lengths)]
    padded = torch.zeros(len(waves), max(lengths))
    for i, w in enumerate(waves):
        padded[i, :w.size] = torch.from_numpy(w)
    states, mask = encoder.states(padded, torch.tensor(lengths))
    assert mask.sum(1).tolist() == [int(encoder.frames(n)) for n in lengths]
    assert states.shape[:3] == (len(lengths), 3, int(encoder.frames(max(lengths))))
    assert not states[~mask[:, None, :].expand(-1, 3, -1)].any()  # padded frames are zero, as a padded cached batch


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_padded_batch_gives_each_utterance_the_states_it_has_alone(models, kind):
    encoder = SSLEncoder(models[kind], device="cpu", dtype="float32")
    raw = [noise(s, i) for i, s in enumerate((0.9, 0.31, 0.57))]
    padded = torch.zeros(3, raw[0].size)
    for i, w in enumerate(raw):
        padded[i, :w.size] = torch.from_numpy(encoder.normalise(w))
    states, mask = encoder.states(padded, torch.tensor([w.size for w in raw]))
    for i, w in enumerate(raw):
        alone = encoder(w)  # the cached path: one utterance, normalised inside
        frames = int(mask[i].sum())
        assert alone.shape[1] == frames
        np.testing.assert_allclose(states[i, :, :frames].numpy(), alone, atol=2e-4, rtol=1e-3)


def test_mode_defaults_to_online_on_cuda_and_cached_elsewhere():
    assert resolve_mode(None, torch.device("cpu")) == "cached"
    assert resolve_mode(None, torch.device("cuda", 0)) == "online"
    assert resolve_mode("online", torch.device("cpu")) == "online"
    with pytest.raises(ValueError, match=r"features.ssl.mode='fast': must be one of online, cached"):
        resolve_mode("fast", torch.device("cpu"))


def test_the_crop_is_the_papers_repeat_then_uniform_start_rule():
    wave = np.arange(10, dtype=np.float32)
    long_crops = {tuple(crop_wave(wave, 4, np.random.default_rng(s))) for s in range(200)}
    assert long_crops == {tuple(range(a, a + 4)) for a in range(7)}  # every start 0..6, none beyond
    short = {tuple(crop_wave(wave, 25, np.random.default_rng(s))) for s in range(200)}
    tiled = np.tile(wave, 3)  # ceil(25 / 10) = 3 repetitions, then a start in 0..5
    assert short == {tuple(tiled[a:a + 25]) for a in range(6)}


def write_corpus(root, n: int = 12):
    (root / "wav").mkdir(parents=True)
    rows = ["path,label,split"]
    for i in range(n):
        sf.write(root / "wav" / f"u{i}.wav", noise(0.3 + 0.05 * i, i), SR, subtype="PCM_16")
        rows.append(f"wav/u{i}.wav,{('ang', 'hap')[i % 2]},{('Train', 'Train', 'Development', 'Test1')[i % 4]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root / "manifest.csv"


def small_fusion(encoder):
    from sercore.models import build_model

    torch.manual_seed(0)
    return build_model("fusion", speech="ssl", speech_dim=encoder.hidden_size, ssl_layers=encoder.n_states(),
                       text=False, n_classes=2, width=16, heads=2, mechanism="softmax", num_layers=1, head_width=16)


def test_online_evaluation_equals_cached_features_evaluation(models, tmp_path):
    from sercore.train.trainer import predict

    manifest = write_corpus(tmp_path / "corpus", 6)
    table, _ = load_corpus(manifest)
    encoder = SSLEncoder(models["w2v2-layer"], device="cpu", dtype="float32")
    waves = Waveforms(table["path"], encoder)
    cached = [encoder(waves[i]) for i in range(len(table))]
    online_data = Utterances.from_table(table, waves, frames_per_second=encoder.frames_per_second)
    cached_data = Utterances.from_table(table, cached, frames_per_second=encoder.frames_per_second)
    model = small_fusion(encoder)
    rows = np.arange(len(table))
    online = predict(OnlineSSLModel(model, encoder), WaveEvalItems(online_data, rows, 4, encoder),
                     torch.device("cpu"))
    plain = predict(model, EvalItems(cached_data, rows, 4), torch.device("cpu"))
    assert WaveEvalItems(online_data, rows, 4, encoder).n_batches() == 2  # padded batches, not one at a time
    np.testing.assert_allclose(online["probs"], plain["probs"], atol=1e-4)
    # a training crop that covers the whole utterance (train_crop="first") sees what the cached features hold
    crop = WaveCropItems(online_data, rows[:1], 10 * SR, 0, encoder, start="first").batch([0], epoch=0)
    states, mask = encoder.states(crop["speech"], crop["speech_mask"].sum(1))
    np.testing.assert_allclose(states[0].numpy(), cached[0], atol=2e-4, rtol=1e-3)


def test_the_ssl_model_is_frozen_through_a_training_step(models, tmp_path):
    manifest = write_corpus(tmp_path / "corpus", 4)
    table, _ = load_corpus(manifest)
    encoder = SSLEncoder(models["wavlm-layer"], device="cpu", dtype="float32")
    data = Utterances.from_table(table, Waveforms(table["path"], encoder), frames_per_second=50.0)
    net = OnlineSSLModel(small_fusion(encoder), encoder)
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    layer_weights = net.model.layer_weights.weights.detach().clone()
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert set(net.state_dict()) == set(net.model.state_dict())  # checkpoints hold no SSL weight
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    batch = WaveCropItems(data, np.arange(4), int(0.25 * SR), 0, encoder).batch([0, 1, 2, 3], epoch=0)
    assert tuple(batch["speech"].shape) == (4, 4000)
    net.train()
    loss = net.loss(batch, net(batch))
    loss.backward()
    optimizer.step()
    assert not encoder.model.training and not any(p.requires_grad for p in encoder.model.parameters())
    assert all(torch.equal(before[k], v) for k, v in encoder.model.state_dict().items())
    assert not torch.equal(layer_weights, net.model.layer_weights.weights.detach())  # the layer weights train


def test_online_training_runs_end_to_end_and_records_its_mode(models, tmp_path):
    from sercore.train import train_run

    manifest = write_corpus(tmp_path / "corpus")
    common = {"max_steps": 2, "eval_every": 1, "n_boot": 5, "progress": False, "device": "cpu",
              "crop_seconds": 0.25, "batch_size": 4, "cache_dir": str(tmp_path / "cache"), "model.text": False,
              "features.ssl_model_dir": str(models["w2v2-group"]), "model.speech": "ssl"}
    online = train_run("fusion", manifest, tmp_path / "online", profile="smoke",
                       **{**common, "features.ssl.mode": "online"})
    assert not list((tmp_path / "cache" / "stores").glob("ssl-*"))  # online caches no SSL state
    cached = train_run("fusion", manifest, tmp_path / "cached", profile="smoke", **common)
    assert online["data"]["ssl_mode"] == "online" and cached["data"]["ssl_mode"] == "cached"  # cached: CPU default
    assert online["provenance"]["parameters"]["features"]["ssl"]["mode"] == "online"
    assert online["data"]["frames_per_second"] == 50.0
    assert set(online["splits"]) == set(cached["splits"]) == {"Development", "Test1"}
    assert set(online["splits"]["Test1"]) == set(cached["splits"]["Test1"])  # the same metrics format
    assert online["training"]["steps"] == 2 and len(online["training"]["history"]) == 2
    assert len(list((tmp_path / "cache" / "stores").glob("ssl-*"))) == 1  # the cached run's
    # `predict` rebuilds the online model from metrics.json and reproduces the run's own Test1 predictions
    from sercore.predict import predict_split

    summary = predict_split(tmp_path / "online", manifest, "Test1", tmp_path / "test1.csv", device="cpu",
                            cache_dir=tmp_path / "cache")
    written = pd.read_csv(tmp_path / "test1.csv")
    own = pd.read_csv(tmp_path / "online" / "predictions.csv").query("split == 'Test1'")
    assert summary["written"] == len(own) == 3
    assert written["EmoClass"].tolist() == own["pred"].tolist()
