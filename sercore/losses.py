"""Training losses shared by the models (torch, differentiable).

The concordance correlation coefficient here is the same formula as sercore.metrics.ccc (numpy, for
evaluation): CCC = 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2) with population (1/n) moments.
The torch version adds `eps` to the denominator so a constant batch (e.g. a last batch of one sample)
gives CCC 0 and a finite gradient instead of NaN.
"""

from __future__ import annotations

import torch


def ccc(pred: torch.Tensor, target: torch.Tensor, dim: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """Lin's CCC along `dim` (the batch), one value per remaining column: [B, K] -> [K]."""
    if pred.shape != target.shape:
        raise ValueError(f"ccc: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if torch.isnan(target).any():
        raise ValueError("ccc: the target holds NaN (a dimension missing from the corpus); "
                         "drop those rows before computing a CCC loss")
    pred_mean, target_mean = pred.mean(dim, keepdim=True), target.mean(dim, keepdim=True)
    covariance = ((pred - pred_mean) * (target - target_mean)).mean(dim)
    pred_var = pred.var(dim, unbiased=False)
    target_var = target.var(dim, unbiased=False)
    mean_gap = (pred_mean - target_mean).squeeze(dim) ** 2
    return 2 * covariance / (pred_var + target_var + mean_gap + eps)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the columns of (1 - CCC), computed on the batch (Wagner et al. 2023)."""
    return (1 - ccc(pred, target)).mean()
