"""Multi-scale retention (RetNet, Sun et al. 2023) as flash-linear-attention 0.6.0 builds it.

Per head h (H = num_heads, kv heads repeated to H as in fla's GQA):
    gamma_h = 1 - 2^(-5-h)
    q, k   = RoPE(feature_map(x W_q)), RoPE(feature_map(x W_k))     (optionally after a short conv)
    o_t    = K^-1/2 sum_{s<=t} (q_t . k_s) gamma_h^(t-s) v_s          (recurrently: S_t = gamma S_{t-1} + k_t v_t^T,
                                                                      o_t = K^-1/2 q_t S_t)
    y      = o_proj( RMSNorm_per_head(o) * swish(x W_g) )
so attention_matrix gives A[t, s] = K^-1/2 (q_t . k_s) gamma_h^(t-s), the value path is o = A v with
v = x W_v per head, and forward_from_matrix applies the per-head norm, gate and o_proj.

`mode` (base.SequenceMixer): "fused" runs fla.ops.retention.chunk_retention (fla imported there only);
"reference" is our chunkwise form (a T x T decay-masked product inside chunks of `chunk_size`, a carried
state between them; one chunk = the fully parallel form); "auto" picks fused on CUDA. forward_recurrent is
the token-by-token state update, the test oracle. Constructor arguments, defaults and parameter names are
fla's MultiScaleRetention's, so state_dicts load both ways, except `mode`, which here picks our path (MODES:
auto / reference / fused) instead of fla's kernel (the fused path always uses fla's chunk kernel, as fla does
while training).

Where fla 0.6.0 and the RetNet paper differ (we follow fla):
  * norm: fla normalises each head with RMSNorm (no mean subtraction); the paper uses GroupNorm.
  * the paper's extra scalings (decay rows divided by sqrt(sum D), scores by max(|sum|, 1)) are absent in
    fla; only q.k is scaled by K^-1/2. (A scale-invariant norm hides most of this, up to eps.)
  * position: fla uses standard RoPE on the halves of each head (GPT-NeoX pairing, base 10000) instead
    of the paper's xPos-style rotation on adjacent channel pairs.
  * gamma_h = 1 - 2^(-5-h) over the H query heads: as in the paper.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sercore.attention._modules import (FusedRMSNormGated, PackedCausalMixer, RMSNorm, RotaryEmbedding,
                                        ShortConvolution, activation, compute_dtype)


def retention_log_gamma(num_heads: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """log gamma_h = log(1 - 2^(-5-h)) for h = 0..H-1 (fla and the paper)."""
    h = torch.arange(num_heads, device=device, dtype=torch.float64)
    return torch.log1p(-torch.pow(2.0, -5.0 - h)).to(dtype)


def _decay_matrix(log_gamma: torch.Tensor, T: int) -> torch.Tensor:
    """D[h, t, s] = gamma_h^(t-s) for t >= s else 0."""
    t = torch.arange(T, device=log_gamma.device, dtype=log_gamma.dtype)
    lag = t[:, None] - t[None, :]
    return torch.where(lag >= 0, torch.exp(lag.clamp(min=0) * log_gamma[:, None, None]), 0.0)


def retention_matrix(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """A [B, H, T, T] from q, k [B, T, H, K] (already rotated)."""
    dt = compute_dtype(q)
    q, k = q.to(dt).transpose(1, 2), k.to(dt).transpose(1, 2)
    lg = retention_log_gamma(q.shape[1], q.device, dt)
    return (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5 * _decay_matrix(lg, q.shape[2])


def retention_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int = 128) -> torch.Tensor:
    """Chunkwise retention: q, k [B, T, H, K], v [B, T, H, V] -> o [B, T, H, V] (v's dtype)."""
    dt = compute_dtype(q)
    B, T, H, K = q.shape
    q, k, v2 = (z.to(dt).transpose(1, 2) for z in (q, k, v))
    lg = retention_log_gamma(H, q.device, dt)[:, None]           # [H, 1]
    state = q.new_zeros(B, H, K, v2.shape[-1])                   # sum_{s < chunk start} gamma^(c0-1-s) k_s v_s^T
    out = []
    for c0 in range(0, T, chunk_size):
        qc, kc, vc = (z[:, :, c0:c0 + chunk_size] for z in (q, k, v2))
        C = qc.shape[2]
        i = torch.arange(C, device=q.device, dtype=dt)
        intra = ((qc @ kc.transpose(-1, -2)) * _decay_matrix(lg[:, 0], C)) @ vc
        inter = (qc * torch.exp((i + 1) * lg)[..., None]) @ state
        out.append((intra + inter) * K ** -0.5)
        state = torch.exp(C * lg)[..., None] * state + (kc * torch.exp((C - 1 - i) * lg)[..., None]).transpose(-1, -2) @ vc
    return torch.cat(out, dim=2).transpose(1, 2).to(v.dtype)


def retention_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Token by token: S_t = gamma S_{t-1} + k_t v_t^T, o_t = K^-1/2 q_t S_t."""
    dt = compute_dtype(q)
    B, T, H, K = q.shape
    q, k, v2 = q.to(dt), k.to(dt), v.to(dt)
    gamma = torch.exp(retention_log_gamma(H, q.device, dt))[None, :, None, None]
    state = q.new_zeros(B, H, K, v2.shape[-1])
    out = []
    for t in range(T):
        state = gamma * state + k[:, t, :, :, None] * v2[:, t, :, None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t], state) * K ** -0.5)
    return torch.stack(out, dim=1).to(v.dtype)


class MultiScaleRetention(PackedCausalMixer):
    """fla.layers.MultiScaleRetention in plain PyTorch (fla's kernel on CUDA); see the module docstring.

    forward(x [B, T, D], mask [B, T] bool, True = real) -> [B, T, D]; padded outputs are zero and a
    padded row equals its sequence run alone. bidirectional=True adds a reversed pass with the same
    weights and averages the two retention outputs before the norm/gate (PackedCausalMixer).
    mode: "auto" (fused on CUDA, reference elsewhere), "reference" (the PyTorch chunkwise form) or "fused" (fla's
    chunk_retention; CUDA, or the CPU under TRITON_INTERPRET=1); forward_recurrent is the token-by-token oracle."""

    chunk_size = 128  # the CPU chunkwise form; 128 keeps the per-chunk T x T products small

    def __init__(self, mode: str = "auto", hidden_size: int = 1024, expand_k: float = 1.0, expand_v: float = 2.0,
                 num_heads: int = 8, num_kv_heads: int | None = None, feature_map: str | None = None,
                 use_short_conv: bool = False, conv_size: int = 4, conv_bias: bool = False,
                 use_output_gate: bool = True, gate_fn: str = "swish", elementwise_affine: bool | None = True,
                 norm_eps: float = 1e-5, fuse_norm: bool = True, layer_idx: int | None = None,
                 bidirectional: bool = False):
        super().__init__(mode)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.num_kv_heads = num_kv_heads if num_kv_heads is not None else num_heads
        if num_heads % self.num_kv_heads:
            raise ValueError(f"MultiScaleRetention: num_heads {num_heads} is not divisible by "
                             f"num_kv_heads {self.num_kv_heads}")
        self.num_kv_groups = num_heads // self.num_kv_heads
        self.key_dim, self.value_dim = _whole(hidden_size * expand_k, "expand_k"), _whole(hidden_size * expand_v, "expand_v")
        if self.key_dim % num_heads or self.value_dim % num_heads:
            raise ValueError(f"MultiScaleRetention: key dim {self.key_dim} and value dim {self.value_dim} "
                             f"must be divisible by num_heads {num_heads}")
        self.head_k_dim, self.head_v_dim = self.key_dim // num_heads, self.value_dim // num_heads
        if self.head_k_dim > 256:
            raise ValueError(f"MultiScaleRetention: head key dim {self.head_k_dim} > 256 (fla's rotary kernel limit)")
        self.feature_map = feature_map
        self.feature_map_fn = activation(feature_map) if feature_map is not None else None
        self.use_short_conv, self.conv_size, self.conv_bias = use_short_conv, conv_size, conv_bias
        self.use_output_gate, self.gate_fn_name = use_output_gate, gate_fn
        self.layer_idx, self.bidirectional = layer_idx, bidirectional

        kv_key_dim, kv_value_dim = self.key_dim // self.num_kv_groups, self.value_dim // self.num_kv_groups
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, kv_key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, kv_value_dim, bias=False)
        if use_output_gate:
            self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        if use_short_conv:
            self.q_conv1d = ShortConvolution(self.key_dim, conv_size, bias=conv_bias, activation="silu")
            self.k_conv1d = ShortConvolution(kv_key_dim, conv_size, bias=conv_bias, activation="silu")
            self.v_conv1d = ShortConvolution(kv_value_dim, conv_size, bias=conv_bias, activation="silu")
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)
        # fla fuses norm and gate only for a swish output gate; the other cases keep a float32 RMSNorm
        self.fuse_norm_and_gate = gate_fn == "swish" and fuse_norm and use_output_gate
        if self.fuse_norm_and_gate:
            self.g_norm_swish_gate = FusedRMSNormGated(self.head_v_dim, elementwise_affine=elementwise_affine,
                                                       eps=norm_eps)
        else:
            self.g_norm = RMSNorm(self.head_v_dim, elementwise_affine=elementwise_affine, eps=norm_eps,
                                  dtype=torch.float32)
            self.gate_fn = activation(gate_fn)
        self.rotary = RotaryEmbedding(dim=self.head_k_dim)

    def _streams(self, x: torch.Tensor) -> dict:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.use_short_conv:  # x is packed (zeros after the real tokens), so the causal conv is exact
            q, k, v = self.q_conv1d(q), self.k_conv1d(k), self.v_conv1d(v)
        q, k = q.unflatten(-1, (-1, self.head_k_dim)), k.unflatten(-1, (-1, self.head_k_dim))
        if self.feature_map_fn is not None:
            q, k = self.feature_map_fn(q), self.feature_map_fn(k)
        q, k = self.rotary(q, k)
        v = v.unflatten(-1, (-1, self.head_v_dim))
        if self.num_kv_groups > 1:  # kv head j serves query heads j*G .. j*G+G-1 (fla's repeat)
            k, v = k.repeat_interleave(self.num_kv_groups, dim=2), v.repeat_interleave(self.num_kv_groups, dim=2)
        return {"q": q, "k": k, "v": v}

    def _core(self, s: dict, form: str) -> torch.Tensor:
        if form == "fused":
            from fla.ops.retention import chunk_retention  # needs triton and CUDA

            return chunk_retention(s["q"], s["k"], s["v"])[0]
        if form == "recurrent":
            return retention_recurrent(s["q"], s["k"], s["v"])
        return retention_parallel(s["q"], s["k"], s["v"], self.chunk_size)

    def _core_matrix(self, s: dict) -> torch.Tensor:
        return retention_matrix(s["q"], s["k"])

    def _values(self, s: dict) -> torch.Tensor:
        return s["v"]

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.use_output_gate:
            g = self.g_proj(x)
            if self.fuse_norm_and_gate:
                o = self.g_norm_swish_gate(o, g.unflatten(-1, (-1, self.head_v_dim))).flatten(-2)
            else:
                o = self.g_norm(o).flatten(-2) * self.gate_fn(g)
        else:
            o = self.g_norm(o).flatten(-2)
        return self.o_proj(o.to(x.dtype))


def _whole(value: float, name: str) -> int:
    if not math.isclose(value, round(value)):
        raise ValueError(f"MultiScaleRetention: hidden_size * {name} must be an integer, got {value}")
    return round(value)
