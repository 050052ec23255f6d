"""The fast CPU forms of LightNet, KDA and GSA (factorised, batched over chunks) against their one-chunk-at-a-time
specifications, and the overflow guards that hand extreme inputs back to the specification (LightNet's running
logsumexp back to torch.logcumsumexp)."""

import pytest
import torch

from sercore.attention import gsa, kda, lightnet

F64 = torch.float64


def lightnet_inputs(B, T, H, K, V, key_scale=1.0, dtype=F64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.silu(torch.randn(B, T, H, K, dtype=dtype, generator=gen))
    k = key_scale * torch.randn(B, T, H, K, dtype=dtype, generator=gen)
    return q, k, torch.randn(B, T, H, V, dtype=dtype, generator=gen)


def kda_inputs(B, T, H, K, V, decay=1.0, dtype=F64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    unit = lambda *shape: torch.nn.functional.normalize(torch.randn(*shape, dtype=dtype, generator=gen), dim=-1)
    q, k = unit(B, T, H, K), unit(B, T, H, K)
    v = torch.randn(B, T, H, V, dtype=dtype, generator=gen)
    g = -decay * torch.rand(B, T, H, K, dtype=dtype, generator=gen)
    return q, k, v, g, torch.rand(B, T, H, dtype=dtype, generator=gen)


def gsa_inputs(B, T, H, K, V, M, gate_scale=3.0, dtype=F64, seed=0):
    """The layer's streams: feature-mapped q, k; silu v; g = logsigmoid(f) / 8 and s = 1 - exp(g)."""
    gen = torch.Generator().manual_seed(seed)
    silu = torch.nn.functional.silu
    q, k = (silu(torch.randn(B, T, H, K, dtype=dtype, generator=gen)) for _ in range(2))
    v = silu(torch.randn(B, T, H, V, dtype=dtype, generator=gen))
    g = torch.nn.functional.logsigmoid(gate_scale * torch.randn(B, T, H, M, dtype=dtype, generator=gen)) / 8
    return q, k, v, 1 - g.exp(), g


def value_and_grads(fn, inputs):
    leaves = [x.clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    weights = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(9))
    return [out.detach(), *torch.autograd.grad((out * weights).sum(), leaves)]


def rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


# (B, T, chunk): T below, at and across chunk boundaries, with padding in the last chunk
SHAPES = [(2, 37, 16), (1, 64, 32), (2, 50, 8), (1, 5, 64), (1, 33, 1)]


@pytest.mark.parametrize("B,T,C", SHAPES)
def test_lightnet_fast_form_equals_the_loop(B, T, C):
    inputs = lightnet_inputs(B, T, 3, 8, 5, key_scale=3.0)
    fast = value_and_grads(lambda *x: lightnet.lightnet_parallel(*x, C), inputs)
    spec = value_and_grads(lambda *x: lightnet.lightnet_parallel_loop(*x, C), inputs)
    for name, a, b in zip(["o", "q", "k", "v"], fast, spec):
        assert rel(a, b) < 1e-12, name


@pytest.mark.parametrize("B,T,C", SHAPES)
def test_kda_fast_form_equals_the_loop(B, T, C):
    inputs = kda_inputs(B, T, 2, 8, 6, decay=2.0)
    fast = value_and_grads(lambda *x: kda.kda_chunked(*x, 0.35, C), inputs)
    spec = value_and_grads(lambda *x: kda.kda_chunked_loop(*x, 0.35, C), inputs)
    for name, a, b in zip(["o", "q", "k", "v", "g", "beta"], fast, spec):
        assert rel(a, b) < 1e-12, name


@pytest.mark.parametrize("B,T,C", SHAPES)
def test_gsa_fast_form_equals_the_loop(B, T, C):
    inputs = gsa_inputs(B, T, 2, 8, 6, 5, gate_scale=6.0)
    fast = value_and_grads(lambda *x: gsa.gsa_chunked(*x, 0.7, C), inputs)
    spec = value_and_grads(lambda *x: gsa.gsa_chunked_loop(*x, 0.7, C), inputs)
    for name, a, b in zip(["o", "q", "k", "v", "s", "g"], fast, spec):
        assert rel(a, b) < 1e-12, name


def test_lightnet_guard_hands_huge_keys_to_the_loop(monkeypatch):
    """Keys of scale 60 make the running logsumexp jump by more than 60 inside a chunk: exp(k - z_p) would
    overflow float32, so the fast form must give the loop's numbers, which stay finite."""
    q, k, v = lightnet_inputs(1, 48, 2, 16, 8, key_scale=60.0, dtype=torch.float32, seed=4)
    guarded = lightnet.lightnet_parallel(q, k, v, 32)
    assert torch.isfinite(guarded).all()
    assert torch.equal(guarded, lightnet.lightnet_parallel_loop(q, k, v, 16))
    monkeypatch.setitem(lightnet.FACTOR_LIMIT, torch.float32, float("inf"))
    assert not torch.isfinite(lightnet.lightnet_parallel(q, k, v, 32)).all(), "the guard protects nothing here"


def test_kda_guard_hands_strong_decay_to_the_loop(monkeypatch):
    """Decays of up to e^-60 per step make exp(-G) overflow float32 within a chunk."""
    inputs = kda_inputs(1, 48, 2, 8, 8, decay=60.0, dtype=torch.float32, seed=3)
    guarded = kda.kda_chunked(*inputs, 0.35, 32)
    assert torch.isfinite(guarded).all()
    assert torch.equal(guarded, kda.kda_chunked_loop(*inputs, 0.35, 16))
    monkeypatch.setitem(kda.FACTOR_LIMIT, torch.float32, float("inf"))
    assert not torch.isfinite(kda.kda_chunked(*inputs, 0.35, 32)).all(), "the guard protects nothing here"


def test_gsa_guard_hands_strong_forgetting_to_the_loop(monkeypatch):
    """Gates logsigmoid(-400 x) / 8 forget by up to e^-50 per step: exp(-G) overflows float32 within a chunk."""
    inputs = gsa_inputs(1, 48, 2, 8, 8, 8, gate_scale=400.0, dtype=torch.float32, seed=3)
    guarded = gsa.gsa_chunked(*inputs, 1.0, 32)
    assert torch.isfinite(guarded).all()
    assert torch.equal(guarded, gsa.gsa_chunked_loop(*inputs, 1.0, 16))
    monkeypatch.setitem(gsa.FACTOR_LIMIT, torch.float32, float("inf"))
    assert not torch.isfinite(gsa.gsa_chunked(*inputs, 1.0, 32)).all(), "the guard protects nothing here"


def test_fast_forms_stay_fast_on_ordinary_inputs(monkeypatch):
    """Ordinary inputs (unit keys, the layers' initial decays) must not fall back to the slow loop."""
    def refuse(*args, **kwargs):
        raise AssertionError("fell back to the loop")

    monkeypatch.setattr(lightnet, "lightnet_parallel_loop", refuse)
    monkeypatch.setattr(kda, "kda_chunked_loop", refuse)
    monkeypatch.setattr(gsa, "gsa_chunked_loop", refuse)
    monkeypatch.setattr(torch, "logcumsumexp", refuse)  # running_logsumexp's fallback
    lightnet.lightnet_parallel(*lightnet_inputs(2, 100, 2, 16, 8, dtype=torch.float32), 32)
    kda.kda_chunked(*kda_inputs(2, 100, 2, 16, 8, decay=0.5, dtype=torch.float32), 0.25, 16)
    gsa.gsa_chunked(*gsa_inputs(2, 100, 2, 16, 8, 16, dtype=torch.float32), 1.0, 16)


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-13), (torch.float32, 1e-5)])
def test_running_logsumexp_equals_torch(dtype, tol):
    """LightNet's running logsumexp (shift by the channel maximum, then a cumsum) against torch.logcumsumexp:
    values and gradients, keys spread by ~40 within a channel."""
    k = 10.0 * torch.randn(2, 3, 70, 8, dtype=F64, generator=torch.Generator().manual_seed(5))
    fast = value_and_grads(lambda x: lightnet.running_logsumexp(x, 2), [k.to(dtype)])
    torch_scan = value_and_grads(lambda x: torch.logcumsumexp(x, 2), [k.to(dtype)])
    for name, a, b in zip(["z", "k"], fast, torch_scan):
        assert rel(a, b) < tol, name


def test_running_logsumexp_guard_hands_wide_keys_to_torch(monkeypatch):
    """A channel whose keys spread by 200 would underflow exp(k - max) in float32 (log 0 = -inf at the start):
    the guard runs torch's scan instead, which stays finite."""
    k = torch.linspace(-100.0, 100.0, 50).reshape(1, 1, 50, 1)
    assert torch.equal(lightnet.running_logsumexp(k, 2), torch.logcumsumexp(k, 2))
    monkeypatch.setitem(lightnet.SPREAD_LIMIT, torch.float32, float("inf"))
    assert not torch.isfinite(lightnet.running_logsumexp(k, 2)).all(), "the guard protects nothing here"


def test_kda_state_scan_backward_is_the_gradient():
    """kda_chunked's hand-written backward of the chunk recursion (_StateScan) against finite differences."""
    gen = torch.Generator().manual_seed(7)
    B, H, n, C, K, V = 1, 2, 3, 4, 3, 2
    Q, Wk, Kd = (0.5 * torch.randn(B, H, n, C, K, dtype=F64, generator=gen) for _ in range(3))
    U = torch.randn(B, H, n, C, V, dtype=F64, generator=gen)
    a = -torch.rand(B, H, n, K, dtype=F64, generator=gen)
    inputs = [x.requires_grad_() for x in (Q, U, Wk, Kd, a)]
    assert torch.autograd.gradcheck(kda._StateScan.apply, inputs)


def test_kda_guard_retries_at_16_before_the_loop(monkeypatch):
    """Decays of ~3.5 per step: a chunk of 32 decays by ~112 (exp overflows float32), one of 16 by < 60. The
    call at 32 must give the numbers of the call at 16, without the loop."""
    q, k, v, _, beta = kda_inputs(2, 70, 2, 8, 8, dtype=torch.float32, seed=5)
    g = -3.4 - 0.1 * torch.rand(q.shape, generator=torch.Generator().manual_seed(6))
    at16 = kda.kda_chunked(q, k, v, g, beta, 0.35, 16)
    monkeypatch.setattr(kda, "kda_chunked_loop", lambda *a, **kw: pytest.fail("fell back to the loop"))
    retried = kda.kda_chunked(q, k, v, g, beta, 0.35, 32)
    assert torch.isfinite(retried).all()
    assert torch.equal(retried, at16)
    monkeypatch.setitem(kda.FACTOR_LIMIT, torch.float32, float("inf"))
    assert not torch.isfinite(kda.kda_chunked(q, k, v, g, beta, 0.35, 32)).all(), "the guard protects nothing here"


def test_kda_layer_runs_its_default_chunk_on_initial_decays(monkeypatch):
    """fla's initial decays (rates up to 16) stay within the guard at the layer's default chunk of 32: no retry."""
    from sercore.attention import build

    sizes = []
    chunked = kda.kda_chunked
    monkeypatch.setattr(kda, "kda_chunked", lambda *a: sizes.append(a[-1]) or chunked(*a))
    torch.manual_seed(0)
    m = build("kda", 128, 4)
    with torch.no_grad():
        m(torch.randn(4, 300, 128))
    assert m.chunk_size == 32 and sizes == [32]
