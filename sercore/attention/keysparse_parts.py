"""The PyTorch pieces that key-sparse attention's layer (sercore.attention.keysparse) and its Triton kernels
(sercore.attention.keysparse_triton) share: the key selection and the output pass over the kept keys.

Both files import these from here; neither imports the other's internals. On [B, H, T, d] queries and
[B, H, S, d] keys/values with a [B, S] bool key mask (True = real key).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def top_k_keys(importance: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Boolean [B, H, S]: keys whose importance is at least the k-th largest of their head (ties kept)."""
    ranked = importance.sort(dim=-1, descending=True).values
    index = (counts - 1).view(-1, 1, 1).expand(*importance.shape[:2], 1)
    return importance >= ranked.gather(-1, index)


def key_padding(key_mask: torch.Tensor) -> torch.Tensor | None:
    """[B, 1, 1, S] True at padded keys, or None when there are none (skips a pass over the scores)."""
    return None if key_mask.all() else ~key_mask[:, None, None, :]


def masked_scores(q_scaled: torch.Tensor, k: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
    """q_scaled k^T with padded keys (key_padding's mask) at -inf."""
    out = q_scaled @ k.transpose(-1, -2)
    return out if padding is None else out.masked_fill(padding, float("-inf"))


def kept_block(q_scaled, k, v, padding, dropped, renormalize: bool, dropout: float, training: bool):
    """The output pass for one query block: softmax over the kept keys, times the kept mass unless renormalising.

    Both in one exp: exp(s - lse) on the kept keys = softmax over the kept keys x exp(lse_kept - lse). The
    full normaliser lse is recomputed here rather than reused from the selection so gradients flow through it.
    `dropped` [B, H, 1, S] is True at the keys not kept."""
    full = masked_scores(q_scaled, k, padding)
    kept = full.masked_fill(dropped, float("-inf"))
    normaliser = kept if renormalize else full
    weights = (kept - normaliser.logsumexp(dim=-1, keepdim=True)).exp()
    return F.dropout(weights, dropout, training) @ v
