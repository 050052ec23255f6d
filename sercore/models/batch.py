"""Reading the trainer's batches (see the contracts): required keys, masks and lengths, with errors that
say which model wanted what."""

from __future__ import annotations

import torch


def require(batch: dict, key: str, model: str, shape: str) -> torch.Tensor:
    """batch[key], or a KeyError naming the model and the expected shape."""
    value = batch.get(key)
    if value is None:
        raise KeyError(f"{model}: the batch has no {key!r} (expected {shape}); keys present: "
                       f"{', '.join(sorted(k for k, v in batch.items() if v is not None))}")
    return value


def mask_for(batch: dict, key: str, x: torch.Tensor) -> torch.Tensor:
    """batch[key + '_mask'] as bool [B, T], or all True when absent (no padding)."""
    mask = batch.get(f"{key}_mask")
    time_axis = x.shape[-2]  # [B, T, F] and [B, L, T, F] both keep time second to last
    if mask is None:
        return torch.ones(x.shape[0], time_axis, dtype=torch.bool, device=x.device)
    if mask.shape != (x.shape[0], time_axis):
        raise ValueError(f"{key}_mask has shape {tuple(mask.shape)}; {key} {tuple(x.shape)} needs "
                         f"[{x.shape[0]}, {time_axis}]")
    return mask.to(torch.bool)


def prefix_lengths(mask: torch.Tensor, what: str) -> torch.Tensor:
    """Lengths of masks that are a run of True followed by padding (what packing an LSTM needs)."""
    lengths = mask.sum(dim=1)
    expected = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(expected, mask):
        raise ValueError(f"{what}: the mask must be real frames first, then padding")
    if (lengths == 0).any():
        raise ValueError(f"{what}: a sample has no real frame")
    return lengths


def check_dim(x: torch.Tensor, expected: int, model: str, option: str) -> None:
    if x.shape[-1] != expected:
        raise ValueError(f"{model}: input feature size is {x.shape[-1]} but the model was built with "
                         f"{option}={expected}; rebuild it with {option}={x.shape[-1]}")
