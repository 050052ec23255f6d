"""What every token mixer shares: the call signature, the padding-mask convention and the kernel choice.

A mixer maps x [B, T, D] to [B, T, D]. The mask is [B, T] bool with True = real token (False = padding);
None means every token is real. Each mechanism has two paths for its token-mixing core:
  * fused: the GPU kernel (fla for the linear mechanisms, torch SDPA for softmax, our Triton kernel for
    key-sparse), used when the input is on CUDA;
  * reference: readable PyTorch, the specification, used on the CPU and by the tests as the oracle.
`mode` chooses: "auto" (fused on CUDA, reference elsewhere), "reference" or "fused" (an error off CUDA,
except under TRITON_INTERPRET=1, where the Triton kernels run on the CPU in Triton's interpreter: slow, for tests).
"""

from __future__ import annotations

import os

import torch
from torch import nn

MODES = ("auto", "reference", "fused")


def triton_interpreting() -> bool:
    """True under TRITON_INTERPRET=1: Triton kernels then run on CPU tensors in Triton's interpreter."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def kernels_can_run(x: torch.Tensor) -> bool:
    """Whether the fused kernels can take x: on CUDA, or on the CPU in Triton's interpreter."""
    return x.is_cuda or (triton_interpreting() and x.device.type == "cpu")


class SequenceMixer(nn.Module):
    """Base class for the sequence mixers in sercore.attention."""

    def __init__(self, mode: str = "auto"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode

    def use_fused(self, x: torch.Tensor) -> bool:
        if self.mode == "reference":
            return False
        if self.mode == "fused":
            if not kernels_can_run(x):
                raise RuntimeError(f"{type(self).__name__}: mode='fused' needs a CUDA tensor (or TRITON_INTERPRET=1 "
                                   "for Triton's CPU interpreter); use mode='auto' or 'reference' on the CPU")
            return True
        return x.is_cuda  # auto: never the interpreter, which is far too slow for real work

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def attention_matrix(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The equivalent [B, H, T, T] matrix A such that the value path applied through A reproduces
        forward (meant for small T: it is materialised)."""
        raise NotImplementedError


def check_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """Validate a padding mask against x [B, T, ...] and return it as bool (or None)."""
    if mask is None:
        return None
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask must be [B, T] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    return mask.to(torch.bool)
