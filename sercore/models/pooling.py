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


WEIGHTINGS = ("raw", "softmax")
LAYER_SETS = ("transformer", "all")


class LayerWeightedSum(nn.Module):
    """Learned weighted sum over SSL hidden states: [B, S, T, F] -> [B, T, F], S = n_states cached per frame.

    The cache (sercore.features.ssl) holds S = L + 1 states: the input of the first transformer layer (the
    CNN features after projection and positional convolution), then the output of each of the L layers.
      layers="transformer"  weigh the L transformer-layer outputs (states 1..L), as the main paper's code:
                            torchaudio's extract_features returns those L outputs and not the CNN features
                            (AttentionAlternatives, scripts/speech_feature_extractor.py);
      layers="all"          weigh all S states.
      weighting="raw"       out = sum_l w_l h_l with w a free parameter initialised to 1/N (N weighed states)
                            and no normalisation, as that code (at initialisation: the plain mean);
      weighting="softmax"   out = sum_l softmax(w)_l h_l with w initialised to 0 (the SUPERB-style form).
    In the main paper the weights are the only trained part of the frozen speech encoder."""

    def __init__(self, n_states: int, weighting: str = "raw", layers: str = "transformer"):
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"layer weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if layers not in LAYER_SETS:
            raise ValueError(f"weighted layers must be one of {LAYER_SETS}, got {layers!r}")
        first = 1 if layers == "transformer" else 0
        if n_states - first < 1:
            raise ValueError(f"layers={layers!r} needs at least {first + 1} SSL hidden states per frame, "
                             f"got ssl_layers={n_states}")
        self.n_states, self.first, self.weighting = n_states, first, weighting
        n = n_states - first
        # raw: the weights themselves; softmax: their logits.
        self.weights = nn.Parameter(torch.full((n,), 1.0 / n) if weighting == "raw" else torch.zeros(n))

    def mixing(self) -> torch.Tensor:
        """The weight each used state gets in the sum, [N] (state first + i gets entry i)."""
        return self.weights if self.weighting == "raw" else self.weights.softmax(0)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dim() != 4 or hidden.shape[1] != self.n_states:
            raise ValueError(f"layer-weighted sum expects SSL hidden states [B, {self.n_states}, T, F], got "
                             f"{tuple(hidden.shape)}; set ssl_layers to the encoder's number of hidden states")
        return torch.einsum("l,bltf->btf", self.mixing().to(hidden.dtype), hidden[:, self.first:])
