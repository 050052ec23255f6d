"""Key-sparse attention against a brute-force definition; the reference and memory-linear modes agree; padding and
errors."""

import math

import pytest
import torch

from sercore.attention.keysparse import (KeySparseAttention, keep_counts, materialized_keysparse,
                                         memory_linear_keysparse)


def brute_force(q, k, v, query_mask, key_mask, keep_rate, renormalize=False, k_from="padded",
                padded_queries_vote=True):
    """The definition, one (sample, head) at a time. Returns (output, weights, kept-key index sets)."""
    b, h, t, d = q.shape
    s = k.shape[2]
    out = torch.zeros(b, h, t, d, dtype=q.dtype)
    weights = torch.zeros(b, h, t, s, dtype=q.dtype)
    kept_sets = {}
    for i in range(b):
        real_keys = [j for j in range(s) if key_mask[i, j]]
        voters = [r for r in range(t) if padded_queries_vote or query_mask[i, r]]
        length = s if k_from == "padded" else len(real_keys)
        n_keep = int(length * keep_rate)
        for head in range(h):
            p = torch.zeros(t, s, dtype=q.dtype)
            for r in range(t):
                logits = torch.stack([q[i, head, r] @ k[i, head, j] / math.sqrt(d) for j in real_keys])
                p[r, real_keys] = torch.softmax(logits, dim=0)
            importance = [sum(p[r, j] for r in voters) for j in range(s)]
            threshold = sorted(importance, reverse=True)[n_keep - 1]
            kept = [j for j in range(s) if importance[j] >= threshold]
            kept_sets[i, head] = set(kept)
            w = torch.zeros(t, s, dtype=q.dtype)
            w[:, kept] = p[:, kept]
            if renormalize:
                w = w / w.sum(1, keepdim=True)
            weights[i, head] = w
            out[i, head] = w @ v[i, head]
    return out, weights, kept_sets


def inputs(b, t, s, h, d, dtype=torch.float64, seed=0, padded=True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t, d, generator=g, dtype=dtype)
    k = torch.randn(b, h, s, d, generator=g, dtype=dtype)
    v = torch.randn(b, h, s, d, generator=g, dtype=dtype)
    if padded:
        q_len = torch.randint(1, t + 1, (b,), generator=g)
        k_len = torch.randint(max(1, s // 2), s + 1, (b,), generator=g)
        q_len[0], k_len[0] = t, s
    else:
        q_len, k_len = torch.full((b,), t), torch.full((b,), s)
    return q, k, v, torch.arange(t)[None] < q_len[:, None], torch.arange(s)[None] < k_len[:, None]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()


SETTINGS = [dict(), dict(renormalize=True), dict(k_from="real"), dict(padded_queries_vote=False),
            dict(renormalize=True, k_from="real", padded_queries_vote=False)]
SETTING_IDS = ["code-defaults", "renorm", "k-real", "real-voters", "all-paper-free"]


@pytest.mark.parametrize("settings", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("keep_rate", [0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_both_formulations_match_brute_force(keep_rate, settings):
    q, k, v, qm, km = inputs(2, 12, 20, 2, 4, seed=int(keep_rate * 10))
    want, want_w, _ = brute_force(q, k, v, qm, km, keep_rate, **settings)
    counts = keep_counts(km, keep_rate, settings.get("k_from", "padded"))
    flags = dict(renormalize=settings.get("renormalize", False),
                 padded_queries_vote=settings.get("padded_queries_vote", True))
    got, got_w = materialized_keysparse(q, k, v, qm, km, counts, **flags)
    lin = memory_linear_keysparse(q, k, v, qm, km, counts, block_size=5, **flags)
    assert torch.allclose(got_w, want_w, atol=1e-12)
    assert torch.allclose(got, want, atol=1e-12)
    assert torch.allclose(lin, want, atol=1e-12)


def test_exact_ties_at_the_threshold_are_all_kept():
    q, k, v, qm, km = inputs(1, 6, 10, 1, 4, padded=False, seed=3)
    k[0, 0, 7] = k[0, 0, 2]  # keys 2 and 7 are identical: their importances tie exactly
    p = torch.softmax(q[0, 0] @ k[0, 0].T / 2.0, dim=-1)
    importance = p.sum(0)
    rank = int((importance > importance[2]).sum())  # keys strictly more important than the tied pair
    keep_rate = (rank + 1) / 10  # k lands on the first of the pair
    want, _, kept = brute_force(q, k, v, qm, km, keep_rate)
    assert {2, 7} <= kept[0, 0] and len(kept[0, 0]) == rank + 2
    counts = keep_counts(km, keep_rate, "padded")
    assert int(counts) == rank + 1
    got, w = materialized_keysparse(q, k, v, qm, km, counts)
    assert int((w[0, 0].sum(0) > 0).sum()) == rank + 2
    assert torch.allclose(got, want, atol=1e-12)
    assert torch.allclose(memory_linear_keysparse(q, k, v, qm, km, counts, block_size=4), want, atol=1e-12)


def test_uniform_weights_tie_every_key_so_all_survive():
    q, k, v, qm, km = inputs(1, 5, 8, 2, 4, padded=False)
    q.zero_()  # every row is uniform: all importances equal
    counts = keep_counts(km, 0.25, "padded")  # k = 2 of 8
    _, w = materialized_keysparse(q, k, v, qm, km, counts)
    assert (w > 0).all() and torch.allclose(w, torch.full_like(w, 1 / 8))


def test_unrenormalised_rows_lose_the_dropped_mass():
    q, k, v, qm, km = inputs(2, 8, 16, 2, 4, padded=False)
    counts = keep_counts(km, 0.25, "padded")
    _, w = materialized_keysparse(q, k, v, qm, km, counts)
    assert (w.sum(-1) < 1).all() and ((w > 0).sum(-1) >= 4).all()
    _, w_renorm = materialized_keysparse(q, k, v, qm, km, counts, renormalize=True)
    assert torch.allclose(w_renorm.sum(-1), torch.ones(2, 2, 8, dtype=torch.float64))
    assert torch.equal(w > 0, w_renorm > 0)


SHAPES = [(1, 16, 16, 1, 8), (2, 64, 64, 4, 32), (3, 50, 23, 2, 16)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("renormalize", [False, True], ids=["raw", "renorm"])
@pytest.mark.parametrize("b,t,s,h,d", SHAPES, ids=[f"B{b}-T{t}-S{s}-H{h}-D{d}" for b, t, s, h, d in SHAPES])
def test_memory_linear_equals_materialized_forward_and_gradients(b, t, s, h, d, renormalize, dtype):
    q, k, v, qm, km = inputs(b, t, s, h, d, dtype=dtype, seed=b + t)
    for x in (q, k, v):
        x.requires_grad_(True)
    counts = keep_counts(km, 0.5, "padded")
    do = torch.randn(b, h, t, d, dtype=dtype, generator=torch.Generator().manual_seed(9))
    results = []
    for fn in (lambda: materialized_keysparse(q, k, v, qm, km, counts, renormalize)[0],
               lambda: memory_linear_keysparse(q, k, v, qm, km, counts, renormalize, block_size=7)):
        o = fn()
        results.append((o, *torch.autograd.grad((o * do).sum(), (q, k, v))))
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    for got, want in zip(results[1], results[0]):
        assert rel_err(got, want) < tol


def test_k_zero_is_a_clear_error():
    with pytest.raises(ValueError, match=r"keep_rate=0.1 with key length L=9 .* k = int\(L \* keep_rate\) = 0"):
        keep_counts(torch.ones(2, 9, dtype=torch.bool), 0.1, "padded")
    m = KeySparseAttention(16, 2, keep_rate=0.2, k_from="real")
    mask = torch.arange(10)[None] < torch.tensor([10, 4])[:, None]
    with pytest.raises(ValueError, match=r"keep_rate=0.2 with key length L=4 \(k_from='real', sample 1\)"):
        m(torch.randn(2, 10, 16), mask)


def test_module_modes_agree_and_match_attention_matrix():
    torch.manual_seed(0)
    mat = KeySparseAttention(32, 4, keep_rate=0.4, mode="reference").double()
    lin = KeySparseAttention(32, 4, keep_rate=0.4, mode="memory-linear", block_size=6).double()
    lin.load_state_dict(mat.state_dict())
    x = torch.randn(2, 15, 32, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(15)[None] < torch.tensor([15, 9])[:, None]
    outs = [m(x, mask) for m in (mat, lin)]
    grads = [torch.autograd.grad(o.square().sum(), x)[0] for o in outs]
    assert torch.allclose(outs[0], outs[1], atol=1e-12) and torch.allclose(grads[0], grads[1], atol=1e-12)
    assert (outs[0][1, 9:] == 0).all()
    a = mat.attention_matrix(x, mask)
    v = mat.v_proj(x).view(2, 15, 4, 8).transpose(1, 2)
    rebuilt = mat.out_proj((a @ v).transpose(1, 2).reshape(2, 15, 32))
    assert torch.allclose(rebuilt[mask], outs[0][mask], atol=1e-12)
    assert ((a > 0).any(2).sum(-1) >= 6).all()  # k = int(15 * 0.4) keys per head at least


def test_cross_attention_shapes_masks_and_k_from_the_context_length():
    torch.manual_seed(0)
    m = KeySparseAttention(32, 4, keep_rate=0.5, context_dim=24).double()
    x, ctx = torch.randn(2, 7, 32, dtype=torch.float64), torch.randn(2, 12, 24, dtype=torch.float64)
    mask = torch.arange(7)[None] < torch.tensor([7, 5])[:, None]
    ctx_mask = torch.arange(12)[None] < torch.tensor([12, 8])[:, None]
    out = m(x, mask, context=ctx, context_mask=ctx_mask)
    assert out.shape == (2, 7, 32) and (out[1, 5:] == 0).all()
    a = m.attention_matrix(x, mask, context=ctx, context_mask=ctx_mask)
    assert a.shape == (2, 4, 7, 12)
    assert (a[1, :, :, 8:] == 0).all()  # padded context keys get no weight
    assert ((a[0] > 0).any(1).sum(-1) >= 6).all()  # k = int(12 * 0.5)
    # The context really drives keys and values: changing a kept context token changes the output.
    ctx2 = ctx.clone()
    ctx2[0, :] += 1.0
    assert not torch.allclose(m(x, mask, context=ctx2, context_mask=ctx_mask)[0], out[0])
    with pytest.raises(ValueError, match="context_dim"):
        m(x, mask)
    with pytest.raises(ValueError, match="no real key"):
        m(x, mask, context=ctx, context_mask=torch.zeros(2, 12, dtype=torch.bool))


@pytest.mark.parametrize("mode", ["reference", "memory-linear"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_padded_batch_equals_each_sequence_alone_with_real_k(cross, mode):
    torch.manual_seed(0)
    m = KeySparseAttention(16, 2, keep_rate=0.5, context_dim=16, k_from="real", padded_queries_vote=False,
                           mode=mode, block_size=4).double()
    lengths, ctx_lengths = [10, 6, 3], [9, 4, 9]
    x = torch.randn(3, 10, 16, dtype=torch.float64)
    ctx = torch.randn(3, 9, 16, dtype=torch.float64)
    mask = torch.arange(10)[None] < torch.tensor(lengths)[:, None]
    ctx_mask = torch.arange(9)[None] < torch.tensor(ctx_lengths)[:, None]
    out = m(x, mask, ctx, ctx_mask) if cross else m(x, mask)
    for i, (n, c) in enumerate(zip(lengths, ctx_lengths)):
        alone = m(x[i:i + 1, :n], None, ctx[i:i + 1, :c]) if cross else m(x[i:i + 1, :n])
        assert torch.allclose(out[i, :n], alone[0], atol=1e-12)


def test_code_defaults_are_not_padding_invariant_as_documented():
    torch.manual_seed(0)
    m = KeySparseAttention(16, 2, keep_rate=0.5).double()
    x = torch.randn(2, 20, 16, dtype=torch.float64)
    mask = torch.arange(20)[None] < torch.tensor([20, 10])[:, None]
    # Padded: k = 10 keeps all 10 real keys of sample 1; alone: k = 5.
    assert (m.attention_matrix(x, mask)[1, :, :10, :10] > 0).all()
    assert not torch.allclose(m(x, mask)[1, :10], m(x[1:, :10])[0])


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    m = KeySparseAttention(16, 2, dropout=0.5)
    x = torch.randn(1, 8, 16)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    assert not torch.allclose(m(x), m(x))


def test_bad_arguments_fail_clearly():
    for kwargs, match in [(dict(keep_rate=0.0), "keep_rate"), (dict(keep_rate=1.5), "keep_rate"),
                          (dict(k_from="true"), "k_from"), (dict(mode="flash"), "mode"),
                          (dict(block_size=0), "block_size")]:
        with pytest.raises(ValueError, match=match):
            KeySparseAttention(16, 2, **kwargs)
    with pytest.raises(RuntimeError, match="CUDA"):
        KeySparseAttention(16, 2, mode="fused")(torch.randn(1, 4, 16))
