"""RetNet (sercore.attention.retnet): chunkwise vs recurrent forms, attention matrix, padding, fla layout."""

import pytest
import torch

from sercore.attention import build
from sercore.attention.retnet import MultiScaleRetention, retention_log_gamma

from attention_checks import (check_bidirectional_matrix_and_future, check_causal_matrix_reproduces_forward,
                              check_fla_state_dict, check_gradients_finite_and_deterministic,
                              check_padded_rows_equal_rows_alone, check_parallel_matches_recurrent, padded_batch)

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}

# (id, constructor options, B, T, chunk_size): chunk sizes below T exercise the carried state
CONFIGS = [
    pytest.param(dict(hidden_size=32, num_heads=4), 2, 64, 16, id="B2-T64-H4-D32"),
    pytest.param(dict(hidden_size=32, num_heads=4, num_kv_heads=2, use_short_conv=True, conv_bias=True,
                      feature_map="relu", expand_k=0.5), 2, 40, 16, id="B2-T40-H4-D32-gqa-conv-relu"),
    pytest.param(dict(hidden_size=48, num_heads=2, use_output_gate=False), 1, 50, 64, id="B1-T50-H2-D48-nogate"),
    pytest.param(dict(hidden_size=32, num_heads=4, gate_fn="sigmoid"), 2, 33, 8, id="B2-T33-H4-D32-sigmoid"),
]


def make(options, dtype, seed=0, **extra):
    torch.manual_seed(seed)
    return MultiScaleRetention(**options, **extra).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("options,B,T,chunk", CONFIGS)
def test_chunkwise_matches_recurrent(options, B, T, chunk, dtype):
    m = make(options, dtype)
    m.chunk_size = chunk
    x = torch.randn(B, T, options["hidden_size"], dtype=dtype, generator=torch.Generator().manual_seed(2))
    check_parallel_matches_recurrent(m, x, TOL[dtype])


@pytest.mark.parametrize("options,B,T,chunk", CONFIGS)
def test_attention_matrix_reproduces_forward(options, B, T, chunk):
    m = make(options, torch.float64)
    x, mask = padded_batch(torch.float64, options["hidden_size"])
    check_causal_matrix_reproduces_forward(m, x, mask)


def test_matrix_matches_the_definition():
    """A[t, s] = K^-1/2 (q_t . k_s) gamma_h^(t-s), gamma_h = 1 - 2^(-5-h), written out from the rotated q, k."""
    m = make(dict(hidden_size=16, num_heads=2), torch.float64)
    x = torch.randn(1, 7, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    s = m._streams(x)
    q, k = s["q"][0], s["k"][0]                                            # [T, H, K=8]
    expected = torch.zeros(2, 7, 7, dtype=torch.float64)
    for h in range(2):
        gamma = 1 - 2.0 ** (-5 - h)
        for t in range(7):
            for j in range(t + 1):
                expected[h, t, j] = (q[t, h] @ k[j, h]) / 8 ** 0.5 * gamma ** (t - j)
    assert torch.allclose(m.attention_matrix(x)[0], expected, rtol=1e-12, atol=1e-14)
    assert torch.allclose(retention_log_gamma(2, dtype=torch.float64).exp(),
                          torch.tensor([1 - 2 ** -5, 1 - 2 ** -6], dtype=torch.float64))


def test_rotary_makes_scores_depend_on_distance_only():
    """fla's RoPE: with a constant input, q_t . k_s depends on t - s alone, so every diagonal of A is constant."""
    m = make(dict(hidden_size=16, num_heads=2), torch.float64)
    a = m.attention_matrix(torch.ones(1, 6, 16, dtype=torch.float64))[0]
    for h in range(2):
        for lag in range(6):
            diag = torch.diagonal(a[h], -lag)
            assert torch.allclose(diag, diag[0].expand_as(diag), rtol=1e-12, atol=1e-14)
    assert not torch.allclose(a[0, 1, 0] / a[0, 0, 0], torch.tensor(1 - 2 ** -5, dtype=torch.float64))  # rotation acts


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("options,B,T,chunk", CONFIGS[:2])
def test_padded_rows_equal_sequences_alone(options, B, T, chunk, bidirectional):
    m = make(options, torch.float64, bidirectional=bidirectional)
    x, mask = padded_batch(torch.float64, options["hidden_size"])
    check_padded_rows_equal_rows_alone(m, x, mask)


def test_bidirectional_sees_the_future_and_has_a_matrix():
    m = make(dict(hidden_size=32, num_heads=4), torch.float64, bidirectional=True)
    x, mask = padded_batch(torch.float64, 32)
    check_bidirectional_matrix_and_future(m, x, mask)
    with pytest.raises(NotImplementedError, match="short_conv"):
        make(dict(hidden_size=32, num_heads=4, use_short_conv=True), torch.float64,
             bidirectional=True).attention_matrix(x[1:2, :10])


def test_gradients_finite_and_deterministic():
    m = make(dict(hidden_size=32, num_heads=4, use_short_conv=True), torch.float32)
    x, mask = padded_batch(torch.float32, 32)
    check_gradients_finite_and_deterministic(m, x, mask)


# Written from fla 0.6.0's MultiScaleRetention.__init__ (fla.layers cannot be imported without triton).
FLA_KEYS = [
    (dict(hidden_size=64, num_heads=4),
     {"q_proj.weight": (64, 64), "k_proj.weight": (64, 64), "v_proj.weight": (128, 64),
      "g_proj.weight": (128, 64), "o_proj.weight": (64, 128), "g_norm_swish_gate.weight": (32,)}),
    (dict(hidden_size=64, num_heads=4, num_kv_heads=2, use_short_conv=True, conv_bias=True, fuse_norm=False),
     {"q_proj.weight": (64, 64), "k_proj.weight": (32, 64), "v_proj.weight": (64, 64),
      "g_proj.weight": (128, 64), "o_proj.weight": (64, 128), "g_norm.weight": (32,),
      "q_conv1d.weight": (64, 1, 4), "q_conv1d.bias": (64,), "k_conv1d.weight": (32, 1, 4),
      "k_conv1d.bias": (32,), "v_conv1d.weight": (64, 1, 4), "v_conv1d.bias": (64,)}),
    (dict(hidden_size=64, num_heads=4, use_output_gate=False, elementwise_affine=False),
     {"q_proj.weight": (64, 64), "k_proj.weight": (64, 64), "v_proj.weight": (128, 64),
      "o_proj.weight": (64, 128)}),
]


@pytest.mark.parametrize("options,expected", FLA_KEYS, ids=["default", "gqa-conv-unfused", "nogate-noaffine"])
def test_state_dict_layout_matches_fla(options, expected):
    m, other = check_fla_state_dict(lambda: MultiScaleRetention(**options), expected)
    if "g_norm.weight" in expected:
        assert m.g_norm.weight.dtype == torch.float32      # fla builds this norm in float32
    x = torch.randn(1, 9, 64)
    assert torch.equal(other(x), m(x))


def test_registry_and_errors():
    m = build("retnet", 64, 4)
    assert isinstance(m, MultiScaleRetention) and m.hidden_size == 64 and m.num_heads == 4
    assert m(torch.randn(2, 5, 64)).shape == (2, 5, 64)
    with pytest.raises(TypeError, match="valid options: .*bidirectional"):
        build("retnet", 64, 4, not_an_option=1)
    with pytest.raises(ValueError, match="unknown mode .chunk.; valid modes: auto, reference, fused"):
        MultiScaleRetention(mode="chunk", hidden_size=64, num_heads=4)   # fla's kernel names are not modes
    with pytest.raises(RuntimeError, match="CUDA"):
        build("retnet", 64, 4, mode="fused")(torch.randn(1, 3, 64))
    with pytest.raises(ValueError, match="divisible"):
        MultiScaleRetention(hidden_size=64, num_heads=3)


def test_building_blocks_follow_fla_conventions():
    """RoPE pairs channel i with i + d/2 (fla's non-interleaved default, base 10000); the short conv's last
    tap weight[..., K-1] multiplies the current token, then silu."""
    from sercore.attention._modules import RotaryEmbedding, ShortConvolution

    d, T = 8, 5
    x = torch.randn(1, T, 1, d, dtype=torch.float64)
    rotated, _ = RotaryEmbedding(d)(x, x)
    for t in range(T):
        for i in range(d // 2):
            angle = torch.tensor(t * 10000.0 ** (-2 * i / d), dtype=torch.float64)
            a, b = x[0, t, 0, i], x[0, t, 0, i + d // 2]
            assert torch.isclose(rotated[0, t, 0, i], a * angle.cos() - b * angle.sin(), rtol=1e-12)
            assert torch.isclose(rotated[0, t, 0, i + d // 2], a * angle.sin() + b * angle.cos(), rtol=1e-12)

    conv = ShortConvolution(3, 4, bias=True).double()
    u = torch.randn(1, 6, 3, dtype=torch.float64)
    expected = torch.zeros_like(u)
    for t in range(6):
        z = conv.bias.clone()
        for lag in range(min(4, t + 1)):
            z = z + conv.weight[:, 0, 3 - lag] * u[0, t - lag]
        expected[0, t] = torch.nn.functional.silu(z)
    assert torch.allclose(conv(u), expected, rtol=1e-12)
    packed = conv(u, cu_seqlens=torch.tensor([0, 2, 6]))            # the second sequence starts fresh at t = 2
    assert torch.allclose(packed[:, 2:], conv(u[:, 2:]), rtol=1e-12)
