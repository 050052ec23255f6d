"""Multi-head softmax attention (SA), the main paper's quadratic baseline.

Parameter layout as the public code's `MultiHeadStandardVersion` (AttentionAlternatives, scripts/poolings.py):
q, k, v = bias-free Linear(dim, dim) split into `heads` heads of dim // heads (the paper: 1024 = 4 x 256), then
an output Linear(dim, dim) with bias. One layer, no residual, no norm, no dropout, bidirectional by default.

Three interchangeable cores compute softmax(q k^T / sqrt(d)) v per head, chosen by `mode` (MODES):
  * "reference": the readable core (scores, masked softmax, weighted sum), `explicit_attention`;
  * "fused": torch's F.scaled_dot_product_attention with a boolean mask (fused kernels on CUDA; off CUDA an
    error, except under TRITON_INTERPRET=1, as every mixer's "fused");
  * "sdpa": torch's F.scaled_dot_product_attention on any device, with the same boolean mask: on the CPU
    torch's fused flash-attention kernel: a default-profile fusion training step 1.2-1.3x faster than with
    the reference (benchmarks/cpu_speedups.py; up to 2x on a loaded machine), equal to it up to rounding
    (tests compare forward and gradients in fp64);
  * "auto" (default): fused on CUDA, "sdpa" elsewhere: softmax keeps its own rule here, as key-sparse does,
    because torch ships a CPU kernel for it; "reference" still runs the readable core;
  * "naive": the paper's efficiency baseline exactly as its code ran it, on any device: heads folded into the
    batch, q and k each divided by d^(1/4), plain torch.bmm, the [B*H, T, T] weights materialised, in fp32
    (half-precision inputs are up-cast; fp64 stays fp64 so tests can compare it).

Padding: the public code has no mask (it crops to fixed lengths). Here padded keys are excluded and the
outputs at padded query positions are zero, so a padded row equals the sequence run alone.

Memory in evaluation: with gradients off (torch.no_grad, as sercore.train.trainer.predict runs) and more
than QUERY_CHUNK tokens, the reference and fused cores run over blocks of QUERY_CHUNK queries
against all keys, so at most B*H*QUERY_CHUNK*T scores exist at once instead of B*H*T*T: a 2-minute
utterance (12 000 frames at 100/s, 4 heads, fp32) needs 0.2 GB instead of 2.3 GB. Each query's softmax
is over its whole key row either way, so the outputs equal the unchunked ones within fp32 rounding (tests
compare them). Training (gradients on) keeps the single pass; the naive core always materialises (it is
the efficiency baseline).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sercore.attention.base import MODES, SequenceMixer, check_mask

QUERY_CHUNK = 1024  # queries per block in no-grad evaluation of long sequences (module docstring)


def allowed_keys(mask: torch.Tensor | None, t: int, causal: bool, device) -> torch.Tensor | None:
    """Boolean [B or 1, 1, T or 1, T] mask of the keys each query may see (True = attend), or None for all.

    A query that would see no key (a sample with no real token, or a padded query in front of every real key
    under `causal`) is given every key instead, so no row is all -inf: its output is zeroed afterwards, and
    this keeps NaN out of the forward pass and the gradients."""
    return allowed_rows(mask, 0, t, t, causal, device)


def allowed_rows(mask: torch.Tensor | None, start: int, stop: int, t: int, causal: bool, device):
    """Rows [start, stop) of allowed_keys(mask, t, causal): the keys queries start..stop-1 may see."""
    if mask is None and not causal:
        return None
    allowed = torch.ones(1, 1, 1, t, dtype=torch.bool, device=device)
    if mask is not None:
        allowed = allowed & mask[:, None, None, :]
    if causal:
        queries = torch.arange(start, stop, device=device)[:, None]
        allowed = allowed & (torch.arange(t, device=device)[None, :] <= queries)
    return allowed | ~allowed.any(dim=-1, keepdim=True)


def query_chunked(core, q, k, v, mask, causal: bool, chunk: int = QUERY_CHUNK) -> torch.Tensor:
    """core(q_block, k, v, allowed_block) over blocks of `chunk` queries, concatenated along time: the same
    output as one call with every query, holding only B*H*chunk*T scores at a time."""
    t = q.shape[2]
    out = [core(q[:, :, start:start + chunk], k, v, allowed_rows(mask, start, min(start + chunk, t), t, causal,
                                                                 q.device))
           for start in range(0, t, chunk)]
    return torch.cat(out, dim=2)


def explicit_attention(q, k, v, allowed=None):
    """Reference core on [B, H, T, d] tensors; returns (output [B, H, T, d], weights [B, H, T, T])."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def sdpa_attention(q, k, v, allowed=None, is_causal=False):
    """Fused core on [B, H, T, d] tensors (torch chooses flash / memory-efficient / math by device and mask).

    is_causal (only without `allowed`) lets the flash kernel apply the causal mask itself."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, is_causal=is_causal)


def naive_attention(q, k, v, allowed=None):
    """The paper's baseline on [B, H, T, d] tensors: folded heads, bmm, fp32, materialised weights."""
    b, h, t, d = q.shape
    dtype = torch.promote_types(q.dtype, torch.float32)
    fold = lambda x: x.to(dtype).reshape(b * h, t, d)  # noqa: E731
    # The public code scales q and k by d^(-1/4) each rather than the scores by d^(-1/2).
    q4, k4, v4 = fold(q) / d ** 0.25, fold(k) / d ** 0.25, fold(v)
    scores = torch.bmm(q4, k4.transpose(1, 2))
    if allowed is not None:
        scores = scores.view(b, h, t, t).masked_fill(~allowed, float("-inf")).view(b * h, t, t)
    weights = F.softmax(scores, dim=2)
    return torch.bmm(weights, v4).view(b, h, t, d).to(q.dtype)


class SoftmaxAttention(SequenceMixer):
    """Multi-head softmax attention over x [B, T, dim] with a padding mask [B, T] (True = real token).

    mode: "auto" (fused on CUDA, "sdpa" elsewhere), "reference" (explicit PyTorch), "fused" (torch SDPA;
    CUDA, or the CPU under TRITON_INTERPRET=1), "sdpa" (torch SDPA on any device) or "naive" (the paper's bmm
    baseline, any device).
    causal: False (the paper's SA is bidirectional); True gives the causal variant for comparisons with the
    causal linear mechanisms.
    """

    MODES = (*MODES, "naive", "sdpa")

    def __init__(self, dim: int, heads: int, causal: bool = False, mode: str = "auto"):
        super().__init__(mode)
        if dim % heads:
            raise ValueError(f"SoftmaxAttention: dim={dim} is not divisible by heads={heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.causal = causal
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor):
        split = lambda y: y.view(*x.shape[:2], self.heads, self.head_dim).transpose(1, 2)  # noqa: E731
        return split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))

    def _finish(self, o: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out = self.out_proj(o.transpose(1, 2).reshape(o.shape[0], o.shape[2], self.dim))
        return out if mask is None else out.masked_fill(~mask[..., None], 0.0)

    def path(self, x: torch.Tensor) -> str:
        """The mode that runs for x, never "auto": "fused" on CUDA, else "sdpa" (see the module docstring)."""
        if self.mode == "auto":
            return "fused" if self._auto_fused(x) else "sdpa"
        return super().path(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = check_mask(x, mask)
        q, k, v = self._heads(x)
        path = self.path(x)
        sdpa = path in ("fused", "sdpa")  # the same torch call; "fused" only names the CUDA kernels
        if path != "naive" and not torch.is_grad_enabled() and x.shape[1] > QUERY_CHUNK:
            core = sdpa_attention if sdpa else (lambda *a: explicit_attention(*a)[0])
            return self._finish(query_chunked(core, q, k, v, mask, self.causal), mask)
        allowed = allowed_keys(mask, x.shape[1], self.causal, x.device)
        if path == "naive":
            o = naive_attention(q, k, v, allowed)
        elif sdpa and mask is None and self.causal:
            o = sdpa_attention(q, k, v, is_causal=True)
        elif sdpa:
            o = sdpa_attention(q, k, v, allowed)
        else:
            o = explicit_attention(q, k, v, allowed)[0]
        return self._finish(o, mask)

    def attention_matrix(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Softmax weights [B, H, T, T]; rows of padded queries are zero (their outputs are zeroed)."""
        mask = check_mask(x, mask)
        q, k, _ = self._heads(x)
        weights = explicit_attention(q, k, k, allowed_keys(mask, x.shape[1], self.causal, x.device))[1]
        return weights if mask is None else weights * mask[:, None, :, None]

    def forward_from_matrix(self, x: torch.Tensor, a: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Rebuild forward(x, mask) from A = attention_matrix(x, mask): o = A v, then the output projection."""
        mask = check_mask(x, mask)
        v = self._heads(x)[2]
        return self._finish(a.to(v.dtype) @ v, mask)
