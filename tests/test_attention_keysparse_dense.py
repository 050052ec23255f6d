"""Key-sparse mode "dense" (sercore.attention.keysparse_dense) against the published form, mode "reference":
values and gradients in float64 with padding, self- and cross-attention, keep_rate 1 and below, one chunk or
many; and its attention-weight dropout: the same drop rate and scaling, and the gradient of the draw it made."""

import pytest
import torch

from sercore.attention.keysparse import KeySparseAttention, keep_counts, materialized_keysparse
from sercore.attention.keysparse_dense import dense_keysparse
from test_attention_keysparse import SETTING_IDS, SETTINGS, inputs


def with_grads(fn, q, k, v, seed=9):
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    o = fn(q, k, v)
    do = torch.randn(o.shape, dtype=o.dtype, generator=torch.Generator().manual_seed(seed))
    return (o, *torch.autograd.grad((o * do).sum(), (q, k, v)))


SHAPES = [(3, 24, 24, 2, 4), (3, 17, 9, 2, 8), (2, 6, 30, 3, 4)]  # self-attention, then cross (T != S)


@pytest.mark.parametrize("chunk_weights", [1, 1 << 20], ids=["row-chunks", "one-chunk"])
@pytest.mark.parametrize("settings", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("keep_rate", [0.3, 0.5, 1.0])
@pytest.mark.parametrize("b,t,s,h,d", SHAPES, ids=[f"B{b}-T{t}-S{s}-H{h}-D{d}" for b, t, s, h, d in SHAPES])
def test_dense_equals_reference_values_and_gradients(b, t, s, h, d, keep_rate, settings, chunk_weights):
    q, k, v, qm, km = inputs(b, t, s, h, d, seed=t + s)
    counts = keep_counts(km, keep_rate, settings.get("k_from", "padded"))
    flags = dict(renormalize=settings.get("renormalize", False),
                 padded_queries_vote=settings.get("padded_queries_vote", True))
    want = with_grads(lambda *x: materialized_keysparse(*x, qm, km, counts, **flags)[0], q, k, v)
    got = with_grads(lambda *x: dense_keysparse(*x, qm, km, counts, **flags, chunk_weights=chunk_weights),
                     q, k, v)
    for name, a, w in zip(("output", "dq", "dk", "dv"), got, want):
        assert torch.allclose(a, w, rtol=1e-10, atol=1e-12), name
    assert got[0].abs().max() > 0 and got[2].abs().max() > 0


def test_the_module_in_mode_dense_equals_reference_with_dropout_off():
    torch.manual_seed(0)
    ref = KeySparseAttention(16, 2, keep_rate=0.4, context_dim=12, mode="reference").double()
    dense = KeySparseAttention(16, 2, keep_rate=0.4, context_dim=12, mode="dense").double()
    dense.load_state_dict(ref.state_dict())
    x, ctx = torch.randn(2, 9, 16, dtype=torch.float64), torch.randn(2, 11, 12, dtype=torch.float64)
    mask = torch.arange(9)[None] < torch.tensor([9, 5])[:, None]
    ctx_mask = torch.arange(11)[None] < torch.tensor([11, 6])[:, None]
    outs = [m(x, mask, ctx, ctx_mask) for m in (ref, dense)]
    grads = [torch.autograd.grad(o.square().sum(), list(m.parameters())) for o, m in zip(outs, (ref, dense))]
    assert torch.allclose(outs[0], outs[1], atol=1e-12)
    assert all(torch.allclose(a, b, atol=1e-11) for a, b in zip(*grads))


def applied_weights(fn, b=4, t=40, s=40, h=2, keep_rate=0.5, dropout=0.3, seed=0):
    """Run fn with v = the identity (d = S), so the output row IS the applied weight row; returns (applied,
    the weights before dropout, q, k, v, counts, masks)."""
    q, k, _, qm, km = inputs(b, t, s, h, 8, seed=seed)
    q, k = q.repeat(1, 1, 1, 5)[..., :s], k.repeat(1, 1, 1, 5)[..., :s]  # head dim S, same scores up to scale
    v = torch.eye(s, dtype=q.dtype).expand(b, h, s, s).contiguous()
    counts = keep_counts(km, keep_rate, "padded")
    weights = materialized_keysparse(q, k, v, qm, km, counts)[1]
    torch.manual_seed(seed)
    return fn(q, k, v, qm, km, counts, dropout=dropout, training=True), weights, q, k, v, counts, qm, km


@pytest.mark.parametrize("form", ["reference", "dense"])
def test_dropout_drops_each_weight_with_probability_p_and_scales_the_rest(form):
    fn = dense_keysparse if form == "dense" else (lambda *a, **o: materialized_keysparse(*a, **o)[0])
    p, dropped, total = 0.3, 0, 0
    for seed in range(5):
        applied, weights = applied_weights(fn, dropout=p, seed=seed)[:2]
        live = weights > 0
        kept = applied[live] != 0
        assert (applied[~live] == 0).all(), "a weight outside the kept keys (or padding) came back"
        assert torch.allclose(applied[live][kept], weights[live][kept] / (1 - p), rtol=1e-12)
        dropped, total = dropped + int((~kept).sum()), total + kept.numel()
    rate, sd = dropped / total, (p * (1 - p) / total) ** 0.5
    assert abs(rate - p) < 5 * sd, f"{form}: dropped {rate:.4f} of {total} weights, p = {p}"


def test_dropout_mean_is_the_undropped_output_and_draws_differ():
    q, k, v, qm, km = inputs(2, 12, 12, 2, 4, seed=3)
    counts = keep_counts(km, 0.5, "padded")
    clean = dense_keysparse(q, k, v, qm, km, counts)
    torch.manual_seed(0)
    draws = torch.stack([dense_keysparse(q, k, v, qm, km, counts, dropout=0.2, training=True)
                         for _ in range(4000)])
    assert not torch.equal(draws[0], draws[1])
    assert torch.equal(dense_keysparse(q, k, v, qm, km, counts, dropout=0.2, training=False), clean)
    err, sd = (draws.mean(0) - clean).abs(), draws.std(0) / 4000 ** 0.5
    assert (err <= 5 * sd + 1e-12).all()


@pytest.mark.parametrize("keep_rate", [0.5, 1.0])
def test_dropout_gradients_are_those_of_the_draw_made(keep_rate):
    """The drop mask is read back from the output (v = identity); autograd on the published formula with that
    mask must give dense's gradients."""
    p = 0.25
    fn = lambda q, k, v, qm, km, c, **o: dense_keysparse(q, k, v, qm, km, c, **o)  # noqa: E731
    _, weights, q, k, v, counts, qm, km = applied_weights(fn, keep_rate=keep_rate, dropout=p, seed=1)
    torch.manual_seed(7)
    got = with_grads(lambda *x: dense_keysparse(*x, qm, km, counts, dropout=p, training=True), q, k, v)
    kept_mask = (got[0] != 0) | (weights == 0)  # with v = I the output is the applied weights

    def published_with_mask(q, k, v):
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
        scores = scores.masked_fill(~km[:, None, None, :], float("-inf"))
        return (scores.softmax(-1) * (weights > 0) * kept_mask / (1 - p)) @ v

    want = with_grads(published_with_mask, q, k, v)
    assert ((got[0] == 0) & (weights > 0)).any(), "the draw dropped nothing: the test would not test the mask"
    for name, a, w in zip(("output", "dq", "dk", "dv"), got, want):
        assert torch.allclose(a, w, rtol=1e-10, atol=1e-12), name


@pytest.mark.parametrize("keep_rate", [0.5, 1.0])
def test_a_ks_transformer_training_step_under_auto_equals_reference(keep_rate):
    """The model the key-sparse page trains (padding "code": padded query rows computed like real ones, keep 1
    encoders), dropout off, float64: "auto" (dense on the CPU) gives the reference's loss and gradients."""
    from sercore.models import build_model
    from test_fidelity_keysparse import SHORT, TINY, padded_batch

    torch.manual_seed(0)
    ref = build_model("ks-transformer", **TINY, **SHORT, keep_rate=keep_rate, dropout=0.0,
                      classifier_dropout=0.0).double().train()
    auto = build_model("ks-transformer", **TINY, **SHORT, keep_rate=keep_rate, dropout=0.0,
                       classifier_dropout=0.0).double().train()
    auto.load_state_dict(ref.state_dict())
    for m in ref.modules():
        if isinstance(m, KeySparseAttention):
            m.mode = "reference"
    layers = [m for m in auto.modules() if isinstance(m, KeySparseAttention)]
    batch = {key: value.double() if value.is_floating_point() else value
             for key, value in padded_batch([24, 15, 9], [6, 4, 2]).items()}
    assert all(m.path(batch["speech"]) == "dense" for m in layers)
    losses, grads = [], []
    for model in (ref, auto):
        loss = model.loss(batch, model(batch))
        losses.append(loss)
        grads.append(torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad]))
    assert torch.allclose(losses[0], losses[1], rtol=1e-10)
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(*grads))
