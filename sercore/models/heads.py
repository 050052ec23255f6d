"""Classifier heads and the classification loss shared by the models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEAD_LAYOUTS = ("notes", "code")


class FusionClassifier(nn.Module):
    """The main paper's classifier on the pooled vector [B, in_dim] -> logits [B, n_classes].

    layout="notes" (the reference notes read literally): Linear(in_dim, width), then `blocks` blocks of
    LayerNorm + GELU + Dropout at that width (no Linear inside a block), then Linear(width, n_classes).

    layout="code": the ClassifierLayer of the authors' training code as found in a sibling repository of
    theirs with the same argument names (classifier_hidden_layers=4, width 512, drop-out 0.1 in the paper's
    run scripts): Dropout, then [Linear(in_dim, width), LayerNorm, GELU, Dropout], then `blocks` blocks of
    [Linear(width, width), LayerNorm, GELU, Dropout], then Linear(width, n_classes). The paper repository's
    own classifier_layer.py was not available to check.
    """

    def __init__(self, in_dim: int, n_classes: int, width: int = 512, blocks: int = 4, dropout: float = 0.1,
                 layout: str = "notes"):
        super().__init__()
        if layout not in HEAD_LAYOUTS:
            raise ValueError(f"classifier layout must be one of {HEAD_LAYOUTS}, got {layout!r}")

        def block(linear: nn.Module) -> list[nn.Module]:
            return [linear, nn.LayerNorm(width), nn.GELU(), nn.Dropout(dropout)]

        if layout == "notes":
            layers = [nn.Linear(in_dim, width)]
            for _ in range(blocks):
                layers += block(nn.Identity())[1:]
        else:
            layers = [nn.Dropout(dropout), *block(nn.Linear(in_dim, width))]
            for _ in range(blocks):
                layers += block(nn.Linear(width, width))
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
