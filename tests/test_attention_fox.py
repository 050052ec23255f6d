"""FoX (sercore.attention.fox): blockwise vs decoding-style forms, attention matrix, padding, fla layout."""

import pytest
import torch
import torch.nn.functional as F

from sercore.attention import build
from sercore.attention.fox import ForgettingAttention, forgetting_parallel, forgetting_parallel_autograd

from attention_checks import (check_bidirectional_matrix_and_future, check_causal_matrix_reproduces_forward,
                              check_fla_state_dict, check_gradients_finite_and_deterministic,
                              check_padded_rows_equal_rows_alone, check_parallel_matches_recurrent, padded_batch)

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}

# (id, constructor options, B, T, query block): blocks below T exercise the blockwise loop
CONFIGS = [
    pytest.param(dict(hidden_size=32, num_heads=4), 2, 64, 16, id="B2-T64-H4-D32"),
    pytest.param(dict(hidden_size=32, num_heads=8, num_kv_heads=2, qk_norm=True, use_output_gate=True,
                      qkv_bias=True), 2, 40, 7, id="B2-T40-H8-KV2-D32-pro"),
    pytest.param(dict(hidden_size=32, num_heads=4, window_size=5), 1, 33, 10, id="B1-T33-H4-D32-window5"),
]


def make(options, dtype, seed=0, **extra):
    torch.manual_seed(seed)
    m = ForgettingAttention(**options, **extra).to(dtype)
    with torch.no_grad():  # fla's init leaves f_proj near 0 (f ~ 1/2); spread the gates so forgetting matters
        m.f_proj.bias.uniform_(-1.0, 4.0)
    return m


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("options,B,T,block", CONFIGS)
def test_blockwise_matches_recurrent(options, B, T, block, dtype):
    m = make(options, dtype)
    m.query_block = block
    x = torch.randn(B, T, options["hidden_size"], dtype=dtype, generator=torch.Generator().manual_seed(2))
    check_parallel_matches_recurrent(m, x, TOL[dtype])


def core_inputs(B, T, H, Hkv, D, forget=2.0, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, T, h, D, dtype=dtype, generator=gen) for h in (H, Hkv, Hkv))
    return q, k, v, F.logsigmoid(forget * torch.randn(B, T, H, dtype=dtype, generator=gen))


def values_and_grads(fn, inputs):
    leaves = [x.clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    weights = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).to(out.dtype)
    return [out.detach(), *torch.autograd.grad((out * weights).sum(), leaves)]


# (B, T, H, Hkv, D, window, block): GQA groups, blocks that do not divide T, one row, more rows than T, the
# default rule; windows shorter than a block (both masked edges in one block), longer than T, of one key
CORE_CASES = [(2, 37, 8, 2, 4, None, 5), (1, 33, 4, 4, 8, 5, 10), (2, 50, 6, 3, 3, 3, 7), (1, 20, 2, 1, 4, None, None),
              (1, 40, 4, 2, 4, 12, 16), (1, 9, 2, 2, 4, 50, 1), (2, 17, 4, 1, 5, None, 64), (1, 30, 4, 2, 4, 1, 8)]


@pytest.mark.parametrize("B,T,H,Hkv,D,window,block", CORE_CASES)
def test_hand_written_backward_equals_autograd(B, T, H, Hkv, D, window, block):
    """forgetting_parallel (flash-style backward, recomputed probabilities) against the blockwise form that
    autograd differentiates: values and gradients of q, k, v and log f in float64."""
    inputs = core_inputs(B, T, H, Hkv, D)
    fast = values_and_grads(lambda *x: forgetting_parallel(*x, window_size=window, block=block), inputs)
    spec = values_and_grads(lambda *x: forgetting_parallel_autograd(*x, window_size=window, block=block), inputs)
    for name, a, b in zip(["o", "q", "k", "v", "log_f"], fast, spec):
        # with a window of one key the softmax is constant: q, k and log f get no gradient, in both forms
        assert (a - b).norm() <= 1e-12 * max(b.norm(), 1.0), name


def test_hand_written_backward_survives_strong_forgetting():
    """log f down to -400 per step in float32: biases F_t - F_s in the thousands. Values and gradients stay
    finite and within float32 rounding of the float64 evaluation of the same inputs (the running sum F is
    where float32 loses: ~1e-5 here, 3x less than autograd's form, which adds F_t to q.k before F_s)."""
    inputs = core_inputs(2, 48, 4, 2, 4, forget=400.0, dtype=torch.float32, seed=1)
    fast = values_and_grads(lambda *x: forgetting_parallel(*x, block=16), inputs)
    exact = values_and_grads(lambda *x: forgetting_parallel_autograd(*x, block=16), [x.double() for x in inputs])
    for name, a, b in zip(["o", "q", "k", "v", "log_f"], fast, exact):
        assert torch.isfinite(a).all(), name
        assert (a.double() - b).norm() <= 1e-4 * b.norm(), name


@pytest.mark.parametrize("options,B,T,block", CONFIGS)
def test_attention_matrix_reproduces_forward(options, B, T, block):
    m = make(options, torch.float64)
    x, mask = padded_batch(torch.float64, options["hidden_size"])
    a = check_causal_matrix_reproduces_forward(m, x, mask)
    rows = a.sum(-1)                                                  # softmax rows of real tokens sum to 1
    assert torch.allclose(rows, mask[:, None, :].expand_as(rows).to(rows.dtype), atol=1e-12)
    if options.get("window_size"):
        assert torch.all(a[0].tril(-options["window_size"]) == 0)    # row 0 has no padding inside its range


def test_matrix_matches_the_definition():
    """A = causal softmax(q.k / sqrt(d) + F_t - F_s) with F the running sum of logsigmoid(f), written out."""
    m = make(dict(hidden_size=16, num_heads=2), torch.float64)
    x = torch.randn(1, 6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    q, k = m.q_proj(x).unflatten(-1, (2, 8))[0], m.k_proj(x).unflatten(-1, (2, 8))[0]   # [T, H, d]
    log_f = F.logsigmoid(m.f_proj(x))[0]                                                # [T, H]
    expected = torch.zeros(2, 6, 6, dtype=torch.float64)
    for h in range(2):
        for t in range(6):
            logits = torch.stack([q[t, h] @ k[s, h] / 8 ** 0.5 + log_f[s + 1:t + 1, h].sum() for s in range(t + 1)])
            expected[h, t, :t + 1] = torch.softmax(logits, 0)
    assert torch.allclose(m.attention_matrix(x)[0], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("options,B,T,block", CONFIGS)
def test_padded_rows_equal_sequences_alone(options, B, T, block, bidirectional):
    m = make(options, torch.float64, bidirectional=bidirectional)
    x, mask = padded_batch(torch.float64, options["hidden_size"])
    check_padded_rows_equal_rows_alone(m, x, mask)


def test_bidirectional_sees_the_future_and_has_a_matrix():
    m = make(dict(hidden_size=32, num_heads=8, num_kv_heads=2), torch.float64, bidirectional=True)
    x, mask = padded_batch(torch.float64, 32)
    a = check_bidirectional_matrix_and_future(m, x, mask)
    rows = a.sum(-1)
    assert torch.allclose(rows, mask[:, None, :].expand_as(rows).to(rows.dtype), atol=1e-12)


def test_gradients_finite_and_deterministic():
    m = make(dict(hidden_size=32, num_heads=8, num_kv_heads=4, qk_norm=True, use_output_gate=True), torch.float32)
    x, mask = padded_batch(torch.float32, 32)
    check_gradients_finite_and_deterministic(m, x, mask)


# Written from fla 0.6.0's ForgettingAttention.__init__ (fla.layers cannot be imported without triton).
FLA_KEYS = [
    (dict(hidden_size=64, num_heads=8, num_kv_heads=2),
     {"q_proj.weight": (64, 64), "k_proj.weight": (16, 64), "v_proj.weight": (16, 64),
      "f_proj.weight": (8, 64), "f_proj.bias": (8,), "o_proj.weight": (64, 64)}),
    (dict(hidden_size=64, num_heads=8, num_kv_heads=2, qkv_bias=True, qk_norm=True, use_output_gate=True),
     {"q_proj.weight": (64, 64), "q_proj.bias": (64,), "k_proj.weight": (16, 64), "k_proj.bias": (16,),
      "v_proj.weight": (16, 64), "v_proj.bias": (16,), "f_proj.weight": (8, 64), "f_proj.bias": (8,),
      "g_proj.weight": (64, 64), "o_proj.weight": (64, 64), "q_norm.weight": (64,), "k_norm.weight": (16,)}),
]


@pytest.mark.parametrize("options,expected", FLA_KEYS, ids=["gqa", "pro-options"])
def test_state_dict_layout_matches_fla(options, expected):
    m, other = check_fla_state_dict(lambda: ForgettingAttention(**options), expected)
    x = torch.randn(1, 9, 64)
    assert torch.equal(other(x), m(x))


def test_registry_maps_heads_to_kv_heads_and_errors():
    m = build("fox", 64, 4)           # the paper: ForgettingAttention(hidden_size, num_kv_heads=4), 32 query heads
    assert isinstance(m, ForgettingAttention)
    assert (m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim) == (64, 32, 4, 2)
    assert m(torch.randn(2, 5, 64)).shape == (2, 5, 64)
    assert m.attention_matrix(torch.randn(1, 5, 64)).shape == (1, 32, 5, 5)
    with pytest.raises(TypeError, match="valid options: .*window_size"):
        build("fox", 64, 4, expand_v=2)
    with pytest.raises(ValueError, match="divisible"):
        ForgettingAttention(hidden_size=64, num_heads=8, num_kv_heads=3)
    with pytest.raises(RuntimeError, match="CUDA"):
        build("fox", 64, 4, mode="fused")(torch.randn(1, 3, 64))
