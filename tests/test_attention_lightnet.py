"""LightNet (sercore.attention.lightnet): chunkwise vs recurrent forms, attention matrix, padding, fla layout."""

import pytest
import torch

from sercore.attention import build
from sercore.attention.lightnet import LightNetAttention

from attention_checks import (check_bidirectional_matrix_and_future, check_causal_matrix_reproduces_forward,
                              check_fla_state_dict, check_gradients_finite_and_deterministic,
                              check_padded_rows_equal_rows_alone, check_parallel_matches_recurrent, max_rel_err,
                              padded_batch)

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}

# (id, constructor options, B, T, chunk_size): chunk sizes below T exercise the carried state
CONFIGS = [
    pytest.param(dict(hidden_size=32, num_heads=4, expand_ratio=16), 2, 64, 16, id="B2-T64-H4-D32"),
    pytest.param(dict(hidden_size=32, num_heads=2, expand_ratio=8, use_short_conv=True, conv_bias=True,
                      gate_low_rank_dim=8), 2, 40, 16, id="B2-T40-H2-D32-conv"),
    pytest.param(dict(hidden_size=32, num_heads=4), 1, 37, 64, id="B1-T37-H4-D32-K128"),
]


def make(options, dtype, seed=0, **extra):
    torch.manual_seed(seed)
    return LightNetAttention(**options, **extra).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("options,B,T,chunk", CONFIGS)
def test_chunkwise_matches_recurrent(options, B, T, chunk, dtype):
    m = make(options, dtype)
    m.chunk_size = chunk
    x = torch.randn(B, T, options["hidden_size"], dtype=dtype, generator=torch.Generator().manual_seed(2))
    check_parallel_matches_recurrent(m, x, TOL[dtype])


def test_large_keys_stay_finite_and_agree():
    """exp(k) would overflow float32 for these keys; the running logsumexp keeps every exponent <= 0."""
    m = make(dict(hidden_size=32, num_heads=4, expand_ratio=16), torch.float32)
    m.chunk_size = 16
    x = 60 * torch.randn(1, 48, 32, generator=torch.Generator().manual_seed(4))
    m.mode = "reference"
    y_par, y_rec = m(x), m.forward_recurrent(x)
    assert torch.isfinite(y_par).all()
    assert max_rel_err(y_par, y_rec) < 1e-4


@pytest.mark.parametrize("options,B,T,chunk", CONFIGS)
def test_attention_matrix_reproduces_forward(options, B, T, chunk):
    m = make(options, torch.float64)
    x, mask = padded_batch(torch.float64, options["hidden_size"])
    check_causal_matrix_reproduces_forward(m, x, mask)


def test_matrix_matches_the_definition():
    """A[t, s] = K^-1/2 sum_d q_t[d] exp(k_s[d]) / sum_{j<=t} exp(k_j[d]), written out directly."""
    m = make(dict(hidden_size=16, num_heads=2, expand_ratio=4), torch.float64)
    x = torch.randn(1, 7, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    q = torch.nn.functional.silu(m.q_proj(x)).unflatten(-1, (2, 4))[0]      # [T, H, K]
    k = m.k_proj(x).unflatten(-1, (2, 4))[0]
    expected = torch.zeros(2, 7, 7, dtype=torch.float64)
    for t in range(7):
        for s in range(t + 1):
            weight = k[s].exp() / k[:t + 1].exp().sum(0)                      # [H, K]
            expected[:, t, s] = (q[t] * weight).sum(-1) / 2.0                 # K^-1/2 = 1/2
    assert torch.allclose(m.attention_matrix(x)[0], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("options,B,T,chunk", CONFIGS[:2])
def test_padded_rows_equal_sequences_alone(options, B, T, chunk, bidirectional):
    m = make(options, torch.float64, bidirectional=bidirectional)
    x, mask = padded_batch(torch.float64, options["hidden_size"])
    check_padded_rows_equal_rows_alone(m, x, mask)


def test_bidirectional_sees_the_future_and_has_a_matrix():
    m = make(dict(hidden_size=32, num_heads=4, expand_ratio=16), torch.float64, bidirectional=True)
    x, mask = padded_batch(torch.float64, 32)
    check_bidirectional_matrix_and_future(m, x, mask)


def test_gradients_finite_and_deterministic():
    m = make(dict(hidden_size=32, num_heads=4, expand_ratio=16, use_short_conv=True), torch.float32)
    x, mask = padded_batch(torch.float32, 32)
    check_gradients_finite_and_deterministic(m, x, mask)


def test_output_norm_uses_fla_eps_not_norm_eps():
    """fla 0.6.0 ignores norm_eps in LightNetAttention.forward (its fused norm runs at eps 1e-6); so do we."""
    x = torch.randn(1, 5, 32, dtype=torch.float64)
    a = make(dict(hidden_size=32, num_heads=4, expand_ratio=8), torch.float64)
    b = make(dict(hidden_size=32, num_heads=4, expand_ratio=8, norm_eps=1.0), torch.float64)
    assert torch.equal(a(x), b(x))


# Written from fla 0.6.0's LightNetAttention.__init__ (fla.layers cannot be imported without triton).
FLA_KEYS = [
    (dict(hidden_size=64, num_heads=4),
     {"q_proj.weight": (512, 64), "k_proj.weight": (512, 64), "v_proj.weight": (64, 64),
      "g_proj.0.weight": (128, 64), "g_proj.1.weight": (64, 128), "g_norm.weight": (64,), "o_proj.weight": (64, 64)}),
    (dict(hidden_size=64, num_heads=4, expand_ratio=8, use_short_conv=True, gate_low_rank_dim=16),
     {"q_proj.weight": (32, 64), "k_proj.weight": (32, 64), "v_proj.weight": (64, 64),
      "q_conv1d.weight": (32, 1, 4), "k_conv1d.weight": (32, 1, 4), "v_conv1d.weight": (64, 1, 4),
      "g_proj.0.weight": (16, 64), "g_proj.1.weight": (64, 16), "g_norm.weight": (64,), "o_proj.weight": (64, 64)}),
    (dict(hidden_size=64, num_heads=None, expand_ratio=32),          # num_heads = hidden_size // expand_ratio
     {"q_proj.weight": (64, 64), "k_proj.weight": (64, 64), "v_proj.weight": (64, 64),
      "g_proj.0.weight": (128, 64), "g_proj.1.weight": (64, 128), "g_norm.weight": (64,), "o_proj.weight": (64, 64)}),
]


@pytest.mark.parametrize("options,expected", FLA_KEYS, ids=["default", "conv-lowrank", "heads-from-ratio"])
def test_state_dict_layout_matches_fla(options, expected):
    m, other = check_fla_state_dict(lambda: LightNetAttention(**options), expected)
    x = torch.randn(1, 9, 64)
    assert torch.equal(other(x), m(x))


def test_registry_and_errors():
    m = build("lightnet", 64, 4)
    assert isinstance(m, LightNetAttention) and (m.hidden_size, m.num_heads, m.expand_ratio) == (64, 4, 128)
    assert m(torch.randn(2, 5, 64)).shape == (2, 5, 64)
    with pytest.raises(TypeError, match="valid options: .*expand_ratio"):
        build("lightnet", 64, 4, expand_k=2)
    with pytest.raises(ValueError, match="expand_ratio or num_heads"):
        LightNetAttention(hidden_size=64, num_heads=None, expand_ratio=None)
    with pytest.raises(RuntimeError, match="CUDA"):
        build("lightnet", 64, 4, mode="fused")(torch.randn(1, 3, 64))
