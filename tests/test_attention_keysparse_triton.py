"""The Triton key-sparse kernels (mode="fused") against the materialized reference, fp32.

Runs where triton is importable and either CUDA is available or TRITON_INTERPRET=1 (the kernels then run on
the CPU in Triton's interpreter; shapes stay small, T <= 64, because it is slow):
    TRITON_INTERPRET=1 python -m pytest -q tests/test_attention_keysparse_triton.py
Elsewhere (CI: no triton) those tests skip; the error-path tests at the end run everywhere."""

import importlib.util
import os
import sys

import pytest
import torch

from sercore.attention.keysparse import KeySparseAttention, keep_counts, materialized_keysparse
from sercore.attention.keysparse_parts import top_k_keys

HAVE_TRITON = importlib.util.find_spec("triton") is not None
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() and not INTERPRETING else "cpu"
needs_kernels = pytest.mark.skipif(
    not (HAVE_TRITON and (torch.cuda.is_available() or INTERPRETING)),
    reason="needs triton and either CUDA or TRITON_INTERPRET=1 (Triton's CPU interpreter)")

# (b, t, s, h, d): head dims 12 and 72 are not powers of two (masked lanes); d=72 gives 32-row blocks, so
# T=50 spans two query blocks and S=70 three key blocks; S=80 > 64 spans two key blocks at d <= 64.
SHAPES = [(2, 12, 20, 2, 4), (3, 50, 23, 2, 12), (2, 37, 80, 2, 16), (2, 50, 70, 1, 72)]
SHAPE_IDS = [f"B{b}-T{t}-S{s}-H{h}-D{d}" for b, t, s, h, d in SHAPES]
SETTINGS = [dict(), dict(renormalize=True), dict(k_from="real"), dict(padded_queries_vote=False),
            dict(renormalize=True, k_from="real", padded_queries_vote=False)]
SETTING_IDS = ["code-defaults", "renorm", "k-real", "real-voters", "all-paper-free"]


def inputs(b, t, s, h, d, seed=0, dtype=torch.float32):
    """q, k, v and padding masks; sample 0 unpadded, the others padded in queries and keys."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=g, dtype=dtype) for n in (t, s, s))
    q_len = torch.randint(1, t + 1, (b,), generator=g)
    k_len = torch.randint(max(1, s // 2), s + 1, (b,), generator=g)
    q_len[0], k_len[0] = t, s
    masks = torch.arange(t)[None] < q_len[:, None], torch.arange(s)[None] < k_len[:, None]
    return [x.to(DEVICE) for x in (q, k, v, *masks)]


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1.0)).item()


def output_and_grads(fn, q, k, v, seed=9):
    leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v)]
    out = fn(*leaves)
    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.device, out.dtype)
    return (out, *torch.autograd.grad((out * do).sum(), leaves))


def reference_importance(q, k, query_mask, key_mask, padded_queries_vote):
    """fp64 row LSE and column importances from the materialised scores."""
    q, k = q.double(), k.double()
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    lse = scores.logsumexp(-1)
    weights = (scores - lse[..., None]).exp()
    if not padded_queries_vote:
        weights = weights * query_mask[:, None, :, None]
    return lse, weights.sum(-2)


@needs_kernels
@pytest.mark.parametrize("vote", [True, False], ids=["padded-vote", "real-vote"])
@pytest.mark.parametrize("b,t,s,h,d", SHAPES, ids=SHAPE_IDS)
def test_passes_one_and_two_give_the_row_lse_and_key_importances(b, t, s, h, d, vote):
    from sercore.attention.keysparse_triton import importance
    q, k, _, qm, km = inputs(b, t, s, h, d, seed=t + s)
    lse, scores = importance(q, k, qm, km, vote)
    want_lse, want_scores = reference_importance(q, k, qm, km, vote)
    assert lse.dtype == scores.dtype == torch.float32
    assert rel_err(lse, want_lse) < 1e-5
    assert rel_err(scores, want_scores) < 1e-5
    assert (scores[~km[:, None, :].expand_as(scores)] == 0).all()  # padded keys get no importance
    # Every voting query spreads a mass of 1 over the keys.
    voters = torch.full_like(qm, True) if vote else qm
    assert torch.allclose(scores.sum(-1), voters.sum(1, keepdim=True).float().expand(b, h), rtol=1e-5)


@needs_kernels
@pytest.mark.parametrize("settings", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("keep_rate", [0.1, 0.3, 0.5, 0.9, 1.0])
def test_kept_keys_outputs_and_gradients_match_the_materialized_reference(keep_rate, settings):
    from sercore.attention.keysparse_triton import keysparse_triton, select_keys
    b, t, s, h, d = SHAPES[int(keep_rate * 10) % len(SHAPES)]
    q, k, v, qm, km = inputs(b, t, s, h, d, seed=int(keep_rate * 10))
    counts = keep_counts(km, keep_rate, settings.get("k_from", "padded"))
    flags = dict(renormalize=settings.get("renormalize", False),
                 padded_queries_vote=settings.get("padded_queries_vote", True))
    kept, _ = select_keys(q, k, qm, km, counts, flags["padded_queries_vote"])
    want_kept = top_k_keys(reference_importance(q, k, qm, km, flags["padded_queries_vote"])[1], counts)
    assert torch.equal(kept, want_kept)
    assert (kept.sum(-1) >= counts[:, None]).all()
    got = output_and_grads(lambda *a: keysparse_triton(*a, qm, km, counts, block_size=16, **flags), q, k, v)
    want = output_and_grads(lambda *a: materialized_keysparse(*a, qm, km, counts, **flags)[0], q, k, v)
    for name, g, w in zip(("output", "dq", "dk", "dv"), got, want):
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), name
        assert rel_err(g, w) < 2e-5, f"{name}: {rel_err(g, w):.2e}"


@needs_kernels
@pytest.mark.parametrize("renormalize", [False, True], ids=["raw", "renorm"])
@pytest.mark.parametrize("b,t,s,h,d", SHAPES, ids=SHAPE_IDS)
def test_every_shape_matches_the_reference_against_fp64(b, t, s, h, d, renormalize):
    from sercore.attention.keysparse_triton import keysparse_triton
    q, k, v, qm, km = inputs(b, t, s, h, d, seed=b * t)
    counts = keep_counts(km, 0.5, "padded")
    got = output_and_grads(lambda *a: keysparse_triton(*a, qm, km, counts, renormalize, block_size=20), q, k, v)
    want = output_and_grads(lambda *a: materialized_keysparse(*a, qm, km, counts, renormalize)[0],
                            q.double(), k.double(), v.double())
    for name, g, w in zip(("output", "dq", "dk", "dv"), got, want):
        assert rel_err(g, w) < 2e-5, f"{name}: {rel_err(g, w):.2e}"


@needs_kernels
@pytest.mark.parametrize("renormalize", [False, True], ids=["raw", "renorm"])
def test_key_blocks_with_nothing_real_or_kept_before_the_first_that_has_some(renormalize):
    """Any key mask, not only right padding: the first 64-key block is all padding in sample 1, and head 1
    keeps only keys of the last block. The online max starts at -inf there and must not turn into NaN."""
    from sercore.attention.keysparse_triton import importance, kept_attention
    q, k, v, qm, km = inputs(2, 20, 80, 2, 16, seed=5)
    km[1] = torch.arange(80, device=km.device) >= 70
    lse, scores = importance(q, k, qm, km)
    want_lse, want_scores = reference_importance(q, k, qm, km, True)
    assert rel_err(lse, want_lse) < 1e-5 and rel_err(scores, want_scores) < 1e-5
    kept = torch.rand(2, 2, 80, generator=torch.Generator().manual_seed(1)).to(km.device) < 0.3
    kept[:, 1] = torch.arange(80, device=km.device) >= 72
    kept &= km[:, None, :]
    got = kept_attention(q, k, v, kept, lse, renormalize)
    scores_kept = ((q.double() / 4.0) @ k.double().transpose(-1, -2)).masked_fill(~kept[:, :, None], float("-inf"))
    normaliser = scores_kept.logsumexp(-1, keepdim=True) if renormalize else want_lse[..., None]
    want = (scores_kept - normaliser).exp() @ v.double()
    assert torch.isfinite(got).all() and rel_err(got, want) < 1e-5


@needs_kernels
def test_exact_ties_at_the_threshold_are_all_kept():
    from sercore.attention.keysparse_triton import keysparse_triton, select_keys
    q, k, v, qm, km = inputs(1, 6, 10, 1, 4, seed=3)
    k[0, 0, 7] = k[0, 0, 2]  # keys 2 and 7 are identical: their importances tie exactly
    importance = reference_importance(q, k, qm, km, True)[1][0, 0]
    rank = int((importance > importance[2]).sum())
    counts = keep_counts(km, (rank + 1) / 10, "padded")
    assert int(counts) == rank + 1
    kept, _ = select_keys(q, k, qm, km, counts)
    assert kept[0, 0, 2] and kept[0, 0, 7] and int(kept.sum()) == rank + 2
    got = keysparse_triton(q, k, v, qm, km, counts)
    assert rel_err(got, materialized_keysparse(q, k, v, qm, km, counts)[0]) < 2e-6


@needs_kernels
def test_uniform_rows_tie_every_key_so_all_survive():
    from sercore.attention.keysparse_triton import keysparse_triton, select_keys
    q, k, v, qm, km = inputs(1, 5, 8, 2, 4)
    q.zero_()
    qm.fill_(True)
    km.fill_(True)
    counts = keep_counts(km, 0.25, "padded")  # k = 2 of 8
    assert select_keys(q, k, qm, km, counts)[0].all()
    assert rel_err(keysparse_triton(q, k, v, qm, km, counts), v.mean(2, keepdim=True).expand(1, 2, 5, 4)) < 1e-6


@needs_kernels
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_module_fused_mode_matches_reference(cross):
    torch.manual_seed(0)
    reference = KeySparseAttention(32, 4, keep_rate=0.4, context_dim=24 if cross else None,
                                   mode="reference").to(DEVICE)
    triton_form = KeySparseAttention(32, 4, keep_rate=0.4, context_dim=24 if cross else None,
                                     mode="fused", block_size=8).to(DEVICE)
    triton_form.load_state_dict(reference.state_dict())
    x = torch.randn(2, 15, 32, device=DEVICE)
    mask = (torch.arange(15)[None] < torch.tensor([15, 9])[:, None]).to(DEVICE)
    kwargs = {}
    if cross:
        kwargs = dict(context=torch.randn(2, 19, 24, device=DEVICE),
                      context_mask=(torch.arange(19)[None] < torch.tensor([12, 19])[:, None]).to(DEVICE))
    results = []
    for module in (reference, triton_form):
        leaf = x.clone().requires_grad_(True)
        out = module(leaf, mask, **kwargs)
        grads = torch.autograd.grad(out.square().sum(), [leaf, *module.parameters()])
        results.append((out, *grads))
    assert (results[1][0][1, 9:] == 0).all()
    for got, want in zip(*results):
        assert rel_err(got, want) < 2e-5


@needs_kernels
def test_dropout_in_training_is_a_clear_error():
    m = KeySparseAttention(16, 2, mode="fused", dropout=0.1).to(DEVICE)
    with pytest.raises(ValueError, match="no dropout"):
        m(torch.randn(1, 8, 16, device=DEVICE))
    m.eval()
    assert m(torch.randn(1, 8, 16, device=DEVICE)).shape == (1, 8, 16)


# ---------------------------------------------------------------- error paths: run everywhere, triton or not

def test_cpu_input_without_the_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    m = KeySparseAttention(16, 2, mode="fused")
    with pytest.raises(RuntimeError, match="mode='fused' needs a CUDA tensor"):
        m(torch.randn(1, 8, 16))


@pytest.mark.skipif(HAVE_TRITON, reason="checks the error raised when triton is not installed")
def test_missing_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # past the device check, so the import is what fails
    m = KeySparseAttention(16, 2, mode="fused")
    with pytest.raises(ImportError, match="keysparse_triton.py: mode='fused' needs the triton package"):
        m(torch.randn(1, 8, 16))


def test_auto_on_cuda_uses_the_pytorch_memory_linear_form_not_the_kernel(monkeypatch):
    """"auto" must not reach the (GPU-unverified) kernel: with the CUDA decision forced on and the kernel module
    made unimportable, it still runs, and equals mode="memory-linear"."""
    monkeypatch.setitem(sys.modules, "sercore.attention.keysparse_triton", None)  # any import now fails
    monkeypatch.setattr(KeySparseAttention, "_auto_fused", lambda self, x: True)
    torch.manual_seed(0)
    auto = KeySparseAttention(16, 2, block_size=3).double()
    linear = KeySparseAttention(16, 2, mode="memory-linear", block_size=3).double()
    linear.load_state_dict(auto.state_dict())
    x = torch.randn(2, 8, 16, dtype=torch.float64)
    assert torch.equal(auto(x), linear(x))
