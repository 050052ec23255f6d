"""Poolings: over time (mean, learned-query attention, additive attention) and over SSL layers.

Every time pooling takes x [B, T, D] and a mask [B, T] (True = real frame) and ignores padded frames,
so padding a batch does not change a real sample's pooled vector.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real frames: [B, T, D] -> [B, D]."""
    weights = mask.to(x.dtype)[..., None]
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over time of scores [B, T] with padded frames given weight 0."""
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=1)


class AttentionPooling(nn.Module):
    """One learned query q [D]: weights = softmax_t(x_t . q) over real frames, output sum_t w_t x_t.

    As the main paper's public code (AttentionAlternatives, poolings.AttentionPooling): unscaled dot
    products, no projection, query initialised Xavier-normal. Unlike that code, padding is masked."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.empty(dim, 1))
        nn.init.xavier_normal_(self.query)

    def weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_softmax((x @ self.query).squeeze(-1), mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.weights(x, mask)[..., None] * x).sum(dim=1)


class AdditiveAttentionPooling(nn.Module):
    """Self-attention pooling of Lin et al. (2017) with one hop: score_t = w . tanh(W x_t)."""

    def __init__(self, dim: int, attention_dim: int):
        super().__init__()
        self.project = nn.Linear(dim, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_softmax(self.score(torch.tanh(self.project(x))).squeeze(-1), mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.weights(x, mask)[..., None] * x).sum(dim=1)


class LayerWeightedSum(nn.Module):
    """Softmax-weighted sum of SSL hidden states: [B, L, T, F] -> [B, T, F].

    The weights start equal (logits 0); in the main paper they are the only trained part of the frozen
    speech encoder."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.n_layers = n_layers
        self.logits = nn.Parameter(torch.zeros(n_layers))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dim() != 4 or hidden.shape[1] != self.n_layers:
            raise ValueError(f"layer-weighted sum expects SSL hidden states [B, {self.n_layers}, T, F], got "
                             f"{tuple(hidden.shape)}; set ssl_layers to the encoder's number of hidden states")
        return torch.einsum("l,bltf->btf", self.logits.softmax(0).to(hidden.dtype), hidden)
