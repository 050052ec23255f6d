"""GPU paths held to the PyTorch references: softmax via SDPA, key-sparse via its CUDA (memory-linear) path
and its opt-in Triton kernels (mode="fused"; those tests also need triton, skipped without it).

Forward and gradients, with padding; fp32 within 1e-4 and bf16 within 2e-2 of an fp32 reference built from
the same (bf16-rounded) weights and inputs. Skipped without CUDA (tests/conftest.py). Written and checked on
the CPU (device names swapped) but not yet run on a GPU."""

import copy

import pytest
import torch

from sercore.attention.keysparse import (KeySparseAttention, keep_counts, materialized_keysparse,
                                         memory_linear_keysparse)
from sercore.attention.softmax import SoftmaxAttention

pytestmark = pytest.mark.gpu

TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2}
DTYPES = [torch.float32, torch.bfloat16]
SHAPES = [(2, 256, 4, 64), (3, 1000, 4, 256), (1, 37, 2, 16)]


def rel_err(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1.0)).item()


def lengths_mask(b, t, device):
    lengths = torch.linspace(t, max(1, t // 3), b).long()
    return torch.arange(t, device=device)[None] < lengths.to(device)[:, None]


def run_and_grad(module, x, mask, do, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    out = module(x, mask, **kwargs)
    (out.float() * do).sum().backward()
    return out, x.grad, module.q_proj.weight.grad, module.k_proj.weight.grad


def compare(fused, reference, x, mask, dtype, **kwargs):
    do = torch.randn(x.shape, device=x.device, generator=torch.Generator(x.device).manual_seed(1))
    rounded = {k: v.to(dtype) if v.is_floating_point() else v for k, v in kwargs.items()}
    got = run_and_grad(fused, x.to(dtype), mask, do, **rounded)
    want = run_and_grad(reference, x.to(dtype).float(), mask, do,
                        **{k: v.float() if v.is_floating_point() else v for k, v in rounded.items()})
    for name, g, w in zip(("output", "input grad", "q weight grad", "k weight grad"), got, want):
        assert torch.isfinite(g).all(), name
        assert rel_err(g, w) < TOL[dtype], f"{name}: {rel_err(g, w):.2e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("b,t,h,d", SHAPES, ids=[f"B{b}-T{t}-H{h}-D{d}" for b, t, h, d in SHAPES])
def test_softmax_sdpa_matches_reference(b, t, h, d, padded, causal, dtype):
    torch.manual_seed(0)
    reference = SoftmaxAttention(h * d, h, causal=causal, mode="reference").cuda()
    fused = copy.deepcopy(reference).to(dtype)
    fused.mode = "fused"
    reference.load_state_dict({k: v.to(dtype).float() for k, v in fused.state_dict().items()})
    x = torch.randn(b, t, h * d, device="cuda")
    compare(fused, reference, x, lengths_mask(b, t, "cuda") if padded else None, dtype)


@pytest.mark.parametrize("renormalize", [False, True], ids=["raw", "renorm"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("b,t,h,d", SHAPES, ids=[f"B{b}-T{t}-H{h}-D{d}" for b, t, h, d in SHAPES])
def test_keysparse_module_cuda_path_matches_reference_fp32(b, t, h, d, cross, renormalize):
    torch.manual_seed(0)
    reference = KeySparseAttention(h * d, h, keep_rate=0.5, renormalize=renormalize,
                                   mode="reference").cuda()
    fused = copy.deepcopy(reference)
    fused.mode, fused.block_size = "auto", 128  # on CUDA: the PyTorch memory-linear form
    x = torch.randn(b, t, h * d, device="cuda")
    kwargs = {}
    if cross:
        s = max(8, t // 2 + 3)
        kwargs = dict(context=torch.randn(b, s, h * d, device="cuda"),
                      context_mask=lengths_mask(b, s, "cuda").flip(0))
    compare(fused, reference, x, lengths_mask(b, t, "cuda"), torch.float32, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("renormalize", [False, True], ids=["raw", "renorm"])
@pytest.mark.parametrize("b,t,h,d", SHAPES, ids=[f"B{b}-T{t}-H{h}-D{d}" for b, t, h, d in SHAPES])
def test_keysparse_cuda_core_matches_reference(b, t, h, d, renormalize, dtype):
    """At the core, on the same (rounded) q, k, v: with bf16 projections upstream, the fp32 and bf16 modules see
    different q and k, and a near-tie at the threshold may then keep a different key, which is not an error."""
    g = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(b, h, t, d, device="cuda", generator=g).to(dtype) for _ in range(3))
    mask = lengths_mask(b, t, "cuda")
    counts = keep_counts(mask, 0.5, "padded")
    do = torch.randn(b, h, t, d, device="cuda", generator=g)
    results = []
    for inputs, fn in [((q, k, v), lambda *a: memory_linear_keysparse(*a, mask, mask, counts, renormalize,
                                                                       block_size=128)),
                       ((q.float(), k.float(), v.float()),
                        lambda *a: materialized_keysparse(*a, mask, mask, counts, renormalize)[0])]:
        leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
        o = fn(*leaves)
        results.append((o, *torch.autograd.grad((o.float() * do).sum(), leaves)))
    for name, got, want in zip(("output", "dq", "dk", "dv"), *results):
        assert got.dtype == dtype and torch.isfinite(got).all(), name
        assert rel_err(got, want) < TOL[dtype], f"{name}: {rel_err(got, want):.2e}"


def test_keysparse_cuda_path_matches_the_cpu_reference_in_fp64():
    torch.manual_seed(0)
    cpu = KeySparseAttention(64, 4, keep_rate=0.3, mode="reference").double()
    gpu = copy.deepcopy(cpu).cuda()
    gpu.mode = "auto"  # on CUDA: the PyTorch memory-linear form
    x = torch.randn(2, 300, 64, dtype=torch.float64)
    mask = lengths_mask(2, 300, "cpu")
    assert torch.allclose(gpu(x.cuda(), mask.cuda()).cpu(), cpu(x, mask), atol=1e-10)


def _triton_or_skip():
    pytest.importorskip("triton", reason="mode='fused' needs the triton package")


@pytest.mark.parametrize("renormalize", [False, True], ids=["raw", "renorm"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("b,t,h,d", SHAPES, ids=[f"B{b}-T{t}-H{h}-D{d}" for b, t, h, d in SHAPES])
def test_keysparse_module_triton_matches_reference_fp32(b, t, h, d, cross, renormalize):
    _triton_or_skip()
    torch.manual_seed(0)
    reference = KeySparseAttention(h * d, h, keep_rate=0.5, renormalize=renormalize,
                                   mode="reference").cuda()
    kernel = copy.deepcopy(reference)
    kernel.mode, kernel.block_size = "fused", 128
    x = torch.randn(b, t, h * d, device="cuda")
    kwargs = {}
    if cross:
        s = max(8, t // 2 + 3)
        kwargs = dict(context=torch.randn(b, s, h * d, device="cuda"),
                      context_mask=lengths_mask(b, s, "cuda").flip(0))
    compare(kernel, reference, x, lengths_mask(b, t, "cuda"), torch.float32, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("vote", [True, False], ids=["padded-vote", "real-vote"])
@pytest.mark.parametrize("renormalize", [False, True], ids=["raw", "renorm"])
@pytest.mark.parametrize("b,t,h,d", SHAPES, ids=[f"B{b}-T{t}-H{h}-D{d}" for b, t, h, d in SHAPES])
def test_keysparse_triton_core_matches_reference(b, t, h, d, renormalize, vote, dtype):
    """Kept keys, output and gradients of the kernels on the same (rounded) q, k, v as an fp32 reference."""
    _triton_or_skip()
    from sercore.attention.keysparse_parts import top_k_keys
    from sercore.attention.keysparse_triton import keysparse_triton, select_keys
    g = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(b, h, t, d, device="cuda", generator=g).to(dtype) for _ in range(3))
    mask = lengths_mask(b, t, "cuda")
    counts = keep_counts(mask, 0.3, "padded")
    kept, _ = select_keys(q, k, mask, mask, counts, vote)
    scores = ((q.float() * d ** -0.5) @ k.float().transpose(-1, -2)).masked_fill(~mask[:, None, None], -torch.inf)
    voters = scores.softmax(-1) if vote else scores.softmax(-1) * mask[:, None, :, None]
    want_kept = top_k_keys(voters.sum(-2), counts)
    assert torch.equal(kept, want_kept), f"{int((kept != want_kept).sum())} kept-key flags differ"
    do = torch.randn(b, h, t, d, device="cuda", generator=g)
    results = []
    for inputs, fn in [((q, k, v), lambda *a: keysparse_triton(*a, mask, mask, counts, renormalize, vote,
                                                                block_size=128)),
                       ((q.float(), k.float(), v.float()),
                        lambda *a: materialized_keysparse(*a, mask, mask, counts, renormalize, vote)[0])]:
        leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
        o = fn(*leaves)
        results.append((o, *torch.autograd.grad((o.float() * do).sum(), leaves)))
    for name, got, want in zip(("output", "dq", "dk", "dv"), *results):
        assert got.dtype == dtype and torch.isfinite(got).all(), name
        assert rel_err(got, want) < TOL[dtype], f"{name}: {rel_err(got, want):.2e}"
