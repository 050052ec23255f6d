"""LightNet attention (Qin et al. 2024, "You Only Scan Once") as flash-linear-attention 0.6.0 builds it.

Per head (K = expand_ratio key channels, V = hidden_size / num_heads value channels):
    q = silu(x W_q),  k = x W_k (logits),  v = x W_v                (optionally after short convs, no activation)
    z_t[d] = log sum_{j<=t} exp(k_j[d])                              (a running logsumexp per key channel)
    o_t    = K^-1/2 sum_{s<=t} sum_d q_t[d] exp(k_s[d] - z_t[d]) v_s
recurrently (fla: fused_additive_gate then gated linear attention):
    S_t = exp(z_{t-1} - z_t) * S_{t-1} + exp(k_t - z_t) v_t^T,   o_t = K^-1/2 q_t^T S_t
    y   = o_proj( RMSNorm_over_all_heads(o) * swish(x W_g1 W_g2) )  (a low-rank output gate)
so attention_matrix gives A[t, s] = K^-1/2 sum_d q_t[d] exp(k_s[d] - z_t[d]) and the value path is
o = A v before the norm/gate/o_proj (forward_from_matrix applies them).

`mode` (base.SequenceMixer): "fused" runs fla.ops.lightnet.chunk_lightnet (fla imported there only);
"reference" is our chunkwise form, `lightnet_parallel`: chunked linear attention with the weights factorised
at each chunk's start (matrix products), which hands a call whose keys would overflow that factorisation to
`lightnet_parallel_loop`, the plain one-chunk-at-a-time form in which every exponent is <= 0 (stable for any
key size; the specification the fast form is tested against; the fast form also takes z from
`running_logsumexp`, a cumsum, instead of torch's slow CPU scan); "auto" picks fused on CUDA. forward_recurrent
is the state update above, the test oracle. Constructor arguments, defaults and parameter names are fla's
LightNetAttention's (state_dicts load both ways), except `mode`, which picks our path.

fla 0.6.0 details we reproduce, and differences from the paper:
  * the output RMSNorm runs with eps = 1e-6: fla's forward calls its fused norm-gate-linear function
    without eps, so `norm_eps` is stored (g_norm.eps) but has no effect. We do the same.
  * the norm spans all heads at once (hidden_size channels), not each head.
  * fla's layer has no positional encoding; the paper adds MD-TPE / MD-LRPE for multi-dimensional data.
  * the K^-1/2 score scale is fla's kernel default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sercore.attention._modules import FusedRMSNormGated, PackedCausalMixer, ShortConvolution, compute_dtype, rms_norm_gated

FLA_OUTPUT_NORM_EPS = 1e-6  # what fla 0.6.0's LightNetAttention.forward really uses (see docstring)


def _normalised_scores(q: torch.Tensor, k: torch.Tensor, z: torch.Tensor, row0: int, col0: int) -> torch.Tensor:
    """A block [..., R, C]: sum_d q_t[d] exp(k_s[d] - z_t[d]) for rows t = row0.., cols s = col0.., s <= t.

    q, z [..., R, K] and k [..., C, K] (leading dims B, H and optionally chunks). Masked before the exp,
    so no exponent exceeds 0."""
    t = torch.arange(row0, row0 + q.shape[-2], device=q.device)
    s = torch.arange(col0, col0 + k.shape[-2], device=q.device)
    causal = (s[None, :] <= t[:, None])[..., None]                      # [R, C, 1]
    logits = k[..., None, :, :] - z[..., :, None, :]                    # [..., R, C, K]
    w = torch.exp(torch.where(causal, logits, torch.tensor(float("-inf"), dtype=logits.dtype, device=q.device)))
    return torch.einsum("...rk,...rck->...rc", q, w)


def lightnet_matrix(q: torch.Tensor, k: torch.Tensor, block: int = 64) -> torch.Tensor:
    """A [B, H, T, T] from q (after silu) and k logits [B, T, H, K]."""
    dt = compute_dtype(q)
    q, k = q.to(dt).transpose(1, 2), k.to(dt).transpose(1, 2)
    z = torch.logcumsumexp(k, dim=2)
    rows = [_normalised_scores(q[:, :, r:r + block], k, z[:, :, r:r + block], r, 0) for r in range(0, q.shape[2], block)]
    return torch.cat(rows, dim=2) * q.shape[-1] ** -0.5


# Largest growth of z inside one chunk for which the factorised form is used: exp of +-this stays a normal
# number in the compute dtype (float32 overflows past exp(88), float64 past exp(709)); beyond it, the loop.
FACTOR_LIMIT = {torch.float32: 60.0, torch.float64: 600.0}
# Largest spread of one channel's keys (max - min over time) for which running_logsumexp shifts by the maximum:
# exp(k - max) stays a normal number (float32 from exp(-87), float64 from exp(-708)); beyond it, torch's scan.
SPREAD_LIMIT = {torch.float32: 80.0, torch.float64: 700.0}


def running_logsumexp(k: torch.Tensor, dim: int) -> torch.Tensor:
    """torch.logcumsumexp(k, dim) as max + log(cumsum(exp(k - max))), the shift being each channel's maximum
    over `dim` (held constant for the gradient: the value does not depend on it). Why: torch's CPU
    logcumsumexp is a scalar scan that took ~40 % of a LightNet training step, forward and backward; a cumsum
    and two elementwise passes are several times cheaper. When one channel's keys spread by more than
    SPREAD_LIMIT, exp(k - max) would underflow, so such a call runs torch.logcumsumexp."""
    top = k.detach().amax(dim, keepdim=True)
    if (top - k.detach().amin(dim, keepdim=True)).max() > SPREAD_LIMIT[k.dtype]:
        return torch.logcumsumexp(k, dim)
    return top + torch.log(torch.cumsum(torch.exp(k - top), dim))


def lightnet_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
    """`lightnet_parallel_loop`'s sums with the pairwise weights factorised at each chunk's start, so the
    intra-chunk scores are one matrix product instead of a [C, C, K] tensor of exponentials.

    With z_p = z before the chunk (z_0 for the first), exp(k_s - z_t) = exp(k_s - z_p) exp(z_p - z_t), so
    o_t = K^-1/2 q'_t (S + sum_{s in chunk, s<=t} k'_s v_s^T) with q' = q exp(z_p - z) and k' = exp(k - z_p):
    chunked linear attention, S the state normalised at z_p. The first factor exceeds 1 by at most
    exp(z_end - z_p), the growth of the running logsumexp over the chunk; when that passes FACTOR_LIMIT (a key
    dwarfing everything before it), the call runs `lightnet_parallel_loop` instead, whose exponents are all
    <= 0. Both compute the same numbers up to rounding (tests/test_attention_lightnet.py)."""
    dt = compute_dtype(q)
    B, T, H, K = q.shape
    C = chunk_size
    q2, k2, v2 = (x.to(dt).transpose(1, 2) for x in (q, k, v))
    z = running_logsumexp(k2, dim=2)
    # pad to whole chunks at the end: causality keeps the padded tokens out of every real output; k and z
    # repeat the last token so that the padded rows stay finite (their gradients would be NaN otherwise)
    pad = (-T) % C
    qc, vc = (F.pad(x, (0, 0, 0, pad)).unflatten(2, (-1, C)) for x in (q2, v2))             # [B, H, n, C, *]
    kc, zc = (F.pad(x, (0, 0, 0, pad), mode="replicate").unflatten(2, (-1, C)) for x in (k2, z))
    n = qc.shape[2]
    z_prev = torch.cat((z[:, :, :1], z[:, :, C - 1::C][:, :, :n - 1]), dim=2)[..., None, :]  # [B, H, n, 1, K]
    if (zc[..., -1:, :] - z_prev).max() > FACTOR_LIMIT[dt]:
        return lightnet_parallel_loop(q, k, v, chunk_size=16)
    qf, kf = qc * torch.exp(z_prev - zc), torch.exp(kc - z_prev)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    o = (qf @ kf.transpose(-1, -2)).masked_fill(~causal, 0) @ vc                                # intra-chunk
    if n > 1:
        # S_{j+1} = exp(z_p,j - z_p,j+1) (S_j + k'_j^T v_j): the scan over chunks, on views of batched tensors
        add = kf[:, :, :n - 1].transpose(-1, -2) @ vc[:, :, :n - 1]                             # [B, H, n-1, K, V]
        decay = torch.exp(z_prev[:, :, :n - 1] - z_prev[:, :, 1:]).transpose(-1, -2)            # [B, H, n-1, K, 1]
        states = [torch.zeros_like(add[:, :, 0])]
        for d, u in zip(decay.unbind(2), add.unbind(2)):
            states.append(d * (states[-1] + u))
        o = o + qf @ torch.stack(states, dim=2)
    o = o.flatten(2, 3)[:, :, :T] * K ** -0.5
    return o.transpose(1, 2).to(v.dtype)


def lightnet_parallel_loop(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int = 16) -> torch.Tensor:
    """Chunkwise LightNet one chunk at a time, every exponent <= 0: the specification `lightnet_parallel` is
    tested against, and what it runs when its factorised form would leave the float range. q, k [B, T, H, K], v [B, T, H, V] -> o [B, T, H, V] (v's dtype).

    The carried state is normalised, S = sum_{s<c0} exp(k_s - z_{c0-1}) v_s^T (weights sum to 1 per
    channel), so it stays bounded however large the keys are."""
    dt = compute_dtype(q)
    B, T, H, K = q.shape
    q, k, v2 = (x.to(dt).transpose(1, 2) for x in (q, k, v))
    z = torch.logcumsumexp(k, dim=2)
    state = q.new_zeros(B, H, K, v2.shape[-1])
    out = []
    for c0 in range(0, T, chunk_size):
        qc, kc, vc, zc = (x[:, :, c0:c0 + chunk_size] for x in (q, k, v2, z))
        o = _normalised_scores(qc, kc, zc, 0, 0) @ vc
        z_end = zc[:, :, -1]
        if c0 > 0:
            z_prev = z[:, :, c0 - 1]
            o = o + (qc * torch.exp(z_prev[:, :, None] - zc)) @ state
            state = torch.exp(z_prev - z_end)[..., None] * state
        state = state + torch.exp(kc - z_end[:, :, None]).transpose(-1, -2) @ vc
        out.append(o * K ** -0.5)
    return torch.cat(out, dim=2).transpose(1, 2).to(v.dtype)


def lightnet_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Token by token: z_t = logaddexp(z_{t-1}, k_t), S_t = exp(z_{t-1} - z_t) S_{t-1} + exp(k_t - z_t) v_t^T."""
    dt = compute_dtype(q)
    B, T, H, K = q.shape
    q, k, v2 = q.to(dt), k.to(dt), v.to(dt)
    out, z, state = [], None, None
    for t in range(T):
        if z is None:  # z_0 = k_0, so every channel's weight on v_0 is exp(0) = 1
            z, state = k[:, t], torch.ones_like(k[:, t])[..., None] * v2[:, t, :, None, :]
        else:
            z_new = torch.logaddexp(z, k[:, t])
            state = torch.exp(z - z_new)[..., None] * state + torch.exp(k[:, t] - z_new)[..., None] * v2[:, t, :, None, :]
            z = z_new
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t], state) * K ** -0.5)
    return torch.stack(out, dim=1).to(v.dtype)


class LightNetAttention(PackedCausalMixer):
    """fla.layers.LightNetAttention in plain PyTorch (fla's kernel on CUDA); see the module docstring.

    forward(x [B, T, D], mask [B, T] bool, True = real) -> [B, T, D]; padded outputs are zero and a
    padded row equals its sequence run alone. bidirectional=True adds a reversed pass with the same
    weights and averages the two core outputs before the norm/gate (PackedCausalMixer).
    mode: "auto" (fused on CUDA, reference elsewhere), "reference" (the PyTorch chunkwise form) or "fused" (fla's
    chunk_lightnet; CUDA, or the CPU under TRITON_INTERPRET=1); forward_recurrent is the token-by-token oracle."""

    chunk_size = 32  # the CPU chunk (benchmarks/reference_paths.py: 32 and 64 time alike, both beat 16)

    def __init__(self, mode: str = "auto", hidden_size: int = 1024, num_heads: int | None = None,
                 expand_ratio: int | None = 128, use_short_conv: bool = False, conv_size: int = 4,
                 conv_bias: bool = False, gate_low_rank_dim: int = 128, elementwise_affine: bool | None = True,
                 norm_eps: float = 1e-5, layer_idx: int | None = None, bidirectional: bool = False):
        super().__init__(mode)
        if expand_ratio is None and num_heads is not None:
            expand_ratio = hidden_size // num_heads
        elif expand_ratio is not None and num_heads is None:
            num_heads = hidden_size // expand_ratio
        elif expand_ratio is None and num_heads is None:
            raise ValueError("LightNetAttention: give expand_ratio or num_heads (both are None)")
        if hidden_size % num_heads:
            raise ValueError(f"LightNetAttention: hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.hidden_size, self.num_heads, self.expand_ratio = hidden_size, num_heads, expand_ratio
        self.key_dim, self.value_dim = int(num_heads * expand_ratio), hidden_size
        self.head_f_dim, self.head_i_dim = expand_ratio, hidden_size // num_heads
        self.use_short_conv, self.conv_size, self.conv_bias = use_short_conv, conv_size, conv_bias
        self.gate_low_rank_dim, self.layer_idx, self.bidirectional = gate_low_rank_dim, layer_idx, bidirectional

        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        if use_short_conv:
            self.q_conv1d = ShortConvolution(self.key_dim, conv_size, bias=conv_bias, activation=None)
            self.k_conv1d = ShortConvolution(self.key_dim, conv_size, bias=conv_bias, activation=None)
            self.v_conv1d = ShortConvolution(self.value_dim, conv_size, bias=conv_bias, activation=None)
        self.g_proj = nn.Sequential(nn.Linear(hidden_size, gate_low_rank_dim, bias=False),
                                    nn.Linear(gate_low_rank_dim, hidden_size, bias=False))
        self.g_norm = FusedRMSNormGated(hidden_size, elementwise_affine=elementwise_affine, eps=norm_eps)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    def _streams(self, x: torch.Tensor) -> dict:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.use_short_conv:  # x is packed (zeros after the real tokens), so the causal conv is exact
            q, k, v = self.q_conv1d(q), self.k_conv1d(k), self.v_conv1d(v)
        q = F.silu(q)
        return {"q": q.unflatten(-1, (-1, self.head_f_dim)), "k": k.unflatten(-1, (-1, self.head_f_dim)),
                "v": v.unflatten(-1, (-1, self.head_i_dim))}

    def _core(self, s: dict, form: str) -> torch.Tensor:
        if form == "fused":
            from fla.ops.lightnet import chunk_lightnet  # needs triton and CUDA

            return chunk_lightnet(s["q"], s["k"], s["v"])[0]
        if form == "recurrent":
            return lightnet_recurrent(s["q"], s["k"], s["v"])
        return lightnet_parallel(s["q"], s["k"], s["v"], self.chunk_size)

    def _core_matrix(self, s: dict) -> torch.Tensor:
        return lightnet_matrix(s["q"], s["k"])

    def _values(self, s: dict) -> torch.Tensor:
        return s["v"]

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        o = rms_norm_gated(o.flatten(-2), self.g_proj(x), self.g_norm.weight, FLA_OUTPUT_NORM_EPS, "swish")
        return self.o_proj(o.to(x.dtype))
