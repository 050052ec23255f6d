"""Key-sparse attention (Key-Sparse Transformer, ICASSP 2022), self- and cross-attention.

Per head and sample: weights P = softmax_keys((Q / sqrt(d)) K^T) with padded keys at -inf; the importance of
key j is the column sum of P over the queries; only the keys whose importance reaches the k-th largest keep
their weights (ties at the threshold all survive, so more than k may), the rest get weight 0; output P_kept V.
k = int(L * keep_rate).

Defaults follow the public code (HappyColor/Key-Sparse-Transformer, model/KS_transformer_block.py), and each
of its choices is a named setting:
  * renormalize=False: kept weights are not renormalised, rows sum to less than 1
    (True: softmax over the kept keys only);
  * k_from="padded": L is the padded key length, so padding changes k: the one documented exception to
    padding invariance ("real": L = the sample's real key count);
  * padded_queries_vote=True: padded query rows (a softmax over the real keys) add to the importances
    (False: only real queries vote). With k_from="real" and padded_queries_vote=False a padded batch gives
    each sequence exactly what it gets alone.
Where the code crashes on k = 0 this raises a ValueError naming keep_rate and the length.
Layout: q from x, k and v from `context` (self-attention when context is None), each its own biased
Linear (the code fuses q, k, v into one Linear in self-attention: the same function), then a biased output
Linear; optional dropout on the kept weights as the code's attention_dropout. Cross-attention may take a
separate `value` input (same length as context): the code's cross-attention adds positions to the key input
but feeds the value projection the key input without them. At keep_rate=1 every key is kept and the layer
is plain softmax attention with biased projections (the KS-Transformer's vanilla encoders use it so).

Four computations of the same function, equal up to rounding (tests hold them together), chosen by `mode`:
  * "reference": the published computation (`materialized_keysparse`), B*H*T*S weights in memory;
  * "dense": the same materialized weights with a hand-written backward, run a few batch rows at a time so each
    chunk's passes stay in cache (sercore.attention.keysparse_dense: what it saves and why). Its dropout draws
    rand < p instead of bernoulli_: the same distribution, another random stream than "reference". With every
    key kept and no dropout it is torch's scaled_dot_product_attention. Measured on the CPU (1 thread) at the
    default profile's model, dropout 0.1: a training step 2.3x faster at keep_rate 0.3, 2.5x at 1.0
    (benchmarks/ks_step.py);
  * "memory-linear": PyTorch in query blocks of `block_size` rows. Selection (no gradient): per block, the
    row log-sum-exp (the full softmax normaliser) and the column sums of exp(s - lse) give the importances;
    top-k per head. Output: per block, attention over the kept keys rescaled by the kept mass
    exp(lse_kept - lse) (skipped when renormalising), each block under activation checkpointing so training
    memory is also O(block_size * S) per block rather than O(T * S);
  * "fused": the same memory-linear computation as sercore's Triton kernels (sercore.attention.keysparse_triton;
    backward by PyTorch recomputation, no dropout; needs the triton package, which sercore does not depend
    on). CUDA only, or CPU tensors under TRITON_INTERPRET=1. Verified only in Triton's CPU interpreter until
    a GPU run confirms it, so "auto" does not use it;
  * "auto" (default): "memory-linear" on CUDA (cuBLAS matmuls per block); on the CPU "dense" while gradients
    are on (training), "memory-linear" when gradients are off and the queries exceed LONG_QUERIES (evaluation
    of a long utterance: at most B*H*block_size*S weights at once, the bound the trainer's evaluation relies
    on), and "reference" otherwise (evaluation keeps the published computation).
The memory-linear forms rank keys in fp32 at least (bf16 rounding would flip near-ties); the reference ranks
them in the input dtype, as the published code. Measured on the CPU at T=4096 (batch 1, width 256, 4 heads,
fp32): peak memory 0.13 GiB memory-linear vs 0.78 GiB materialized for the forward pass, for about 1.1-2x
the time (scores are computed twice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sercore.attention.base import MODES, SequenceMixer, check_mask, require_kernels
from sercore.attention.keysparse_dense import dense_keysparse
from sercore.attention.keysparse_parts import kept_block, key_padding, masked_scores, top_k_keys

LONG_QUERIES = 1024  # mode "auto" on the CPU: no-grad calls with more queries run memory-linear (module docstring)
K_FROM = ("padded", "real")


def keep_counts(key_mask: torch.Tensor, keep_rate: float, k_from: str) -> torch.Tensor:
    """k per sample ([B] long): int(L * keep_rate) with L the padded or the real key length."""
    b, s = key_mask.shape
    lengths = key_mask.sum(1) if k_from == "real" else torch.full((b,), s, device=key_mask.device)
    # float64 multiply then floor = Python's int(L * keep_rate), as the published code computes it.
    counts = torch.floor(lengths.to(torch.float64) * keep_rate).long()
    if (counts < 1).any():
        i = int((counts < 1).nonzero()[0, 0])
        raise ValueError(f"key-sparse attention: keep_rate={keep_rate} with key length L={int(lengths[i])} "
                         f"(k_from={k_from!r}, sample {i}) gives k = int(L * keep_rate) = 0 keys; "
                         "raise keep_rate or use longer sequences")
    return counts


def materialized_keysparse(q, k, v, query_mask, key_mask, counts, renormalize=False,
                           padded_queries_vote=True, dropout=0.0, training=False):
    """Published form on [B, H, T, d] queries and [B, H, S, d] keys/values with [B, T] / [B, S] bool masks.

    Returns (output [B, H, T, d], applied weights [B, H, T, S] before dropout)."""
    scores = masked_scores(q * q.shape[-1] ** -0.5, k, key_padding(key_mask))
    weights = scores.softmax(dim=-1)
    voters = weights if padded_queries_vote else weights * query_mask[:, None, :, None]
    keep = top_k_keys(voters.sum(dim=-2), counts)[:, :, None, :]
    if renormalize:
        weights = scores.masked_fill(~keep, float("-inf")).softmax(dim=-1)
    else:
        weights = weights * keep
    return F.dropout(weights, dropout, training) @ v, weights


def memory_linear_keysparse(q, k, v, query_mask, key_mask, counts, renormalize=False,
                            padded_queries_vote=True, dropout=0.0, training=False, block_size=256):
    """Same result as materialized_keysparse (output only), holding block_size x S scores at a time.

    The key selection runs in at least fp32 whatever the input dtype; the output pass in the input dtype."""
    scale = q.shape[-1] ** -0.5
    blocks = range(0, q.shape[2], block_size)
    padding = key_padding(key_mask)
    with torch.no_grad():
        # Ranking keys in bf16/fp16 would let rounding flip near-ties: select in fp32 at least.
        wide = torch.promote_types(q.dtype, torch.float32)
        q_wide, k_wide = q.to(wide) * scale, k.to(wide)
        # Passes 1 and 2 fuse: each query block holds whole rows, so its lse is final before its column sums.
        importance = torch.zeros(k.shape[:3], dtype=wide, device=q.device)
        for i in blocks:
            scores = masked_scores(q_wide[:, :, i:i + block_size], k_wide, padding)
            weights = (scores - scores.logsumexp(dim=-1, keepdim=True)).exp()
            if not padded_queries_vote:
                weights = weights * query_mask[:, None, i:i + block_size, None]
            importance += weights.sum(dim=-2)
        dropped = ~top_k_keys(importance, counts)[:, :, None, :]
    q_scaled = q * scale
    outputs = []
    for i in blocks:
        args = (q_scaled[:, :, i:i + block_size], k, v, padding, dropped, renormalize, dropout, training)
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            outputs.append(checkpoint(kept_block, *args, use_reentrant=False))
        else:
            outputs.append(kept_block(*args))
    return torch.cat(outputs, dim=2)


class KeySparseAttention(SequenceMixer):
    """Multi-head key-sparse attention: forward(x [B, T, dim], mask, context [B, S, context_dim], context_mask).

    keep_rate in (0, 1]; context_dim defaults to dim; value: optional cross-attention value input;
    mode: "auto" (memory-linear on CUDA and for long no-grad CPU inputs, dense for CPU training, else
    reference), "reference" (the published materialized form), "dense" (the materialized form with a
    hand-written backward, in cache-sized chunks; any device), "memory-linear" (the PyTorch memory-linear
    form, any device) or "fused"
    (sercore's Triton kernels; CUDA, or the CPU under TRITON_INTERPRET=1; GPU-unverified); block_size: query
    rows per block of the memory-linear form (and of the fused form's backward). See the module docstring."""

    MODES = (*MODES, "memory-linear", "dense")

    def __init__(self, dim: int, heads: int, keep_rate: float = 0.5, context_dim: int | None = None,
                 renormalize: bool = False, k_from: str = "padded", padded_queries_vote: bool = True,
                 block_size: int = 256, dropout: float = 0.0, bias: bool = True,
                 mode: str = "auto", zero_padded_queries: bool = True):
        super().__init__(mode)
        if dim % heads:
            raise ValueError(f"KeySparseAttention: dim={dim} is not divisible by heads={heads}")
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"KeySparseAttention: keep_rate must be in (0, 1], got {keep_rate}")
        if k_from not in K_FROM:
            raise ValueError(f"KeySparseAttention: k_from must be one of {K_FROM}, got {k_from!r}")
        if block_size < 1:
            raise ValueError(f"KeySparseAttention: block_size must be positive, got {block_size}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.context_dim = dim if context_dim is None else context_dim
        self.keep_rate, self.renormalize, self.k_from = keep_rate, renormalize, k_from
        self.padded_queries_vote = padded_queries_vote
        self.block_size, self.dropout, self.zero_padded_queries = block_size, dropout, zero_padded_queries
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(self.context_dim, dim, bias=bias)
        self.v_proj = nn.Linear(self.context_dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def _prepare(self, x, mask, context, context_mask, value=None):
        mask = check_mask(x, mask)
        if context is None:
            if context_mask is not None or value is not None:
                raise ValueError("KeySparseAttention: context_mask or value given without context")
            if self.context_dim != self.dim:
                raise ValueError(f"KeySparseAttention: built for cross-attention (context_dim="
                                 f"{self.context_dim} != dim={self.dim}); pass context=")
            context, context_mask = x, mask
        else:
            context_mask = check_mask(context, context_mask)
            if context.shape[0] != x.shape[0]:
                raise ValueError(f"KeySparseAttention: context batch {context.shape[0]} != x batch {x.shape[0]}")
            if value is not None and value.shape != context.shape:
                raise ValueError(f"KeySparseAttention: value shape {tuple(value.shape)} != context shape "
                                 f"{tuple(context.shape)}")
        (b, t), s = x.shape[:2], context.shape[1]
        query_mask = torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask
        if context_mask is None:
            context_mask = torch.ones(b, s, dtype=torch.bool, device=x.device)
        if not context_mask.any(1).all():
            i = int((~context_mask.any(1)).nonzero()[0, 0])
            raise ValueError(f"KeySparseAttention: sample {i} has no real key (its key mask is all False)")
        split = lambda y, n: y.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # noqa: E731
        v = self.v_proj(context if value is None else value)
        q, k, v = split(self.q_proj(x), t), split(self.k_proj(context), s), split(v, s)
        counts = keep_counts(context_mask, self.keep_rate, self.k_from)
        return q, k, v, query_mask, context_mask, counts

    def path(self, x: torch.Tensor) -> str:
        """The mode that runs for x [B, T, ...], never "auto" (the rules in the module docstring)."""
        if self.mode == "auto":
            if self._auto_fused(x):
                return "memory-linear"
            if torch.is_grad_enabled():
                return "dense"
            return "memory-linear" if x.shape[1] > LONG_QUERIES else "reference"
        if self.mode == "fused":
            require_kernels("KeySparseAttention", x)
        return self.mode

    def use_fused(self, x: torch.Tensor) -> bool:
        return self.path(x) == "fused"  # "auto" never is: it runs memory-linear PyTorch on CUDA

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, value: torch.Tensor | None = None) -> torch.Tensor:
        path = self.path(x)
        q, k, v, query_mask, key_mask, counts = self._prepare(x, mask, context, context_mask, value)
        options = dict(renormalize=self.renormalize, padded_queries_vote=self.padded_queries_vote,
                       dropout=self.dropout, training=self.training)
        if path == "fused":
            # Imported here: triton is optional, and importing sercore must never need it.
            from sercore.attention.keysparse_triton import keysparse_triton
            o = keysparse_triton(q, k, v, query_mask, key_mask, counts, block_size=self.block_size, **options)
        elif path == "dense":
            o = dense_keysparse(q, k, v, query_mask, key_mask, counts, **options)
        elif path == "memory-linear":
            o = memory_linear_keysparse(q, k, v, query_mask, key_mask, counts, block_size=self.block_size,
                                        **options)
        else:
            o = materialized_keysparse(q, k, v, query_mask, key_mask, counts, **options)[0]
        out = self.out_proj(o.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.dim))
        return out.masked_fill(~query_mask[..., None], 0.0) if self.zero_padded_queries else out

    def attention_matrix(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                         context: torch.Tensor | None = None,
                         context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The sparse weights applied, [B, H, T, S] (before dropout); rows of padded queries are zero unless
        zero_padded_queries=False."""
        q, k, v, query_mask, key_mask, counts = self._prepare(x, mask, context, context_mask)
        weights = materialized_keysparse(q, k, v, query_mask, key_mask, counts, self.renormalize,
                                         self.padded_queries_vote)[1]
        return weights * query_mask[:, None, :, None] if self.zero_padded_queries else weights

    def kept_keys(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                  context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The keys forward keeps, [B, H, S] bool: importance (column sum of the softmax weights over the
        voting queries) at least the k-th largest (sercore.localization draws and scores it)."""
        q, k, _, query_mask, key_mask, counts = self._prepare(x, mask, context, context_mask)
        weights = masked_scores(q * q.shape[-1] ** -0.5, k, key_padding(key_mask)).softmax(dim=-1)
        voters = weights if self.padded_queries_vote else weights * query_mask[:, None, :, None]
        return top_k_keys(voters.sum(dim=-2), counts)

    def forward_from_matrix(self, x: torch.Tensor, a: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Rebuild the self-attention forward(x, mask) from A = attention_matrix(x, mask) (dropout off)."""
        mask = check_mask(x, mask)
        b, t = x.shape[:2]
        v = self.v_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        out = self.out_proj((a.to(v.dtype) @ v).transpose(1, 2).reshape(b, t, self.dim))
        return out if mask is None or not self.zero_padded_queries else out.masked_fill(~mask[..., None], 0.0)
