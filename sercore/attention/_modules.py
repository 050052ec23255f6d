"""Plain-PyTorch stand-ins for the flash-linear-attention (fla 0.6.0) building blocks.

Every class keeps fla's constructor argument names and parameter names/shapes, so a state_dict moves
between our mechanisms and fla's layer classes in both directions. The maths follows fla's kernels
(read in fla/modules/*), computed in float32 for low-precision inputs (as fla's kernels do) and in
float64 for float64 inputs, so the tests can check our own formulations to 1e-10.

Also here: helpers for the padding convention shared by the fla-style mixers (`pack_left`,
`unpack`, `reverse_real`). fla un-pads to cu_seqlens, so a padded row equals the sequence run
alone; for causal mixers the same follows from moving each row's real tokens to the front.
`PackedCausalMixer` builds forward / attention_matrix / forward_from_matrix / bidirectional on them.

This file is shared by the fla-style mechanisms (retnet, lightnet, fox, gsa, kda): add, don't rewrite.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sercore.attention.base import SequenceMixer, check_mask


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs (fla's kernels accumulate in float32), float64 kept."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def activation(name: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation fla looks up in transformers' ACT2FN (swish = silu). None means identity."""
    if name is None:
        return lambda x: x
    builtin = {"swish": F.silu, "silu": F.silu, "sigmoid": torch.sigmoid, "relu": F.relu}
    if name in builtin:
        return builtin[name]
    from transformers.activations import ACT2FN  # only for the rarer names; it is slow to import

    if name not in ACT2FN:
        raise ValueError(f"sercore.attention._modules: unknown activation {name!r}; "
                         f"valid names: {', '.join(sorted(ACT2FN))}")
    return ACT2FN[name]


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _register_affine(norm: nn.Module, hidden_size: int, elementwise_affine: bool, bias: bool,
                     device=None, dtype=None) -> None:
    """fla's norm parameters: weight (ones) with elementwise_affine, bias (zeros) only with both; the names
    exist as None otherwise, as in fla, so state_dicts match."""
    norm.register_parameter("weight", None)
    norm.register_parameter("bias", None)
    if elementwise_affine:
        norm.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        if bias:
            norm.bias = nn.Parameter(torch.zeros(hidden_size, device=device, dtype=dtype))


def _apply_affine(y: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    if weight is not None:
        y = y * weight.to(y.dtype)
    if bias is not None:
        y = y + bias.to(y.dtype)
    return y


class RMSNorm(nn.Module):
    """fla.modules.RMSNorm: x / sqrt(mean(x^2) + eps) * weight (+ bias) over the last dim."""

    def __init__(self, hidden_size: int, elementwise_affine: bool = True, bias: bool = False,
                 eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.hidden_size, self.elementwise_affine, self.eps = hidden_size, elementwise_affine, eps
        _register_affine(self, hidden_size, elementwise_affine, bias, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _rms(x.to(compute_dtype(x)), self.eps)
        return _apply_affine(y, self.weight, self.bias).to(x.dtype)


class FusedRMSNormGated(nn.Module):
    """fla.modules.FusedRMSNormGated: RMSNorm(x) * weight * act(g), act in swish/silu/sigmoid.

    fla registers `bias` as None here (no bias parameter), and so do we."""

    def __init__(self, hidden_size: int, elementwise_affine: bool = True, eps: float = 1e-5,
                 activation: str = "swish", device=None, dtype=None):
        super().__init__()
        if activation not in ("swish", "silu", "sigmoid"):
            raise ValueError(f"FusedRMSNormGated: unsupported activation {activation!r}; "
                             "valid: swish, silu, sigmoid")
        self.hidden_size, self.elementwise_affine, self.eps = hidden_size, elementwise_affine, eps
        self.activation = activation
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
        self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return rms_norm_gated(x, g, self.weight, self.eps, self.activation)


def rms_norm_gated(x: torch.Tensor, g: torch.Tensor, weight: torch.Tensor | None, eps: float,
                   activation: str = "swish") -> torch.Tensor:
    """RMSNorm(x) * weight * act(g) in the compute dtype, returned in x's dtype (fla's fused kernel)."""
    dt = compute_dtype(x)
    y = _rms(x.to(dt), eps)
    if weight is not None:
        y = y * weight.to(dt)
    g = g.to(dt)
    y = y * (F.silu(g) if activation in ("swish", "silu") else torch.sigmoid(g))
    return y.to(x.dtype)


class GroupNorm(nn.Module):
    """fla.modules.GroupNorm: normalise each of num_groups contiguous channel groups of the last dim
    (RMS when is_rms_norm, else mean/variance), then one affine weight (and bias) over all channels."""

    def __init__(self, num_groups: int, hidden_size: int, elementwise_affine: bool = True,
                 bias: bool = False, eps: float = 1e-5, is_rms_norm: bool = False, device=None, dtype=None):
        super().__init__()
        if hidden_size % num_groups != 0:
            raise ValueError(f"GroupNorm: hidden_size {hidden_size} is not divisible by num_groups {num_groups}")
        self.num_groups, self.hidden_size, self.eps = num_groups, hidden_size, eps
        self.elementwise_affine, self.is_rms_norm = elementwise_affine, is_rms_norm
        _register_affine(self, hidden_size, elementwise_affine, bias, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.to(compute_dtype(x)).unflatten(-1, (self.num_groups, -1))
        if not self.is_rms_norm:
            y = y - y.mean(-1, keepdim=True)
        y = _rms(y, self.eps).flatten(-2)
        return _apply_affine(y, self.weight, self.bias).to(x.dtype)


class ShortConvolution(nn.Conv1d):
    """fla.modules.ShortConvolution: causal depthwise conv, weight [D, 1, K] (weight[..., K-1] multiplies
    the current token), optional bias, then optional silu.

    forward(x [B, T, D], mask=None, cu_seqlens=None) -> y [B, T, D] (fla returns (y, cache); no cache here).
    `mask` [B, T] zeroes padded inputs before the conv (as fla's `mask`), which isolates a sequence from
    its padding when the real tokens are contiguous. `cu_seqlens` (with B = 1) marks packed sequences:
    no tap crosses a sequence start.
    """

    def __init__(self, hidden_size: int, kernel_size: int, bias: bool = False, activation: str | None = "silu",
                 backend: str | None = "triton", device=None, dtype=None, **kwargs):
        super().__init__(hidden_size, hidden_size, kernel_size, padding=kernel_size - 1, groups=hidden_size,
                         bias=bias, device=device, dtype=dtype)
        if activation not in (None, "silu", "swish"):
            raise ValueError(f"ShortConvolution: activation must be None, 'silu' or 'swish', got {activation!r}")
        self.hidden_size, self.activation = hidden_size, activation

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
        K, T = self.kernel_size[0], x.shape[1]
        out_dtype, dt = x.dtype, compute_dtype(x)  # fla's kernel accumulates in float32
        x, weight = x.to(dt), self.weight.to(dt)
        bias = self.bias.to(dt) if self.bias is not None else None
        if cu_seqlens is None:
            y = F.conv1d(x.transpose(1, 2), weight, bias, padding=K - 1, groups=self.hidden_size)
            y = y[..., :T].transpose(1, 2)
        else:
            if x.shape[0] != 1:
                raise ValueError(f"ShortConvolution: cu_seqlens needs batch size 1, got {x.shape[0]}")
            # position of each token inside its own sequence: taps reaching further back are cut
            starts = torch.repeat_interleave(cu_seqlens[:-1], cu_seqlens.diff())
            pos = torch.arange(T, device=x.device) - starts
            y = torch.zeros_like(x)
            for lag in range(K):
                shifted = F.pad(x, (0, 0, lag, 0))[:, :T] * (pos >= lag).unsqueeze(-1).to(x.dtype)
                y = y + shifted * weight[:, 0, K - 1 - lag]
            if bias is not None:
                y = y + bias
        return (F.silu(y) if self.activation is not None else y).to(out_dtype)


class RotaryEmbedding(nn.Module):
    """fla.modules.rotary.RotaryEmbedding (no XPos): non-interleaved by default (GPT-NeoX halves: channel
    i pairs with i + dim/2), inv_freq = base^(-2i/dim), positions 0..T-1 per row; the first `dim`
    channels of each head rotate, the rest pass through. Like fla, the cos/sin tables are computed in
    float32 and rounded to the input dtype (float64 inputs get float64 tables).

    forward(q [B, T, H, D], k [B, T, Hk, D], positions=None) -> (q, k); positions [T] or [B, T] overrides
    0..T-1. No parameters and no persistent buffers (so nothing in the state_dict, as in fla)."""

    def __init__(self, dim: int, base: float = 10000.0, interleaved: bool = False, device=None):
        super().__init__()
        if dim % 2:
            raise ValueError(f"RotaryEmbedding: dim must be even, got {dim}")
        self.dim, self.base, self.interleaved = dim, float(base), interleaved

    def tables(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        table_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2, device=positions.device,
                                                     dtype=table_dtype) / self.dim))
        freqs = positions.to(table_dtype).unsqueeze(-1) * inv_freq
        return freqs.cos().to(dtype), freqs.sin().to(dtype)

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        dt = compute_dtype(x)
        cos, sin = cos.to(dt).unsqueeze(-2), sin.to(dt).unsqueeze(-2)  # broadcast over heads
        xr, rest = x[..., :self.dim].to(dt), x[..., self.dim:]
        if self.interleaved:
            x1, x2 = xr[..., 0::2], xr[..., 1::2]
            y = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
        else:
            x1, x2 = xr.chunk(2, dim=-1)
            y = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return torch.cat((y.to(x.dtype), rest), dim=-1)

    def forward(self, q: torch.Tensor, k: torch.Tensor,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if positions is None:
            positions = torch.arange(q.shape[1], device=q.device)
        cos, sin = self.tables(positions, q.dtype)
        return self.rotate(q, cos, sin), self.rotate(k, cos, sin)


# ---- padding: fla's "a padded row equals the sequence run alone" for causal mixers ----

def pack_left(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Move each row's real tokens (in order) to the front and zero the rest.

    Returns (packed [B, T, ...], lengths [B], order [B, T] or None): packed[b, i] = x[b, order[b, i]].
    A causal mixer run on `packed` gives every real token exactly what it would get alone, since the
    padding now comes after it. With mask None nothing moves (order None)."""
    B, T = x.shape[:2]
    if mask is None:
        return x, torch.full((B,), T, dtype=torch.long, device=x.device), None
    # stable sort on "is padding" keeps the real tokens' order
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    lengths = mask.sum(1)
    keep = (torch.arange(T, device=x.device) < lengths[:, None])
    packed = _zero_where_not(_gather_time(x, order), keep)
    return packed, lengths, order


def unpack(y: torch.Tensor, order: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
    """Inverse of pack_left for outputs y [B, T, ...]; padded positions come back as zeros."""
    if order is None:
        return y
    inverse = torch.argsort(order, dim=1)
    return _zero_where_not(_gather_time(y, inverse), mask)


def reverse_real(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first lengths[b] steps of each packed row (the real tokens), leave the rest.

    Its own inverse, so the same call maps a reversed pass's outputs back to forward time."""
    return _gather_time(x, _reversal_index(lengths, x.shape[1]))


def _expand(m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return m.reshape(*m.shape, *([1] * (like.dim() - 2)))


def _zero_where_not(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    # where, not multiply: padding may hold inf/nan and 0 * inf is nan
    return torch.where(_expand(keep, x), x, torch.zeros((), dtype=x.dtype, device=x.device))


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, _expand(index, x).expand(*index.shape, *x.shape[2:]))


# ---- the shared shape of a causal fla-style mixer: pack, run causally (both ways if asked), unpack ----

class PackedCausalMixer(SequenceMixer):
    """Template for the causal fla layers: padding as fla (a padded row equals the sequence alone, padded
    outputs are zero), an optional bidirectional variant and the attention matrix, written once.

    `mode` (MODES, base.SequenceMixer) picks the core: "reference" runs the chunkwise / blockwise PyTorch form,
    "fused" fla's kernel (CUDA, or the CPU under TRITON_INTERPRET=1), "auto" fused on CUDA and reference
    elsewhere. forward_recurrent runs the token-by-token form, the tests' oracle (not a mode: it exists to
    check the other two).

    A subclass computes, on a packed x [B, T, D] (real tokens first, zeros after):
      _streams(x) -> dict      everything the core reads (q, k, v, gates ...), per token
      _core(streams, form)     -> o [B, T, H, Dv]; form "fused" (fla kernel), "parallel" (the reference
                               mode's chunkwise form) or "recurrent" (forward_recurrent's)
      _core_matrix(streams)    -> A [B, H, T, T] with o[t] = sum_s A[t, s] v[s]
      _values(streams)         -> v [B, T, H, Dv], the values A mixes (kv heads repeated to H)
      _output(o, x)            -> y [B, T, D], everything after the core (norm, gate, o_proj)
    and sets self.bidirectional and self.use_short_conv.

    bidirectional=True runs the same layer (same weights) a second time over the time-reversed real
    tokens and AVERAGES the two core outputs before the shared output stage; so the equivalent matrix is
    (A_forward + A_backward) / 2, where A_backward is upper triangular.
    """

    bidirectional: bool = False
    use_short_conv: bool = False

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, D], mask [B, T] (True = real) -> [B, T, D], by the core `mode` picks."""
        return self._run(x, mask, "fused" if self.use_fused(x) else "parallel")

    def forward_recurrent(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """forward(x, mask) by the token-by-token recurrence: slow, the oracle the tests hold the other cores to."""
        return self._run(x, mask, "recurrent")

    def _run(self, x: torch.Tensor, mask: torch.Tensor | None, form: str) -> torch.Tensor:
        mask = check_mask(x, mask)
        packed, lengths, order = pack_left(x, mask)
        o = self._core(self._streams(packed), form)
        if self.bidirectional:
            reversed_x = reverse_real(packed, lengths)
            o = 0.5 * (o + reverse_real(self._core(self._streams(reversed_x), form), lengths))
        return unpack(self._output(o, packed), order, mask)

    def attention_matrix(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, H, T, T]: o_t = sum_s A[t, s] v_s is the core's output before the output stage (see
        forward_from_matrix). Rows and columns of padded tokens are zero."""
        mask = check_mask(x, mask)
        self._check_matrix_defined()
        packed, lengths, order = pack_left(x, mask)
        a = self._core_matrix(self._streams(packed))
        if self.bidirectional:
            backward = self._core_matrix(self._streams(reverse_real(packed, lengths)))
            a = 0.5 * (a + _permute_matrix(backward, _reversal_index(lengths, x.shape[1])))
        real = torch.arange(x.shape[1], device=x.device) < lengths[:, None]
        a = torch.where((real[:, None, :, None] & real[:, None, None, :]), a, torch.zeros((), dtype=a.dtype,
                                                                                            device=a.device))
        return a if order is None else _permute_matrix(a, torch.argsort(order, dim=1))

    def forward_from_matrix(self, x: torch.Tensor, a: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Rebuild forward(x, mask) from A = attention_matrix(x, mask): the same values and output
        stage, with the core replaced by o = A v."""
        mask = check_mask(x, mask)
        self._check_matrix_defined()
        packed, lengths, order = pack_left(x, mask)
        if order is not None:
            a = _permute_matrix(a, order)
        v = self._values(self._streams(packed))
        o = torch.einsum("bhts,bshv->bthv", a.to(v.dtype), v)
        return unpack(self._output(o, packed), order, mask)

    def _check_matrix_defined(self) -> None:
        if self.bidirectional and self.use_short_conv:
            raise NotImplementedError(
                f"{type(self).__name__}: with bidirectional=True and use_short_conv=True the reversed pass "
                "convolves the reversed sequence, so its values differ from the forward pass's and no single "
                "matrix A mixes one set of values")


def _reversal_index(lengths: torch.Tensor, T: int) -> torch.Tensor:
    t = torch.arange(T, device=lengths.device).expand(lengths.shape[0], T)
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def _permute_matrix(a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """a'[b, h, i, j] = a[b, h, index[b, i], index[b, j]] for a [B, H, T, T]."""
    B, H, T, _ = a.shape
    rows = index[:, None, :, None].expand(B, H, T, T)
    a = torch.gather(a, 2, rows)
    cols = index[:, None, None, :].expand(B, H, T, T)
    return torch.gather(a, 3, cols)
