"""Classifier heads and the classification loss shared by the models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FusionClassifier(nn.Module):
    """The main paper's classifier on the pooled vector [B, in_dim] -> logits [B, n_classes].

    The layout of the authors' ClassifierLayer (AttentionAlternatives, scripts/classifier_layer.py; width
    512, 4 hidden blocks, drop-out 0.1 in their run scripts): Dropout, then [Linear(in_dim, width),
    LayerNorm, GELU, Dropout], then `blocks` blocks of [Linear(width, width), LayerNorm, GELU, Dropout],
    then Linear(width, n_classes). At the paper's sizes: 1024 -> 512, four 512 -> 512 blocks, 512 -> 8.

    There is no other layout: an earlier one here (a single Linear followed by LayerNorm/GELU/Dropout blocks
    without Linears) came from a misreading, not from the paper or its code, so it was removed.
    """

    def __init__(self, in_dim: int, n_classes: int, width: int = 512, blocks: int = 4, dropout: float = 0.1):
        super().__init__()
        if blocks < 0:
            raise ValueError(f"classifier blocks must be 0 or more, got {blocks}")

        def block(in_features: int) -> list[nn.Module]:
            return [nn.Linear(in_features, width), nn.LayerNorm(width), nn.GELU(), nn.Dropout(dropout)]

        layers = [nn.Dropout(dropout), *block(in_dim)]
        for _ in range(blocks):
            layers += block(width)
        self.layers = nn.Sequential(*layers, nn.Linear(width, n_classes))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.layers(pooled)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor,
                        class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy, weighted per class when class_weights [C] is given (inverse frequency in the paper)."""
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if class_weights.shape != (logits.shape[-1],):
            raise ValueError(f"class_weights has shape {tuple(class_weights.shape)}; the model has "
                             f"{logits.shape[-1]} classes")
    return F.cross_entropy(logits, labels.long(), weight=class_weights)
