"""Key-sparse attention's "dense" mode: the materialized computation with a hand-written backward.

The function is `materialized_keysparse`'s (sercore.attention.keysparse), on [B, H, T, d] queries and [B, H, S, d]
keys/values: the same weights, the same kept keys, the same gradients (selection carries none) up to float
rounding. It is cheaper on the CPU because it makes fewer passes over the B*H*T*S weights, each of which is
memory-bound at the small head dims the KS-Transformer uses (16 in the default profile), where autograd's
graph for the published form makes one pass per operation:
  * the kept set and attention-weight dropout are one bool mask of dropped weights, applied once with
    masked_fill in forward and once in backward (the published form multiplies by the kept set and by the
    dropout noise, each a pass forward and another in backward, plus the noise's own division);
  * dropout's 1 / (1 - p) scales the [B, H, T, d] output and gradient instead of the weights;
  * the dropout mask is drawn as rand < p (one uniform draw per weight, in float32 or the input dtype if
    wider) instead of F.dropout's bernoulli_ (about 1.5x faster on the CPU): the same distribution (each
    weight dropped independently with probability p, up to the generator's 2^-24 resolution in float32), a
    different random stream than mode="reference";
  * backward is torch's fused softmax backward on the saved weights, and no pass is spent on the padding
    mask (padded keys have weight 0, so their score gradient is 0 already);
  * the passes run a few batch rows at a time (CHUNK_WEIGHTS): a chunk's weights stay in cache from one pass
    to the next, where the whole batch's (54 MB in the default profile) go to memory at every pass;
  * at keep_rate 1 with every key kept (the KS-Transformer's vanilla encoders) selection is skipped, and with
    dropout off too the call is torch's scaled_dot_product_attention, which on the CPU runs its flash kernel
    (_scaled_dot_product_flash_attention_for_cpu, nothing materialized). With dropout_p > 0 torch falls back to
    its math path (materialized weights and bernoulli_), no faster than the published form, so dropout stays
    here.
Memory: the weights P, the applied weights and the bool mask are saved, about what autograd saves for the
published form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sercore.attention.keysparse_parts import key_padding, masked_scores, top_k_keys

# Weights per chunk: one sample of the default profile's 460-frame self-attention (4 heads) is 0.85 M, 3.4 MB in
# fp32, which stays in cache between passes; whole batches (16x that) run 2-3x slower (benchmarks/ks_step.py).
CHUNK_WEIGHTS = 1 << 20


class DenseKeySparse(torch.autograd.Function):
    """apply(q, k, v, padding, query_mask, counts, renormalize, padded_queries_vote, dropout) -> output."""

    @staticmethod
    def forward(ctx, q, k, v, padding, query_mask, counts, renormalize, padded_queries_vote, dropout):
        q_scaled = q * q.shape[-1] ** -0.5
        scores = masked_scores(q_scaled, k, padding)
        weights = scores.softmax(dim=-1)
        dropped = None
        if bool((counts < k.shape[2]).any()):  # else every key is kept (keep_rate 1): no selection
            voters = weights if padded_queries_vote else weights * query_mask[:, None, :, None]
            dropped = ~top_k_keys(voters.sum(dim=-2), counts)[:, :, None, :]
            if renormalize:  # softmax over the kept keys: dropped keys then have weight 0 already
                weights = scores.masked_fill_(dropped, float("-inf")).softmax(dim=-1)
                dropped = None
        del scores
        if dropout > 0:
            # drawn in fp32 at least: a bf16 or fp16 uniform would round p to 2^-8 or 2^-11
            wide = torch.promote_types(weights.dtype, torch.float32)
            drop = torch.rand(weights.shape, dtype=wide, device=weights.device) < dropout
            dropped = drop if dropped is None else drop.logical_or_(dropped)
        applied = weights if dropped is None else torch.where(dropped, 0.0, weights)
        out = applied @ v
        if dropout > 0:
            out = out.mul_(1.0 / (1.0 - dropout))
        ctx.save_for_backward(q_scaled, k, v, weights, applied, dropped)
        ctx.dropout = dropout
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q_scaled, k, v, weights, applied, dropped = ctx.saved_tensors
        if ctx.dropout > 0:
            grad_out = grad_out * (1.0 / (1.0 - ctx.dropout))
        grad_v = applied.transpose(-1, -2) @ grad_out
        grad_weights = grad_out @ v.transpose(-1, -2)
        if dropped is not None:
            grad_weights.masked_fill_(dropped, 0.0)
        grad_scores = torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)
        grad_q = (grad_scores @ k).mul_(q_scaled.shape[-1] ** -0.5)
        grad_k = grad_scores.transpose(-1, -2) @ q_scaled
        return grad_q, grad_k, grad_v, None, None, None, None, None, None


def dense_keysparse(q, k, v, query_mask, key_mask, counts, renormalize=False, padded_queries_vote=True,
                    dropout=0.0, training=False, chunk_weights=CHUNK_WEIGHTS):
    """materialized_keysparse's output (same arguments), by DenseKeySparse in chunks of batch rows holding about
    chunk_weights weights each (at least one row), so that each chunk's passes run in cache."""
    dropout = dropout if training else 0.0
    if dropout == 0 and bool((counts >= k.shape[2]).all()):  # every key kept, no dropout: softmax attention
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
    rows = max(1, chunk_weights // (q[0].numel() // q.shape[-1] * k.shape[2]))
    outputs = []
    for i in range(0, q.shape[0], rows):
        chunk = slice(i, i + rows)
        outputs.append(DenseKeySparse.apply(q[chunk], k[chunk], v[chunk], key_padding(key_mask[chunk]),
                                            query_mask[chunk], counts[chunk], renormalize, padded_queries_vote,
                                            dropout))
    return torch.cat(outputs) if len(outputs) > 1 else outputs[0]
