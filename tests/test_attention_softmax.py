"""Softmax attention: the three cores agree, padding is invisible, attention_matrix reproduces forward."""

import pytest
import torch

from sercore.attention.softmax import (SoftmaxAttention, allowed_keys, explicit_attention, naive_attention,
                                       sdpa_attention)

TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
SHAPES = [(1, 1, 1, 8), (2, 64, 4, 32), (3, 37, 2, 16)]


def rel_err(a, b):
    """Largest difference relative to the reference's scale (1 at least: exact zeros, e.g. the q/k gradients
    at T=1, are compared absolutely)."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()


def random_mask(b, t, generator):
    lengths = torch.randint(1, t + 1, (b,), generator=generator)
    lengths[0] = t  # one unpadded row in every batch
    return torch.arange(t)[None, :] < lengths[:, None]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("b,t,h,d", SHAPES, ids=[f"B{b}-T{t}-H{h}-D{d}" for b, t, h, d in SHAPES])
def test_cores_agree_forward_and_gradients(b, t, h, d, padded, causal, dtype):
    g = torch.Generator().manual_seed(b * 1000 + t)
    q, k, v = (torch.randn(b, h, t, d, generator=g, dtype=dtype, requires_grad=True) for _ in range(3))
    mask = random_mask(b, t, g) if padded else None
    allowed = allowed_keys(mask, t, causal, q.device)
    do = torch.randn(b, h, t, d, generator=g, dtype=dtype)
    results = {}
    for name, core in [("explicit", lambda *a: explicit_attention(*a)[0]), ("sdpa", sdpa_attention),
                       ("naive", naive_attention)]:
        o = core(q, k, v, allowed)
        grads = torch.autograd.grad((o * do).sum(), (q, k, v))
        results[name] = (o, *grads)
    for name in ("sdpa", "naive"):
        for got, want in zip(results[name], results["explicit"]):
            assert got.dtype == dtype
            assert rel_err(got, want) < TOL[dtype], name


def test_sdpa_builtin_causal_flag_equals_the_causal_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, generator=g, dtype=torch.float64) for _ in range(3))
    want = explicit_attention(q, k, v, allowed_keys(None, 17, True, q.device))[0]
    assert torch.allclose(sdpa_attention(q, k, v, is_causal=True), want, atol=1e-12)


def test_explicit_core_matches_a_plain_definition():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    o, w = explicit_attention(q, k, v)
    want = torch.zeros(5, 3, dtype=torch.float64)
    for i in range(5):
        s = torch.stack([q[0, 0, i] @ k[0, 0, j] / 3 ** 0.5 for j in range(5)])
        p = s.exp() / s.exp().sum()
        want[i] = sum(p[j] * v[0, 0, j] for j in range(5))
    assert torch.allclose(o[0, 0], want, atol=1e-12)
    assert torch.allclose(w.sum(-1), torch.ones(1, 1, 5, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_module_naive_equals_reference_forward_and_input_gradients(causal, dtype):
    torch.manual_seed(0)
    standard = SoftmaxAttention(64, 4, causal=causal, mode="reference").to(dtype)
    naive = SoftmaxAttention(64, 4, mode="naive", causal=causal).to(dtype)
    naive.load_state_dict(standard.state_dict())
    x = torch.randn(3, 20, 64, dtype=dtype, requires_grad=True)
    mask = random_mask(3, 20, torch.Generator().manual_seed(1))
    outs = [m(x, mask) for m in (standard, naive)]
    grads = [torch.autograd.grad(o.square().sum(), x)[0] for o in outs]
    assert rel_err(outs[1], outs[0]) < TOL[dtype]
    assert rel_err(grads[1], grads[0]) < TOL[dtype]


@pytest.mark.parametrize("mode", ["reference", "naive"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_padded_batch_equals_each_sequence_alone(mode, causal):
    torch.manual_seed(0)
    m = SoftmaxAttention(32, 4, mode=mode, causal=causal).double()
    lengths = [9, 4, 1]
    x = torch.randn(3, 9, 32, dtype=torch.float64)
    mask = torch.arange(9)[None, :] < torch.tensor(lengths)[:, None]
    out = m(x, mask)
    for i, n in enumerate(lengths):
        alone = m(x[i:i + 1, :n])
        assert torch.allclose(out[i, :n], alone[0], atol=1e-12)
        assert (out[i, n:] == 0).all()


def test_fully_padded_sample_gives_zeros_and_finite_gradients():
    torch.manual_seed(0)
    m = SoftmaxAttention(16, 2)
    x = torch.randn(2, 5, 16, requires_grad=True)
    mask = torch.tensor([[True] * 5, [False] * 5])
    out = m(x, mask)
    assert (out[1] == 0).all() and torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters()) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_attention_matrix_reproduces_forward(causal):
    torch.manual_seed(0)
    m = SoftmaxAttention(32, 4, causal=causal).double()
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    mask = torch.arange(11)[None, :] < torch.tensor([11, 6])[:, None]
    a = m.attention_matrix(x, mask)
    assert a.shape == (2, 4, 11, 11)
    v = m.v_proj(x).view(2, 11, 4, 8).transpose(1, 2)
    rebuilt = m.out_proj((a @ v).transpose(1, 2).reshape(2, 11, 32))
    out = m(x, mask)
    assert torch.allclose(rebuilt[mask], out[mask], atol=1e-12)
    assert torch.allclose(a.sum(-1)[0], torch.ones(4, 11, dtype=torch.float64))
    assert (a[1, :, 6:] == 0).all() and (a[1, :, :, 6:] == 0).all()
    if causal:
        assert (a.triu(1) == 0).all()


def test_causal_output_ignores_the_future():
    torch.manual_seed(0)
    m = SoftmaxAttention(16, 2, causal=True).double()
    x = torch.randn(1, 10, 16, dtype=torch.float64)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, 16, dtype=torch.float64)
    assert torch.allclose(m(x)[:, :6], m(y)[:, :6], atol=1e-12)
    assert not torch.allclose(m(x)[:, 6:], m(y)[:, 6:])


def test_parameter_layout_matches_the_public_code():
    m = SoftmaxAttention(1024, 4)
    assert m.head_dim == 256
    assert m.q_proj.bias is None and m.k_proj.bias is None and m.v_proj.bias is None
    assert m.out_proj.bias is not None
    assert sum(p.numel() for p in m.parameters()) == 4 * 1024 * 1024 + 1024


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="divisible"):
        SoftmaxAttention(30, 4)
    with pytest.raises(ValueError, match="mode"):
        SoftmaxAttention(32, 4, mode="flash")
    with pytest.raises(RuntimeError, match="CUDA"):
        SoftmaxAttention(32, 4, mode="fused")(torch.randn(1, 3, 32))
    with pytest.raises(ValueError, match="mask"):
        SoftmaxAttention(32, 4)(torch.randn(2, 3, 32), torch.ones(2, 4, dtype=torch.bool))
