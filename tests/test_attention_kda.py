"""Kimi Delta Attention (sercore.attention.kda): chunked (WY/UT) vs recurrent core, fla's own naive
references, gate, attention matrix, padding, bidirectional variant, gradients, determinism, fla layout."""

import math

import pytest
import torch
import torch.nn.functional as F

from sercore.attention import build
from sercore.attention.kda import (KimiDeltaAttention, kda_attention, kda_chunked, kda_gate, kda_recurrent,
                                   l2_normalise)

from attention_checks import (check_causal_ignores_future_and_bidirectional_uses_it, check_fla_state_dict,
                              check_gradients_finite_for_large_inputs, check_layer_default_matches_recurrent,
                              check_matrix_reconstructs_forward, check_padding_content_is_irrelevant,
                              check_padding_is_invisible, check_rebuilt_layer_gives_equal_outputs,
                              fla_naive_path, load_fla_naive, norm_rel_err)

FLA_NAIVE = fla_naive_path("kda")
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def core_inputs(B, T, H, HV, K, V, dtype, decay=2.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k = (l2_normalise(torch.randn(B, T, H, K, generator=gen, dtype=dtype)) for _ in range(2))
    v = torch.randn(B, T, HV, V, generator=gen, dtype=dtype)
    g = -decay * torch.rand(B, T, HV, K, generator=gen, dtype=dtype)
    beta = torch.rand(B, T, HV, generator=gen, dtype=dtype)
    return q, k, v, g, beta


CORE_CASES = [
    pytest.param(2, 64, 4, 4, 32, 32, 16, id="B2-T64-H4-D32-C16"),
    pytest.param(1, 50, 2, 4, 16, 8, 16, id="B1-T50-H2-HV4-D16-C16"),
    pytest.param(2, 37, 3, 3, 8, 8, 64, id="B2-T37-H3-D8-C64"),
    pytest.param(1, 33, 1, 1, 4, 4, 1, id="B1-T33-H1-D4-C1"),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("B,T,H,HV,K,V,C", CORE_CASES)
def test_chunked_matches_recurrent_forward_and_gradients(B, T, H, HV, K, V, C, dtype):
    inputs = [x.requires_grad_() for x in core_inputs(B, T, H, HV, K, V, dtype)]
    do = torch.randn(B, T, HV, V, dtype=dtype)
    o_ref = kda_recurrent(*inputs, scale=K ** -0.5)
    grads_ref = torch.autograd.grad((o_ref * do).sum(), inputs)
    o = kda_chunked(*inputs, scale=K ** -0.5, chunk_size=C)
    grads = torch.autograd.grad((o * do).sum(), inputs)
    assert o.dtype == dtype
    assert norm_rel_err(o, o_ref) < TOL[dtype]
    for name, a, b in zip(["q", "k", "v", "g", "beta"], grads, grads_ref):
        assert norm_rel_err(a, b) < TOL[dtype], name


def test_chunked_survives_strong_decay_and_negative_eigenvalues():
    # decays of up to e^-60 per step would overflow exp(-G) over a chunk; beta up to 2 (allow_neg_eigval)
    q, k, v, g, beta = core_inputs(1, 48, 2, 2, 8, 8, torch.float32, decay=60.0)
    o = kda_chunked(q, k, v, g, 2 * beta, 8 ** -0.5, chunk_size=16)
    assert torch.isfinite(o).all()
    assert norm_rel_err(o, kda_recurrent(q, k, v, g, 2 * beta, 8 ** -0.5)) < 1e-4


@pytest.mark.skipif(not FLA_NAIVE.exists(), reason="fla's naive KDA reference not installed")
def test_recurrent_matches_fla_naive_references():
    naive = load_fla_naive("kda")
    q, k, v, g, beta = core_inputs(2, 64, 2, 4, 8, 6, torch.float64)
    ours = kda_recurrent(q, k, v, g, beta, 0.4)
    # fla's naive functions compute in float32
    assert norm_rel_err(ours, naive.naive_recurrent_kda(q, k, v, g, beta, scale=0.4)[0].double()) < 1e-5
    assert norm_rel_err(ours, naive.naive_chunk_kda(q, k, v, g, beta, scale=0.4, chunk_size=16)[0].double()) < 1e-5


def test_attention_matrix_is_causal_and_reproduces_the_core():
    q, k, v, g, beta = core_inputs(2, 30, 2, 4, 8, 8, torch.float64)
    A = kda_attention(q, k, g, beta, 0.5)
    assert A.shape == (2, 4, 30, 30)
    assert torch.equal(A.triu(1), torch.zeros_like(A))
    assert norm_rel_err(torch.einsum("bhts,bshv->bthv", A, v), kda_recurrent(q, k, v, g, beta, 0.5)) < 1e-12


def test_gate_formulas():
    f = torch.randn(3, 2, 4, dtype=torch.float64)
    A_log, dt_bias = torch.tensor([0.3, 1.2], dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    z = f + dt_bias.view(2, 4)
    softplus_gate = -A_log.exp()[:, None] * torch.log1p(z.exp())
    assert norm_rel_err(kda_gate(f, A_log, dt_bias), softplus_gate) < 1e-12
    bounded = kda_gate(f, A_log, dt_bias, lower_bound=-5.0)
    assert norm_rel_err(bounded, -5.0 / (1 + torch.exp(-A_log.exp()[:, None] * z))) < 1e-12
    assert (bounded > -5).all() and (bounded < 0).all()


# ---------------------------------------------------------------- the layer

def layer(dtype=torch.float64, seed=0, **options):
    torch.manual_seed(seed)
    options = {"hidden_size": 32, "num_heads": 2, "head_dim": 16, **options}
    return KimiDeltaAttention(**options).to(dtype)


LAYER_CASES = [
    pytest.param({}, id="B3-T40-H2-D16-conv"),
    pytest.param({"num_v_heads": 4, "expand_v": 0.5, "use_short_conv": False}, id="B3-T40-H2-HV4-D16-noconv"),
    pytest.param({"allow_neg_eigval": True, "lower_bound": -5.0, "safe_gate": True, "conv_bias": True},
                 id="B3-T40-H2-D16-negeig-bound"),
    pytest.param({"bidirectional": True}, id="B3-T40-H2-D16-bidir"),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("options", LAYER_CASES)
def test_layer_parallel_matches_recurrent(options, dtype):
    check_layer_default_matches_recurrent(layer(dtype, **options), dtype, TOL[dtype])  # CPU default: chunked


@pytest.mark.parametrize("options", [pytest.param({}, id="causal-conv"),
                                     pytest.param({"bidirectional": True, "use_short_conv": False},
                                                  id="bidirectional-noconv"),
                                     pytest.param({"num_v_heads": 4}, id="gva")])
def test_attention_matrix_reconstructs_forward(options):
    m = layer(**options)
    check_matrix_reconstructs_forward(m, m.num_v_heads, bool(options.get("bidirectional")))


def test_no_single_matrix_for_bidirectional_with_short_conv():
    m = layer(bidirectional=True)
    with pytest.raises(NotImplementedError, match="short_conv"):
        m.attention_matrix(torch.randn(1, 8, 32, dtype=torch.float64))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_padded_rows_equal_the_sequence_alone(bidirectional):
    check_padding_is_invisible(layer(bidirectional=bidirectional, conv_bias=True))


def test_padding_content_is_irrelevant():
    check_padding_content_is_irrelevant(layer(conv_bias=True))


def test_causal_ignores_future_and_bidirectional_uses_it():
    check_causal_ignores_future_and_bidirectional_uses_it(layer(), layer(bidirectional=True))


def test_gradients_are_finite_for_large_inputs():
    check_gradients_finite_for_large_inputs(layer(torch.float32))


def test_deterministic():
    check_rebuilt_layer_gives_equal_outputs(lambda: layer(torch.float32, seed=3))


# ---------------------------------------------------------------- fla's layout, initialisation and options

def fla_expected_state(hidden_size=2048, expand_v=1, head_dim=128, num_heads=16, num_v_heads=None,
                       use_short_conv=True, conv_size=4, conv_bias=False, **_):
    """Parameter names and shapes of fla 0.6.0 KimiDeltaAttention.__init__ (read from fla/layers/kda.py;
    fla's layer cannot be built here: importing fla.layers needs triton)."""
    hv = num_heads if num_v_heads is None else num_v_heads
    head_v = round(head_dim * expand_v)
    key_dim, value_dim, gate_dim = num_heads * head_dim, hv * head_v, hv * head_dim
    shapes = {"q_proj.weight": (key_dim, hidden_size), "k_proj.weight": (key_dim, hidden_size),
              "v_proj.weight": (value_dim, hidden_size),
              "f_proj.0.weight": (head_v, hidden_size), "f_proj.1.weight": (gate_dim, head_v),
              "b_proj.weight": (hv, hidden_size), "A_log": (hv,), "dt_bias": (gate_dim,),
              "g_proj.0.weight": (head_v, hidden_size), "g_proj.1.weight": (value_dim, head_v),
              "g_proj.1.bias": (value_dim,), "o_norm.weight": (head_v,), "o_proj.weight": (hidden_size, value_dim)}
    if use_short_conv:
        for name, width in (("q", key_dim), ("k", key_dim), ("v", value_dim)):
            shapes[f"{name}_conv1d.weight"] = (width, 1, conv_size)
            if conv_bias:
                shapes[f"{name}_conv1d.bias"] = (width,)
    return shapes


@pytest.mark.parametrize("options", [
    pytest.param({"hidden_size": 1024, "num_heads": 4}, id="paper-H4-D1024"),
    pytest.param({"hidden_size": 64, "num_heads": 2, "num_v_heads": 4, "head_dim": 32, "expand_v": 1.5,
                  "conv_bias": True, "conv_size": 3}, id="gva-expand-conv3"),
    pytest.param({"hidden_size": 64, "num_heads": 2, "head_dim": 16, "use_short_conv": False}, id="noconv"),
])
def test_parameter_layout_is_flas(options):
    m, copy = check_fla_state_dict(lambda: KimiDeltaAttention(**options), fla_expected_state(**options))
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), m.state_dict().values()))


def test_initialisation_follows_fla():
    torch.manual_seed(0)
    m = KimiDeltaAttention(hidden_size=64, num_heads=4, head_dim=64)
    rates = m.A_log.exp()
    assert ((rates >= 1) & (rates <= 16)).all()
    dt = F.softplus(m.dt_bias)  # dt_bias is softplus^-1 of dt, dt log-uniform in [1e-3, 1e-1]
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert math.isclose(dt.log().mean().item(), (math.log(1e-3) + math.log(0.1)) / 2, abs_tol=0.3)
    safe = KimiDeltaAttention(hidden_size=64, num_heads=4, head_dim=16, safe_gate=True, lower_bound=-5.0)
    assert torch.equal(safe.A_log, torch.zeros(4))


def test_paper_configuration_through_the_registry():
    m = build("kda", 1024, 4)
    assert isinstance(m, KimiDeltaAttention)
    assert (m.hidden_size, m.num_heads, m.head_k_dim, m.key_dim, m.value_dim) == (1024, 4, 128, 512, 512)
    small = build("kda", 64, 2, head_dim=16, bidirectional=True)
    assert small.bidirectional and small.head_dim == 16
    with pytest.raises(TypeError, match="unknown option"):
        build("kda", 64, 2, headdim=16)


@pytest.mark.parametrize("options,message", [
    ({"num_v_heads": 3}, "multiple"),
    ({"num_v_heads": 1}, "multiple"),
    ({"expand_v": 0.3}, "integer"),
    ({"safe_gate": True}, "lower_bound"),
    ({"safe_gate": True, "lower_bound": -6.0}, "lower_bound"),
    ({"head_dim": 512}, "256"),
    ({"mode": "chunk"}, "mode"),
])
def test_unsupported_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        KimiDeltaAttention(**{"hidden_size": 32, "num_heads": 2, "head_dim": 16, **options})


def test_fused_mode_needs_cuda():
    with pytest.raises(RuntimeError, match="CUDA"):
        layer(mode="fused")(torch.randn(1, 4, 32, dtype=torch.float64))
