"""What every token mixer shares: the call signature, the padding-mask convention and the `mode` switch.

A mixer maps x [B, T, D] to [B, T, D]. The mask is [B, T] bool with True = real token (False = padding);
None means every token is real. `mode` is the one switch for which code runs (as fla's layers have `mode`);
every mixer accepts these three (MODES), with the same meaning everywhere:
  * "reference": readable PyTorch, the specification, used on the CPU and by the tests as the oracle;
  * "fused": the GPU kernel (fla for the linear mechanisms, torch SDPA for softmax, sercore's Triton kernel
    for key-sparse): an error off CUDA, except under TRITON_INTERPRET=1, where Triton kernels run on the CPU
    in Triton's interpreter (slow, for tests);
  * "auto" (the default): fused on CUDA, reference elsewhere (never the interpreter); key-sparse keeps its
    own rule (its PyTorch memory-linear form on CUDA and for long no-grad inputs, its exact "dense" form for
    CPU training; see its module).
A class may add values of its own (softmax "naive", key-sparse "memory-linear" and "dense"); its class
attribute MODES lists them all, its docstring says what each runs, and an unknown value is a ValueError naming both.
`path(x)` names the value that runs for an input x (never "auto"); `use_fused(x)` says whether that is "fused".
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


def check_mode(owner: type, mode: str) -> str:
    """`mode` if it is one of owner.MODES, else a ValueError naming the class and the valid values."""
    if mode not in owner.MODES:
        raise ValueError(f"{owner.__name__}: unknown mode {mode!r}; valid modes: {', '.join(owner.MODES)}")
    return mode


def require_kernels(owner: str, x: torch.Tensor) -> None:
    """mode="fused" on a tensor the kernels cannot take (CPU without TRITON_INTERPRET=1): a clear error."""
    if not kernels_can_run(x):
        raise RuntimeError(f"{owner}: mode='fused' needs a CUDA tensor (or TRITON_INTERPRET=1 for Triton's CPU "
                           "interpreter); use mode='auto' or 'reference' on the CPU")


class ModeSwitch(nn.Module):
    """MODES and the `mode` switch (module docstring), for every mixer in sercore.attention.

    `mode` is checked when set, in the constructor or later (m.mode = "fused")."""

    MODES = MODES

    def __init__(self, mode: str = "auto"):
        super().__init__()
        self.mode = mode

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = check_mode(type(self), value)

    def _auto_fused(self, x: torch.Tensor) -> bool:
        """What "auto" picks for x: the fused path on CUDA, never the interpreter (far too slow for real work)."""
        return x.is_cuda

    def use_fused(self, x: torch.Tensor) -> bool:
        """Whether the fused kernel runs for x under this mode ("fused" off CUDA raises)."""
        if self.mode == "fused":
            require_kernels(type(self).__name__, x)
            return True
        return self.mode == "auto" and self._auto_fused(x)

    def path(self, x: torch.Tensor) -> str:
        """The mode that runs for x, never "auto": what a benchmark row or a check names as timed/tested."""
        if self.mode in ("auto", "fused"):
            return "fused" if self.use_fused(x) else "reference"
        return self.mode


class SequenceMixer(ModeSwitch):
    """Base class for the sequence mixers in sercore.attention (all but area, which mixes a 2-D map)."""

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
