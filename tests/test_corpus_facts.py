"""Facts travel with the table: the layout, class set, A/V/D scale and generated-or-not come from the data
layer (sercore.data.corpus.corpus_facts), the frame rate from the encoder, and a run builds its model once."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sercore.data.corpus import corpus_facts, corpus_kind, load_corpus

SR = 16000
SMOKE = "/work/main/data/demo-smoke"


def manifest(root, labels=("ang", "hap"), n: int = 12):
    (root / "wav").mkdir(parents=True)
    rows = ["path,label,split,arousal,valence,dominance"]
    rng = np.random.default_rng(0)
    for i in range(n):
        sf.write(root / "wav" / f"u{i}.wav", (0.1 * rng.standard_normal(int(0.4 * SR))).astype(np.float32), SR,
                 subtype="PCM_16")
        split = ("Train", "Train", "Development", "Test1")[i % 4]
        rows.append(f"wav/u{i}.wav,{labels[i // 4 % len(labels)]},{split},{1 + i % 5},{2 + i % 3},3")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root / "manifest.csv"


def test_the_loader_attaches_the_layouts_facts_and_they_survive_filtering(tmp_path):
    import os

    if os.path.isdir(SMOKE):
        table, _ = load_corpus(SMOKE)
        facts = corpus_facts(table[table["split"] == "Train"].reset_index(drop=True))
        assert facts["layout"] == "msp-podcast" and facts["classes"] == ("N", "H", "A", "S", "C", "U", "D", "F")
        assert facts["avd_range"] == (1.0, 7.0) and facts["non_classes"] == ("O", "X")
        assert corpus_kind(table) == "generated demonstration corpus"
    # IEMOCAP labels in a manifest are a manifest's: no class set, no scale (nothing guessed from the labels)
    table, _ = load_corpus(manifest(tmp_path / "m"))
    assert corpus_facts(table) == {"layout": "manifest", "classes": None, "non_classes": (), "avd_range": None,
                                   "kind": "user corpus"}
    assert corpus_facts(table.iloc[:0])["layout"] == "manifest"


@pytest.fixture(scope="module")
def tiny_100fps(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("w2v2-100fps")
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8, 8), conv_kernel=(10, 8, 4), conv_stride=(5, 8, 4),
                            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).eval().save_pretrained(folder)
    return folder


def test_a_run_takes_its_frame_rate_from_the_encoder_and_builds_its_model_once(tmp_path, tiny_100fps, monkeypatch):
    import sercore.models as models
    from sercore.train import train_run

    built = []
    real = models.build_model
    monkeypatch.setattr(models, "build_model", lambda study, **o: built.append(study) or real(study, **o))
    corpus = manifest(tmp_path / "corpus")
    metrics = train_run("fusion", corpus, tmp_path / "run", profile="smoke", **{
        "max_steps": 1, "eval_every": 1, "n_boot": 5, "progress": False, "device": "cpu", "crop_seconds": 0.2,
        "batch_size": 4, "cache_dir": str(tmp_path / "cache"), "model.text": False, "model.speech": "ssl",
        "features.ssl_model_dir": str(tiny_100fps), "features.ssl.mode": "online"})
    assert built == ["fusion"]  # once: what it reads follows from its options (sercore.models.model_inputs)
    assert metrics["data"]["frames_per_second"] == 100.0  # 16000 / (5 * 8 * 4), not a constant 50
    assert metrics["classes"] == ["ang", "hap"]  # a manifest's own labels, not IEMOCAP's four classes
    assert metrics["corpus_kind"] == "user corpus" and metrics["data"]["avd_range"] is None
    logmel = train_run("multitask", corpus, tmp_path / "mel", profile="smoke", **{
        "max_steps": 1, "eval_every": 1, "n_boot": 5, "progress": False, "device": "cpu", "crop_seconds": 0.2,
        "batch_size": 4, "cache_dir": str(tmp_path / "cache"), "features.logmel.hop_ms": 20})
    assert logmel["data"]["frames_per_second"] == 50.0  # 1000 / hop_ms
