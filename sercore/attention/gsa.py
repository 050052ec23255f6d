"""Gated Slot Attention (GSA), matching fla 0.6.0's `fla.layers.GatedSlotAttention`.

Per head, M memory slots are written and read twice, both times by gated linear attention that decays
along the slot axis (fla/ops/gsa/naive.py; Zhang et al. 2024, "Gated Slot Attention"):

    g_t = logsigmoid(f_t) / gate_logit_normalizer      log forget gate per slot, <= 0   [M]
    s_t = 1 - exp(g_t)                                  how much token t writes into each slot
    pass 1 (keys -> slots):   Hk_t = Hk_{t-1} Diag(exp g_t) + k_t s_t^T          [K, M]
                              l_t  = scale * q_t^T Hk_t,   p_t = softmax_m(l_t)
    pass 2 (slots -> values): Hv_t = Diag(exp g_t) Hv_{t-1} + s_t v_t^T          [M, V]
                              o_t  = p_t^T Hv_t
so o_t = sum_{j<=t} A[t, j] v_j with A[t, j] = sum_m p_t[m] s_j[m] prod_{i=j+1..t} exp(g_i[m]).

Around the core (as fla's layer): q, k = feature_map(q_proj x), (k_proj x) (swish by default), v = silu(v_proj x)
(each after an optional causal short convolution with silu), f = f_proj x; heads of k, v, f are shared by
num_heads / num_kv_heads query heads; out = o_proj(RMSNorm_{hidden_size}(silu(o))).

Three formulations of the core, all on [B, T, H, *] tensors:
  * `gsa_chunked`: the CPU path. Chunks of C tokens; across chunks two states [K, M] and [M, V] are carried.
    `gsa_chunked_loop` is that one chunk at a time, with the decay between every pair of tokens of a chunk
    materialised as exp(G_t - G_j) ([C, C, M], G the in-chunk cumulative gate, exponents <= 0, so no
    overflow however strong the forgetting): the specification. `gsa_chunked`, what the layer runs,
    factorises it as exp(G_t) exp(-G_j) (matrix products, all chunks at once, as kda.kda_chunked) and hands
    a call whose decays would overflow that to `gsa_chunked_loop`.
  * `gsa_recurrent`: token by token, the two passes one after the other (the test oracle).
  * `gsa_attention`: the T x T matrix A above, for heatmaps and for checking the value path.
On CUDA the fused path calls fla's `chunk_gsa` (`fused_recurrent_gsa` for T <= 64, as fla's layer does).
The kernels run on the packed, zero-padded batch without cu_seqlens: each row's padding follows its
real tokens, so causality keeps it out of them.

Options that fla 0.6.0 accepts but ignores are rejected here rather than silently ignored: `use_output_gate`
(no gate projection is ever built), `use_norm=False` (g_norm is always applied), `norm_eps` other than 1e-5
(fla's forward calls `rms_norm_linear` without passing eps, so 1e-5 is always used), and `expand_v != 1`
(g_norm has hidden_size channels but is applied to the value_dim outputs, which fails in fla).
The recurrences above are fla's ops (fla/ops/gsa). What fla's layer (fla/layers/gsa.py) adds on top,
and we follow: the first pass uses scale=1 (the layer's default; fla's op on its own would use K^-1/2) and
the second pass has no scale; q, k go through the swish feature map and v through
silu; the output RMSNorm spans all heads together (hidden_size channels), not each head.

Padding, bidirectional, attention matrix: `_modules.PackedCausalMixer` (shared with retnet, lightnet, fox,
kda). Real tokens are packed to the front of each row, so a padded row equals the sequence run alone (fla
un-pads to cu_seqlens for the same effect) and padded outputs are zero. `bidirectional=True` (not in fla;
for the causal-vs-bidirectional experiment) runs the same weights again over the time-reversed real tokens
and averages the two core outputs o before the output stage; the matrix is then (A_fwd + A_bwd) / 2.
`mode` picks the core ("reference" = gsa_chunked, "fused" = fla's kernels, "auto"); forward_recurrent runs
gsa_recurrent;
`forward_from_matrix(x, attention_matrix(x, mask), mask)` rebuilds forward through A @ v.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sercore.attention._modules import PackedCausalMixer, RMSNorm, ShortConvolution, compute_dtype

FEATURE_MAPS = ("swish", "relu", "t2r")


# ---------------------------------------------------------------- the core: three formulations

def _heads_first(*xs: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    return [x.transpose(1, 2).to(dtype) for x in xs]


def _pair_decay(G: torch.Tensor) -> torch.Tensor:
    """exp(G_t - G_j) for j <= t and 0 above the diagonal, from cumulative log gates G [..., C, M] -> [..., C, C, M].

    The exponent is masked to -inf before exp (not the result after), so nothing overflows."""
    C = G.shape[-2]
    causal = torch.ones(C, C, dtype=torch.bool, device=G.device).tril()[..., None]
    diff = G.unsqueeze(-2) - G.unsqueeze(-3)
    return torch.where(causal, diff, torch.full((), -math.inf, dtype=G.dtype, device=G.device)).exp()


def gsa_recurrent(q, k, v, s, g, scale: float) -> torch.Tensor:
    """Token-by-token GSA. q, k [B, T, H, K]; v [B, T, H, V]; s, g [B, T, H, M] -> o [B, T, H, V]."""
    dt = compute_dtype(v)
    q, k, v, s, g = _heads_first(q, k, v, s, g, dtype=dt)
    B, H, T, K = q.shape
    hk = q.new_zeros(B, H, K, s.shape[-1])
    logits = []
    for t in range(T):
        hk = hk * g[:, :, t, None, :].exp() + k[:, :, t, :, None] * s[:, :, t, None, :]
        logits.append(torch.einsum("bhk,bhkm->bhm", q[:, :, t] * scale, hk))
    p = torch.stack(logits, dim=2).softmax(-1)
    hv = q.new_zeros(B, H, s.shape[-1], v.shape[-1])
    out = []
    for t in range(T):
        hv = hv * g[:, :, t, :, None].exp() + s[:, :, t, :, None] * v[:, :, t, None, :]
        out.append(torch.einsum("bhm,bhmv->bhv", p[:, :, t], hv))
    return torch.stack(out, dim=1)


# Largest total log decay of one chunk (any slot) for which the factorised form is used: exp of +-this
# stays a normal number in the compute dtype (float32 overflows past exp(88), float64 past exp(709)).
FACTOR_LIMIT = {torch.float32: 60.0, torch.float64: 600.0}


def gsa_chunked(q, k, v, s, g, scale: float, chunk_size: int = 16) -> torch.Tensor:
    """`gsa_chunked_loop`'s sums with the pairwise decays factorised, exp(G_t - G_j) = exp(G_t) exp(-G_j), so
    the in-chunk sums are masked matrix products instead of [C, C, M] tensors, and all chunks are computed at
    once ([B, H, n, C, ...]). Neither state reads the softmax (both are written by k, v, s, g alone), so the
    Python loop over chunks only accumulates the two states; logits, softmax and outputs come after it, batched.
    exp(-G_j) grows up to exp(-G_end), the chunk's total decay: when that passes FACTOR_LIMIT (forgetting
    strong enough to overflow), the call runs `gsa_chunked_loop`, whose exponents are all <= 0.
    Same shapes as `gsa_recurrent`; both forms give the same numbers up to rounding."""
    dt = compute_dtype(v)
    qh, kh, vh, sh, gh = _heads_first(q, k, v, s, g, dtype=dt)
    B, H, T, K = qh.shape
    C = chunk_size
    # zero padding to whole chunks: g = 0 (no decay) and s = 0 (no write) leave the states alone
    pad = (-T) % C
    qc, kc, vc, sc, gc = (F.pad(x, (0, 0, 0, pad)).unflatten(2, (-1, C)) for x in (qh, kh, vh, sh, gh))
    G = gc.cumsum(3)                                                       # [B, H, n, C, M]
    G_end = G[:, :, :, -1:]                                                # [B, H, n, 1, M]
    if -G_end.min() > FACTOR_LIMIT[dt]:  # the loop at 16: its [C, C, M] tensors cost more as C grows
        return gsa_chunked_loop(q, k, v, s, g, scale, min(chunk_size, 16))
    up = G.exp()
    s_down = sc * (-G).exp()                                               # s_j exp(-G_j)
    to_end = (G_end - G).exp() * sc                                        # each write decayed to the chunk end
    # both states [K, M] and [V, M] (the value state transposed) decay along the slot axis: one stacked state
    writes = torch.cat((kc, vc), dim=-1).transpose(-1, -2) @ to_end        # [B, H, n, K + V, M]
    end_decay = G_end.exp()
    state = qh.new_zeros(B, H, K + vh.shape[-1], sh.shape[-1])
    states = []
    for w_j, d_j in zip(writes.unbind(2), end_decay.unbind(2)):
        states.append(state)
        state = state * d_j + w_j
    hk, hv = torch.stack(states, dim=2).split([K, vh.shape[-1]], dim=-2)   # [B, H, n, K, M], [B, H, n, V, M]
    qc = qc * scale
    qk = (qc @ kc.transpose(-1, -2)).tril()                               # [B, H, n, C, C], j <= t
    p = (up * (qc @ hk + qk @ s_down)).softmax(-1)                         # [B, H, n, C, M]
    p_up = p * up
    A = (p_up @ s_down.transpose(-1, -2)).tril()                           # A[t, j] = sum_m p_t exp(G_t - G_j) s_j
    o = p_up @ hv.transpose(-1, -2) + A @ vc
    return o.flatten(2, 3)[:, :, :T].transpose(1, 2)


def gsa_chunked_loop(q, k, v, s, g, scale: float, chunk_size: int = 16) -> torch.Tensor:
    """Chunk-parallel GSA one chunk at a time, both passes advancing together, with the pairwise decays
    materialised ([C, C, M], exponents <= 0): the specification `gsa_chunked` is tested against.
    Same shapes as `gsa_recurrent`."""
    dt = compute_dtype(v)
    q, k, v, s, g = _heads_first(q, k, v, s, g, dtype=dt)
    B, H, T, K = q.shape
    M, V = s.shape[-1], v.shape[-1]
    # Zero padding to a whole number of chunks: g = 0 (no decay) and s = 0 (no write) leave the states alone.
    pad = (-T) % chunk_size
    q, k, v, s, g = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v, s, g))
    hk, hv = q.new_zeros(B, H, K, M), q.new_zeros(B, H, M, V)
    out = []
    for start in range(0, T + pad, chunk_size):
        c = slice(start, start + chunk_size)
        qc, kc, vc, sc = q[:, :, c] * scale, k[:, :, c], v[:, :, c], s[:, :, c]
        G = g[:, :, c].cumsum(2)                                  # in-chunk log decay since the chunk start
        D = _pair_decay(G)                                        # [B, H, C, C, M]
        qk = qc @ kc.transpose(-1, -2)                            # [B, H, C, C]
        logits = G.exp() * (qc @ hk) + (qk.unsqueeze(-1) * D * sc.unsqueeze(-3)).sum(-2)
        p = logits.softmax(-1)                                    # [B, H, C, M]
        A = torch.einsum("bhtm,bhtjm->bhtj", p, D * sc.unsqueeze(-3))
        out.append((p * G.exp()) @ hv + A @ vc)
        to_end = (G[:, :, -1:] - G).exp() * sc                    # each write decayed to the chunk end
        hk = hk * G[:, :, -1, None, :].exp() + kc.transpose(-1, -2) @ to_end
        hv = hv * G[:, :, -1, :, None].exp() + to_end.transpose(-1, -2) @ vc
    return torch.cat(out, dim=2)[:, :, :T].transpose(1, 2)


def gsa_attention(q, k, s, g, scale: float) -> torch.Tensor:
    """The equivalent matrix A [B, H, T, T] with o_t = sum_j A[t, j] v_j (materialises [B, H, T, T, M])."""
    dt = compute_dtype(q)
    q, k, s, g = _heads_first(q, k, s, g, dtype=dt)
    D = _pair_decay(g.cumsum(2)) * s.unsqueeze(-3)                # D[t, j, m] = s_j[m] prod_{j<i<=t} alpha_i[m]
    qk = (q * scale) @ k.transpose(-1, -2)
    p = torch.einsum("bhtj,bhtjm->bhtm", qk, D).softmax(-1)
    return torch.einsum("bhtm,bhtjm->bhtj", p, D)


# ---------------------------------------------------------------- the layer

class _T2RFeatureMap(nn.Module):
    """fla's T2RFeatureMap (relu of a bias-free linear map per head), same parameter name `layer`."""

    def __init__(self, head_dim: int, dot_dim: int):
        super().__init__()
        self.layer = nn.Linear(head_dim, dot_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x).relu()


def _feature_map(name: str, head_k_dim: int) -> nn.Module:
    if name == "swish":
        return nn.SiLU()
    if name == "relu":
        return nn.ReLU()
    if name == "t2r":
        return _T2RFeatureMap(head_k_dim, head_k_dim)
    raise ValueError(f"sercore.attention.gsa: feature_map must be one of {FEATURE_MAPS}, got {name!r}")


class GatedSlotAttention(PackedCausalMixer):
    """fla 0.6.0 GatedSlotAttention with a PyTorch reference path; forward(x [B, T, D], mask [B, T]) -> [B, T, D].

    Constructor arguments, defaults and parameter names/shapes are fla's (so state_dicts move both ways),
    except: fla's `mode` ("chunk"/"fused_recurrent") is replaced by `mode` in MODES (base.SequenceMixer),
    there is no cache (`layer_idx` is accepted and unused), unused fla options are rejected (module
    docstring), and `bidirectional` and `chunk_size` (the CPU chunk length) are added.
    mode: "auto" (fused on CUDA, reference elsewhere), "reference" (the PyTorch chunked form, gsa_chunked) or
    "fused" (fla's chunk_gsa / fused_recurrent_gsa; CUDA, or the CPU under TRITON_INTERPRET=1); forward_recurrent
    is the token-by-token oracle.
    """

    def __init__(
        self,
        hidden_size: int = 1024,
        expand_k: float = 1.0,
        expand_v: float = 1.0,
        num_heads: int = 4,
        num_kv_heads: int | None = None,
        use_short_conv: bool = False,
        conv_size: int = 4,
        conv_bias: bool = False,
        num_slots: int | None = None,
        elementwise_affine: bool | None = True,
        norm_eps: float = 1e-5,
        gate_logit_normalizer: int = 8,
        feature_map: str = "swish",
        use_output_gate: bool = False,
        use_norm: bool = True,
        layer_idx: int | None = None,
        scale: float | None = 1.0,
        mode: str = "auto",
        bidirectional: bool = False,
        chunk_size: int = 16,
    ):
        super().__init__(mode)
        where = "sercore.attention.gsa.GatedSlotAttention"
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_heads % num_kv_heads:
            raise ValueError(f"{where}: num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
        key_dim, value_dim = hidden_size * expand_k, hidden_size * expand_v
        if not (math.isclose(key_dim, round(key_dim)) and math.isclose(value_dim, round(value_dim))):
            raise ValueError(f"{where}: hidden_size * expand_k and * expand_v must be integers, "
                             f"got {key_dim} and {value_dim}")
        self.key_dim, self.value_dim = round(key_dim), round(value_dim)
        if self.value_dim != hidden_size:
            raise ValueError(f"{where}: expand_v must give value_dim == hidden_size (got {self.value_dim} vs "
                             f"{hidden_size}); fla applies g_norm (hidden_size channels) to the value_dim outputs")
        if self.key_dim % num_heads or self.value_dim % num_heads:
            raise ValueError(f"{where}: key_dim {self.key_dim} and value_dim {self.value_dim} must be divisible "
                             f"by num_heads {num_heads}")
        if use_output_gate or not use_norm:
            raise ValueError(f"{where}: fla 0.6.0 stores use_output_gate/use_norm but never uses them (no output "
                             "gate, the norm is always applied); only the defaults are supported")
        if norm_eps != 1e-5:
            raise ValueError(f"{where}: fla 0.6.0's forward ignores norm_eps (rms_norm_linear uses 1e-5); "
                             f"only norm_eps=1e-5 is supported, got {norm_eps}")
        if chunk_size < 1:
            raise ValueError(f"{where}: chunk_size must be positive, got {chunk_size}")

        self.hidden_size, self.expand_k, self.expand_v = hidden_size, expand_k, expand_v
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.num_kv_groups = num_heads // num_kv_heads
        self.key_dim_per_group = self.key_dim // self.num_kv_groups
        self.value_dim_per_group = self.value_dim // self.num_kv_groups
        self.head_k_dim, self.head_v_dim = self.key_dim // num_heads, self.value_dim // num_heads
        self.num_slots = self.head_k_dim if num_slots is None else num_slots
        self.use_short_conv, self.conv_size, self.conv_bias = use_short_conv, conv_size, conv_bias
        self.gate_logit_normalizer, self.scale = gate_logit_normalizer, scale
        self.use_output_gate, self.use_norm, self.layer_idx = use_output_gate, use_norm, layer_idx
        self.bidirectional, self.chunk_size = bidirectional, chunk_size

        self.feature_map = _feature_map(feature_map, self.head_k_dim)
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim_per_group, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim_per_group, bias=False)
        self.f_proj = nn.Linear(hidden_size, num_kv_heads * self.num_slots, bias=False)
        if use_short_conv:
            self.q_conv1d = ShortConvolution(self.key_dim, conv_size, bias=conv_bias, activation="silu")
            self.k_conv1d = ShortConvolution(self.key_dim_per_group, conv_size, bias=conv_bias, activation="silu")
            self.v_conv1d = ShortConvolution(self.value_dim_per_group, conv_size, bias=conv_bias, activation="silu")
        # fla builds g_norm in float32 whatever the layer dtype; .to(dtype) on the layer converts it anyway.
        self.g_norm = RMSNorm(hidden_size, bool(elementwise_affine), eps=norm_eps, dtype=torch.float32)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    # -- PackedCausalMixer hooks, on packed rows (real tokens first, zeros after)

    def _streams(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """q, k [B,T,H,K]; v [B,T,H,V]; s, g [B,T,H,M] (kv heads repeated to H; s, g in the compute dtype)."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.use_short_conv:
            # causal, and the padding of a packed row comes after its real tokens: nothing leaks into them
            q, k, v = self.q_conv1d(q), self.k_conv1d(k), self.v_conv1d(v)
        q, k = (self.feature_map(y.unflatten(-1, (-1, self.head_k_dim))) for y in (q, k))
        v = F.silu(v.unflatten(-1, (-1, self.head_v_dim)))
        f = self.f_proj(x).unflatten(-1, (-1, self.num_slots))
        g = F.logsigmoid(f.to(compute_dtype(f))) / self.gate_logit_normalizer
        s = 1 - g.exp()
        if self.num_kv_groups > 1:
            k, v, s, g = (y.repeat_interleave(self.num_kv_groups, dim=2) for y in (k, v, s, g))
        return {"q": q, "k": k, "v": v, "s": s, "g": g}

    def _scale(self) -> float:
        return self.head_k_dim ** -0.5 if self.scale is None else self.scale

    def _core(self, st: dict[str, torch.Tensor], form: str) -> torch.Tensor:
        q, k, v, s, g = st["q"], st["k"], st["v"], st["s"], st["g"]
        if form == "parallel":
            return gsa_chunked(q, k, v, s, g, self._scale(), self.chunk_size)
        if form == "recurrent":
            return gsa_recurrent(q, k, v, s, g, self._scale())
        from fla.ops.gsa import chunk_gsa, fused_recurrent_gsa  # needs triton: imported on the CUDA path only

        # fla's layer picks the recurrent kernel for short inputs; same maths, we follow it
        kernel = fused_recurrent_gsa if q.shape[1] <= 64 else chunk_gsa
        o, _ = kernel(q=q, k=k, v=v, s=s.to(v.dtype), g=g.to(v.dtype), scale=self._scale())
        return o

    def _core_matrix(self, st: dict[str, torch.Tensor]) -> torch.Tensor:
        return gsa_attention(st["q"], st["k"], st["s"], st["g"], self._scale())

    def _values(self, st: dict[str, torch.Tensor]) -> torch.Tensor:
        return st["v"]

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """o [B, T, H, V] from the core -> [B, T, hidden_size]: o_proj(RMSNorm over all heads (silu(o)))."""
        o = self.g_norm(F.silu(o.flatten(-2)))
        return self.o_proj(o.to(x.dtype))
