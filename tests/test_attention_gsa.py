"""Gated Slot Attention (sercore.attention.gsa): chunked vs recurrent core, fla's own naive reference,
attention matrix, padding, bidirectional variant, gradients, determinism, fla parameter layout."""

import pytest
import torch
import torch.nn.functional as F

from sercore.attention import build
from sercore.attention.gsa import GatedSlotAttention, gsa_attention, gsa_chunked, gsa_recurrent

from attention_checks import (check_causal_ignores_future_and_bidirectional_uses_it, check_fla_state_dict,
                              check_gradients_finite_for_large_inputs, check_layer_default_matches_recurrent,
                              check_matrix_reconstructs_forward, check_padding_content_is_irrelevant,
                              check_padding_is_invisible, check_rebuilt_layer_gives_equal_outputs,
                              fla_naive_path, load_fla_naive, norm_rel_err)

FLA_NAIVE = fla_naive_path("gsa")
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def core_inputs(B, T, H, K, V, M, dtype, gate_scale=3.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k = (F.silu(torch.randn(B, T, H, K, generator=gen, dtype=dtype)) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen, dtype=dtype)
    g = F.logsigmoid(gate_scale * torch.randn(B, T, H, M, generator=gen, dtype=dtype)) / 8
    return q, k, v, 1 - g.exp(), g


CORE_CASES = [
    pytest.param(2, 64, 4, 32, 16, 32, 16, id="B2-T64-H4-D32-C16"),
    pytest.param(1, 50, 2, 16, 24, 8, 16, id="B1-T50-H2-D16-C16"),
    pytest.param(2, 37, 3, 8, 8, 5, 64, id="B2-T37-H3-D8-C64"),
    pytest.param(1, 33, 1, 4, 4, 4, 1, id="B1-T33-H1-D4-C1"),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("B,T,H,K,V,M,C", CORE_CASES)
def test_chunked_matches_recurrent_forward_and_gradients(B, T, H, K, V, M, C, dtype):
    inputs = [x.requires_grad_() for x in core_inputs(B, T, H, K, V, M, dtype)]
    do = torch.randn(B, T, H, V, dtype=dtype)
    o_ref = gsa_recurrent(*inputs, scale=0.7)
    grads_ref = torch.autograd.grad((o_ref * do).sum(), inputs)
    o = gsa_chunked(*inputs, scale=0.7, chunk_size=C)
    grads = torch.autograd.grad((o * do).sum(), inputs)
    assert o.dtype == dtype
    assert norm_rel_err(o, o_ref) < TOL[dtype]
    for name, a, b in zip("qkvsg", grads, grads_ref):
        assert norm_rel_err(a, b) < TOL[dtype], name


def test_chunked_survives_strong_forgetting():
    # logsigmoid(-400)/8 = -50 per step: exp(-G) over a chunk would overflow; pairwise exponents must not
    q, k, v, s, g = core_inputs(1, 48, 2, 8, 8, 8, torch.float32, gate_scale=400.0)
    o = gsa_chunked(q, k, v, s, g, 1.0, chunk_size=16)
    assert torch.isfinite(o).all()
    assert norm_rel_err(o, gsa_recurrent(q, k, v, s, g, 1.0)) < 1e-4


@pytest.mark.skipif(not FLA_NAIVE.exists(), reason="fla's naive GSA reference not installed")
def test_recurrent_matches_fla_naive_reference():
    naive = load_fla_naive("gsa")
    q, k, v, s, g = core_inputs(2, 40, 3, 8, 6, 5, torch.float64)
    expected, _ = naive.naive_recurrent_gsa(q, k, v, s, g, scale=0.5)  # computes in float32
    assert norm_rel_err(gsa_recurrent(q, k, v, s, g, 0.5), expected.double()) < 1e-5


def test_attention_matrix_is_causal_and_reproduces_the_core():
    q, k, v, s, g = core_inputs(2, 30, 2, 8, 8, 6, torch.float64)
    A = gsa_attention(q, k, s, g, 0.5)
    assert A.shape == (2, 2, 30, 30)
    assert torch.equal(A.triu(1), torch.zeros_like(A))
    assert norm_rel_err(torch.einsum("bhts,bshv->bthv", A, v), gsa_recurrent(q, k, v, s, g, 0.5)) < 1e-12


# ---------------------------------------------------------------- the layer

def layer(dtype=torch.float64, seed=0, **options):
    torch.manual_seed(seed)
    options = {"hidden_size": 32, "num_heads": 4, **options}
    return GatedSlotAttention(**options).to(dtype)


LAYER_CASES = [
    pytest.param({}, id="B3-T40-H4-D32"),
    pytest.param({"num_kv_heads": 2, "num_slots": 6}, id="B3-T40-H4-D32-kv2-M6"),
    pytest.param({"use_short_conv": True, "conv_bias": True, "feature_map": "t2r", "scale": None},
                 id="B3-T40-H4-D32-conv-t2r"),
    pytest.param({"feature_map": "relu", "elementwise_affine": False, "bidirectional": True},
                 id="B3-T40-H4-D32-relu-bidir"),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("options", LAYER_CASES)
def test_layer_parallel_matches_recurrent(options, dtype):
    check_layer_default_matches_recurrent(layer(dtype, **options), dtype, TOL[dtype])  # CPU default: chunked


@pytest.mark.parametrize("options", [pytest.param({}, id="causal"),
                                     pytest.param({"bidirectional": True}, id="bidirectional"),
                                     pytest.param({"num_kv_heads": 1, "use_short_conv": True}, id="kv1-conv")])
def test_attention_matrix_reconstructs_forward(options):
    check_matrix_reconstructs_forward(layer(**options), 4, bool(options.get("bidirectional")))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_padded_rows_equal_the_sequence_alone(bidirectional):
    # nothing flows from or to padding: padded inputs get no gradient
    gx, mask = check_padding_is_invisible(layer(use_short_conv=True, bidirectional=bidirectional))
    assert gx[mask].abs().min() >= 0


def test_padding_content_is_irrelevant():
    check_padding_content_is_irrelevant(layer(use_short_conv=True))


def test_causal_ignores_future_and_bidirectional_uses_it():
    check_causal_ignores_future_and_bidirectional_uses_it(layer(), layer(bidirectional=True))


def test_gradients_are_finite_for_large_inputs():
    check_gradients_finite_for_large_inputs(layer(torch.float32, use_short_conv=True))


def test_deterministic():
    check_rebuilt_layer_gives_equal_outputs(lambda: layer(torch.float32, seed=3))


# ---------------------------------------------------------------- fla's layout and options

def fla_expected_state(hidden_size=1024, num_heads=4, num_kv_heads=None, expand_k=1.0, num_slots=None,
                       use_short_conv=False, conv_size=4, conv_bias=False, feature_map="swish",
                       elementwise_affine=True):
    """Parameter names and shapes of fla 0.6.0 GatedSlotAttention.__init__ (read from fla/layers/gsa.py;
    fla's layer cannot be built here: importing fla.layers needs triton)."""
    kv = num_heads if num_kv_heads is None else num_kv_heads
    key_dim, value_dim = round(hidden_size * expand_k), hidden_size
    groups = num_heads // kv
    head_k = key_dim // num_heads
    M = head_k if num_slots is None else num_slots
    shapes = {"q_proj.weight": (key_dim, hidden_size), "k_proj.weight": (key_dim // groups, hidden_size),
              "v_proj.weight": (value_dim // groups, hidden_size), "f_proj.weight": (kv * M, hidden_size),
              "o_proj.weight": (hidden_size, value_dim)}
    if feature_map == "t2r":
        shapes["feature_map.layer.weight"] = (head_k, head_k)
    if use_short_conv:
        for name, width in (("q", key_dim), ("k", key_dim // groups), ("v", value_dim // groups)):
            shapes[f"{name}_conv1d.weight"] = (width, 1, conv_size)
            if conv_bias:
                shapes[f"{name}_conv1d.bias"] = (width,)
    if elementwise_affine:
        shapes["g_norm.weight"] = (hidden_size,)
    return shapes


@pytest.mark.parametrize("options", [
    pytest.param({}, id="paper-H4-D1024"),
    pytest.param({"num_kv_heads": 2, "num_slots": 16, "expand_k": 0.5}, id="kv2-M16-k0.5"),
    pytest.param({"use_short_conv": True, "conv_bias": True, "conv_size": 3, "feature_map": "t2r",
                  "elementwise_affine": False}, id="conv-t2r-noaffine"),
])
def test_parameter_layout_is_flas(options):
    hidden = 1024 if not options else 64
    m, copy = check_fla_state_dict(lambda: GatedSlotAttention(hidden_size=hidden, **options),
                                   fla_expected_state(hidden_size=hidden, **options))
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), m.state_dict().values()))


def test_paper_configuration_through_the_registry():
    m = build("gsa", 1024, 4)
    assert isinstance(m, GatedSlotAttention)
    assert (m.hidden_size, m.num_heads, m.head_k_dim, m.num_slots, m.scale) == (1024, 4, 256, 256, 1.0)
    small = build("gsa", 64, 2, bidirectional=True, chunk_size=8)
    assert small.bidirectional and small.chunk_size == 8
    with pytest.raises(TypeError, match="unknown option"):
        build("gsa", 64, 2, num_slot=4)


@pytest.mark.parametrize("options,message", [
    ({"use_output_gate": True}, "never uses"),
    ({"use_norm": False}, "never uses"),
    ({"norm_eps": 1e-6}, "norm_eps"),
    ({"expand_v": 2.0}, "value_dim"),
    ({"feature_map": "elu"}, "feature_map"),
    ({"num_kv_heads": 3}, "divisible"),
    ({"mode": "chunk"}, "mode"),
])
def test_unsupported_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        GatedSlotAttention(hidden_size=48, num_heads=4, **options)


def test_fused_mode_needs_cuda():
    with pytest.raises(RuntimeError, match="CUDA"):
        layer(mode="fused")(torch.randn(1, 4, 32, dtype=torch.float64))
