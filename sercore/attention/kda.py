"""Kimi Delta Attention (KDA), matching fla 0.6.0's `fla.layers.KimiDeltaAttention`.

Per head, a gated delta rule with one forget rate per key channel (fla/ops/kda/naive.py, fla's naive recurrence):

    S_t = (I - beta_t k_t k_t^T) Diag(exp g_t) S_{t-1} + beta_t k_t v_t^T          S [K, V]
    o_t = scale * S_t^T q_t,   scale = K^-1/2
i.e. decay first, then the delta-rule correction against the decayed state. So o_t = sum_{s<=t} A[t, s] v_s
with A[t, s] = scale * beta_s q_t^T M_t ... M_{s+1} k_s, M_i = (I - beta_i k_i k_i^T) Diag(exp g_i).

Around the core (fla's layer): q, k, v = silu(short causal conv(proj x)) (silu(proj x) without the conv);
q, k L2-normalised per head (x / sqrt(sum x^2 + 1e-6), as fla's l2norm kernel); beta = sigmoid(b_proj x)
(times 2 with allow_neg_eigval); the log decay per key channel comes from a low-rank f_proj
(hidden -> head_v_dim -> heads * K) as
    g = -exp(A_log) * softplus(f_proj x + dt_bias)                     (default)
    g = lower_bound * sigmoid(exp(A_log) * (f_proj x + dt_bias))       (when lower_bound is set)
and out = o_proj(RMSNorm_per_head(o) * weight * sigmoid(g_proj x)) (FusedRMSNormGated, sigmoid gate).
With num_v_heads > num_heads (GVA) each q/k head serves num_v_heads / num_heads value heads.

Three formulations of the core, on [B, T, H, K] / [B, T, HV, V] tensors:
  * `kda_chunked`: the CPU path, the chunked WY/UT-transform form. Inside a chunk of C tokens the updates
    W solve the unit lower-triangular system (I + L) W = Diag(beta) (V - (exp(G) * K) S_0) with
    L[t, i] = beta_t k_t^T Diag(exp(G_t - G_i)) k_i (i < t), G the in-chunk cumulative log decay; then
    o = scale ((exp(G) * Q) S_0 + tril(Q Diag-decay K^T) W) and the state moves to the chunk end.
    `kda_chunked_loop` is that, one chunk at a time, with the pairwise decays exp(G_t - G_i) materialised
    ([C, C, K], exponents <= 0) so nothing overflows however strong the decay (fla splits into sub-chunks for
    the same reason): the specification. `kda_chunked`, what the layer runs, factorises them as
    exp(G_t) exp(-G_i) (matrix products, all chunks at once; the state recursion with a hand-written
    backward) and hands a call whose decays would overflow that to chunks of 16, then to `kda_chunked_loop`.
  * `kda_recurrent`: token by token, fla's naive recurrence (the test oracle).
  * `kda_attention`: the T x T matrix A above by propagating every column beta_s k_s through M_{s+1}, M_{s+2}, ...
On CUDA the fused path calls fla's `chunk_kda` (`fused_recurrent_kda` for T <= 64 without gradients in
eval mode, as fla's layer does), with gate, beta sigmoid and l2norm inside the kernel as fla's layer.
The kernels run on the packed, zero-padded batch without cu_seqlens: each row's padding follows its
real tokens, so causality keeps it out of them. The short convolution stays ours (plain PyTorch) on
every device, which also keeps clear of fla's causal_conv1d backward hazard with cu_seqlens and several
sequences (fla's causal_conv1d with cu_seqlens).

The recurrence above is fla's naive recurrence (decay, then the delta correction against the decayed
state). What fla's layer (fla/layers/kda.py) adds on top, and we follow: the decay is
-exp(A_log) * softplus(low-rank projection + dt_bias) with A_log per value head; head_dim
is 128 whatever hidden_size (hidden_size 1024 with 4 heads gives key_dim = value_dim = 512, not 1024);
the output norm is per head with a sigmoid (not swish) gate; the l2norm has eps 1e-6 inside the sqrt.
Inside fla: chunk_kda's docstring says the lower_bound gate applies "together with safe_gate=True", but
its gate kernel uses it whenever lower_bound is set; we follow the kernel. `safe_gate` itself only picks
a faster GPU kernel (and, as in fla, initialises A_log to 0) and requires lower_bound in [-5, 0).

Padding, bidirectional, attention matrix: `_modules.PackedCausalMixer` (see gsa.py). The short conv is
causal and packed padding follows the real tokens, so nothing leaks. With bidirectional=True and the
short conv (the default), the reversed pass convolves reversed time, so no single matrix exists and
`attention_matrix` raises; forward works.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sercore.attention._modules import FusedRMSNormGated, PackedCausalMixer, ShortConvolution, compute_dtype

L2NORM_EPS = 1e-6  # fla's l2norm_fwd default


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + L2NORM_EPS)


def kda_gate(f: torch.Tensor, A_log: torch.Tensor, dt_bias: torch.Tensor,
             lower_bound: float | None = None) -> torch.Tensor:
    """Log decay g [..., HV, K] (<= 0) from the raw f_proj output f [..., HV, K], in the compute dtype."""
    dt = compute_dtype(f)
    HV, K = f.shape[-2:]
    z = f.to(dt) + dt_bias.to(dt).view(HV, K)
    rate = A_log.to(dt).exp().view(HV, 1)
    if lower_bound is None:
        return -rate * F.softplus(z)
    return lower_bound * torch.sigmoid(rate * z)


def _prepare(q, k, g, beta, dtype):
    """[B, T, H, *] -> [B, HV, T, *] in `dtype`, q and k repeated over their GVA value heads (HV from g)."""
    groups = g.shape[2] // q.shape[2]
    if groups > 1:
        q, k = (x.repeat_interleave(groups, dim=2) for x in (q, k))
    q, k, g = (x.transpose(1, 2).to(dtype) for x in (q, k, g))
    return q, k, g, beta.transpose(1, 2).to(dtype)


def kda_recurrent(q, k, v, g, beta, scale: float) -> torch.Tensor:
    """Token-by-token KDA. q, k [B, T, H, K] (normalised); v [B, T, HV, V]; g [B, T, HV, K] log decay;
    beta [B, T, HV] -> o [B, T, HV, V]."""
    dt = compute_dtype(v)
    q, k, g, beta = _prepare(q, k, g, beta, dt)
    v = v.transpose(1, 2).to(dt)
    B, H, T, K = q.shape
    S = q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        S = S * g[:, :, t, :, None].exp()
        error = v[:, :, t] - torch.einsum("bhk,bhkv->bhv", k[:, :, t], S)
        S = S + (beta[:, :, t, None] * k[:, :, t]).unsqueeze(-1) * error.unsqueeze(-2)
        out.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, :, t], S))
    return torch.stack(out, dim=1)


def _pair_decay(G: torch.Tensor, strict: bool) -> torch.Tensor:
    """exp(G_t - G_i) [..., C, C, K] for i <= t (i < t if strict), 0 elsewhere; exponent masked before exp."""
    C = G.shape[-2]
    keep = torch.ones(C, C, dtype=torch.bool, device=G.device).tril(-1 if strict else 0)[..., None]
    diff = G.unsqueeze(-2) - G.unsqueeze(-3)
    return torch.where(keep, diff, torch.full((), -math.inf, dtype=G.dtype, device=G.device)).exp()


# Largest total log decay of one chunk (any channel) for which the factorised form is used: exp of +-this
# stays a normal number in the compute dtype (float32 overflows past exp(88), float64 past exp(709)).
FACTOR_LIMIT = {torch.float32: 60.0, torch.float64: 600.0}


class _StateScan(torch.autograd.Function):
    """The one sequential part of `kda_chunked`, with its backward written out: chunk by chunk,
        W_j = U_j - Wk_j S_j,    O_j = Q_j S_j,    S_{j+1} = Diag(exp a_j) (S_j + Kd_j^T W_j),    S_0 = 0,
    returning the updates W [..., n, C, V] and the state's share of the output O [..., n, C, V]
    (Kd = exp(-G) k, a = G_end: the chunk's decay applied to the state and to the new keys at once).
    Autograd through the Python loop would save each step's tensors and stack the per-chunk gradients; here
    the states go into one buffer and every gradient is taken chunk by chunk while its state is in cache.
    The gradient of a comes out as sum_V S_{j+1} * dS_{j+1} (no division by the decay)."""

    @staticmethod
    def forward(ctx, Q, U, Wk, Kd, a):
        *lead, n, C, V = U.shape
        S_all = U.new_empty(*lead, n + 1, Wk.shape[-1], V)   # S_all[j]: the state entering chunk j
        W_all, O_all = torch.empty_like(U), torch.empty_like(U)
        d = a.exp()[..., None]
        S = S_all[..., 0, :, :]
        S.zero_()
        for j in range(n):
            W = torch.sub(U[..., j, :, :], Wk[..., j, :, :] @ S, out=W_all[..., j, :, :])
            torch.matmul(Q[..., j, :, :], S, out=O_all[..., j, :, :])
            S = torch.mul(S + Kd[..., j, :, :].transpose(-1, -2) @ W, d[..., j, :, :], out=S_all[..., j + 1, :, :])
        ctx.save_for_backward(Q, Wk, Kd, d, S_all, W_all)
        return W_all, O_all

    @staticmethod
    def backward(ctx, gW, gO):
        Q, Wk, Kd, d, S_all, W_all = ctx.saved_tensors
        dQ, dU, dWk, dKd = (torch.empty_like(x) for x in (Q, W_all, Wk, Kd))
        da = torch.empty_like(d[..., 0])
        dN = torch.zeros_like(S_all[..., 0, :, :])       # gradient of the state after chunk j
        for j in reversed(range(Wk.shape[-3])):
            S = S_all[..., j, :, :]
            torch.sum(S_all[..., j + 1, :, :] * dN, -1, out=da[..., j, :])
            dX = dN * d[..., j, :, :]                     # gradient of S_j + Kd_j^T W_j
            torch.matmul(W_all[..., j, :, :], dX.transpose(-1, -2), out=dKd[..., j, :, :])
            dW = torch.add(gW[..., j, :, :], Kd[..., j, :, :] @ dX, out=dU[..., j, :, :])
            torch.matmul(gO[..., j, :, :], S.transpose(-1, -2), out=dQ[..., j, :, :])
            torch.matmul(dW, S.transpose(-1, -2), out=dWk[..., j, :, :]).neg_()
            dN = dX.add_(Q[..., j, :, :].transpose(-1, -2) @ gO[..., j, :, :]).sub_(
                Wk[..., j, :, :].transpose(-1, -2) @ dW)
        return dQ, dU, dWk, dKd, da


def kda_chunked(q, k, v, g, beta, scale: float, chunk_size: int = 16) -> torch.Tensor:
    """`kda_chunked_loop`'s sums with the pairwise decays factorised, exp(G_t - G_i) = exp(G_t) exp(-G_i),
    so Aqk and L are matrix products instead of [C, C, K] tensors, and everything that does not read the
    state is computed for all chunks at once ([B, H, n, C, ...]); only the state recursion runs chunk by chunk
    (`_StateScan`). The UT transform is applied as the explicit inverse (I + L)^-1 (a [C, C] solve, as fla's
    kernels do), so U and Wk are two products and no [C, V + K] right-hand side is concatenated.
    exp(-G_i) grows up to exp(-G_end), the chunk's total decay: when that passes FACTOR_LIMIT
    (decays strong enough to overflow), the call is run again with chunks of 16 (the layer's default is 32:
    fewer states to keep, and fla's initial decays stay below the limit at 32), and past the limit at 16
    it runs `kda_chunked_loop`, whose exponents are all <= 0.
    Same shapes as `kda_recurrent`; both forms give the same numbers up to rounding (tests/test_attention_kda.py)."""
    dt = compute_dtype(v)
    qh, kh, gh, bh = _prepare(q, k, g, beta, dt)
    vh = v.transpose(1, 2).to(dt)
    B, H, T, K = qh.shape
    C = chunk_size
    # zero padding to whole chunks: g = 0, beta = 0, k = 0 leave the state as it is
    pad = (-T) % C
    qc, kc, vc, gc = (F.pad(x, (0, 0, 0, pad)).unflatten(2, (-1, C)) for x in (qh, kh, vh, gh))   # [B, H, n, C, *]
    bc = F.pad(bh, (0, pad)).unflatten(2, (-1, C))[..., None]
    G = gc.cumsum(3)
    if -G[:, :, :, -1].min() > FACTOR_LIMIT[dt]:
        if C > 16:  # a shorter chunk decays less: try 16 before the loop
            return kda_chunked(q, k, v, g, beta, scale, 16)
        return kda_chunked_loop(q, k, v, g, beta, scale, C)  # C <= 16: its [C, C, K] tensors stay small
    up, down = G.exp(), (-G).exp()   # not 1 / up: its gradient, 1 / up^2, would overflow within the guard
    q_up, k_up, k_down = qc * up, kc * up, kc * down
    Aqk = (q_up @ k_down.transpose(-1, -2)).tril()                              # i <= t
    L = bc * (k_up @ k_down.transpose(-1, -2)).tril(-1)                          # i < t
    eye = torch.eye(C, dtype=dt, device=q.device)
    # W = (I + L)^-1 Diag(beta) (V - (exp(G) k) S_0) = U - Wk S_0: the UT transform
    solve = torch.linalg.solve_triangular(eye + L, eye, upper=False, unitriangular=True) * bc.transpose(-1, -2)
    U, Wk = solve @ vc, solve @ k_up
    W, O = _StateScan.apply(q_up, U, Wk, k_down, G[:, :, :, -1])
    o = torch.baddbmm(O.flatten(0, 2), Aqk.flatten(0, 2), W.flatten(0, 2), beta=scale, alpha=scale)  # scale (O + Aqk W)
    return o.view(B, H, -1, o.shape[-1])[:, :, :T].transpose(1, 2)


def kda_chunked_loop(q, k, v, g, beta, scale: float, chunk_size: int = 16) -> torch.Tensor:
    """Chunked (WY / UT transform) KDA one chunk at a time, as the module docstring reads it: the
    specification `kda_chunked` is tested against. Same shapes as `kda_recurrent`."""
    dt = compute_dtype(v)
    q, k, g, beta = _prepare(q, k, g, beta, dt)
    v = v.transpose(1, 2).to(dt)
    B, H, T, K = q.shape
    # zero padding to whole chunks: g = 0, beta = 0, k = 0 leave the state as it is
    pad = (-T) % chunk_size
    q, k, v, g = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v, g))
    beta = F.pad(beta, (0, pad))
    C = chunk_size
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    strict = torch.ones(C, C, dtype=torch.bool, device=q.device).tril(-1)
    S = q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for start in range(0, T + pad, C):
        c = slice(start, start + C)
        qc, kc, vc, bc = q[:, :, c], k[:, :, c], v[:, :, c], beta[:, :, c, None]
        G = g[:, :, c].cumsum(2)
        decayed_k = _pair_decay(G, strict=False) * kc.unsqueeze(-3)          # [t, i, K]: exp(G_t - G_i) k_i
        # one batched matmul for both: [t, i, K] @ [t, K, 2] -> q_t and k_t against every decayed k_i
        Aqk, Akk = (decayed_k @ torch.stack((qc, kc), dim=-1)).unbind(-1)   # Aqk includes i = t
        L = torch.where(strict, bc * Akk, torch.zeros((), dtype=q.dtype, device=q.device))
        # W = (I + L)^-1 Diag(beta) (V - (exp(G) k) S_0): the UT transform, as one triangular solve
        rhs = torch.cat((bc * vc, bc * G.exp() * kc), dim=-1)
        U, Wk = torch.linalg.solve_triangular(eye + L, rhs, upper=False, unitriangular=True).split(
            [vc.shape[-1], K], dim=-1)
        W = U - Wk @ S
        out.append(scale * ((G.exp() * qc) @ S + Aqk @ W))
        S = S * G[:, :, -1, :, None].exp() + ((G[:, :, -1:] - G).exp() * kc).transpose(-1, -2) @ W
    return torch.cat(out, dim=2)[:, :, :T].transpose(1, 2)


def kda_attention(q, k, g, beta, scale: float) -> torch.Tensor:
    """The equivalent matrix A [B, HV, T, T] with o_t = sum_s A[t, s] v_s (a T-step loop, O(T^2 K))."""
    q, k, g, beta = _prepare(q, k, g, beta, compute_dtype(q))
    B, H, T, K = q.shape
    X = q.new_zeros(B, H, K, T)      # column s holds M_t ... M_{s+1} beta_s k_s after step t
    onehot = torch.eye(T, dtype=q.dtype, device=q.device)
    rows = []
    for t in range(T):
        bk = beta[:, :, t, None] * k[:, :, t]                                      # beta_t k_t
        X = X * g[:, :, t, :, None].exp()                                          # Diag(exp g_t)
        X = X - bk[..., None] * torch.einsum("bhk,bhks->bhs", k[:, :, t], X)[:, :, None]  # (I - beta_t k_t k_t^T)
        X = X + bk[..., None] * onehot[t]                                          # the new column s = t
        rows.append(scale * torch.einsum("bhk,bhks->bhs", q[:, :, t], X))
    return torch.stack(rows, dim=2)


class KimiDeltaAttention(PackedCausalMixer):
    """fla 0.6.0 KimiDeltaAttention with a PyTorch reference path; forward(x [B, T, D], mask [B, T]) -> [B, T, D].

    Constructor arguments, defaults and parameter names/shapes are fla's (so state_dicts move both ways),
    except: fla's `mode` ("chunk"/"fused_recurrent") is replaced by `mode` in MODES (base.SequenceMixer),
    there is no cache (`layer_idx` is accepted and unused), and `bidirectional` and `chunk_size` (the CPU
    chunk length; a call whose decays are too strong for it runs with 16, see kda_chunked) are added.
    mode: "auto" (fused on CUDA, reference elsewhere), "reference" (the PyTorch chunked form, kda_chunked) or
    "fused" (fla's chunk_kda / fused_recurrent_kda; CUDA, or the CPU under TRITON_INTERPRET=1); forward_recurrent
    is the token-by-token oracle.
    """

    def __init__(
        self,
        hidden_size: int = 2048,
        expand_v: float = 1,
        head_dim: int = 128,
        num_heads: int = 16,
        num_v_heads: int | None = None,
        use_short_conv: bool = True,
        allow_neg_eigval: bool = False,
        safe_gate: bool = False,
        lower_bound: float | None = None,
        conv_size: int = 4,
        conv_bias: bool = False,
        layer_idx: int | None = None,
        norm_eps: float = 1e-5,
        mode: str = "auto",
        bidirectional: bool = False,
        chunk_size: int = 32,
    ):
        super().__init__(mode)
        where = "sercore.attention.kda.KimiDeltaAttention"
        num_v_heads = num_heads if num_v_heads is None else num_v_heads
        if num_v_heads % num_heads:
            raise ValueError(f"{where}: num_v_heads ({num_v_heads}) must be a multiple of num_heads ({num_heads})")
        head_v_dim = head_dim * expand_v
        if not math.isclose(head_v_dim, round(head_v_dim), rel_tol=1e-5):
            raise ValueError(f"{where}: head_dim * expand_v must be an integer, got {head_v_dim}")
        if head_dim > 256:
            raise ValueError(f"{where}: fla's kernels support head_dim <= 256, got {head_dim}")
        if safe_gate and lower_bound is None:
            raise ValueError(f"{where}: safe_gate=True needs lower_bound (fla requires it; -5 is its advice)")
        if safe_gate and not -5 <= lower_bound < 0:
            raise ValueError(f"{where}: with safe_gate, lower_bound must lie in [-5, 0), got {lower_bound}")
        if chunk_size < 1:
            raise ValueError(f"{where}: chunk_size must be positive, got {chunk_size}")

        self.hidden_size, self.expand_v, self.head_dim = hidden_size, expand_v, head_dim
        self.num_heads, self.num_v_heads = num_heads, num_v_heads
        self.head_k_dim, self.head_v_dim = head_dim, round(head_v_dim)
        self.key_dim, self.value_dim = num_heads * head_dim, num_v_heads * self.head_v_dim
        self.gate_dim = num_v_heads * head_dim
        self.use_short_conv, self.conv_size, self.conv_bias = use_short_conv, conv_size, conv_bias
        self.allow_neg_eigval, self.safe_gate, self.lower_bound = allow_neg_eigval, safe_gate, lower_bound
        self.layer_idx, self.bidirectional, self.chunk_size = layer_idx, bidirectional, chunk_size

        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        if use_short_conv:
            self.q_conv1d = ShortConvolution(self.key_dim, conv_size, bias=conv_bias, activation="silu")
            self.k_conv1d = ShortConvolution(self.key_dim, conv_size, bias=conv_bias, activation="silu")
            self.v_conv1d = ShortConvolution(self.value_dim, conv_size, bias=conv_bias, activation="silu")
        self.f_proj = nn.Sequential(nn.Linear(hidden_size, self.head_v_dim, bias=False),
                                    nn.Linear(self.head_v_dim, self.gate_dim, bias=False))
        self.b_proj = nn.Linear(hidden_size, num_v_heads, bias=False)
        # fla's initialisation: decay rates exp(A_log) ~ U(1, 16) (0 in log space with safe_gate) and
        # dt_bias = softplus^-1(dt) with dt log-uniform in [1e-3, 1e-1]
        if safe_gate:
            A_log = torch.zeros(num_v_heads)
        else:
            A_log = torch.empty(num_v_heads).uniform_(1, 16).log()
        self.A_log = nn.Parameter(A_log)
        self.A_log._no_weight_decay = True
        dt = torch.exp(torch.rand(self.gate_dim) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.dt_bias._no_weight_decay = True
        self.g_proj = nn.Sequential(nn.Linear(hidden_size, self.head_v_dim, bias=False),
                                    nn.Linear(self.head_v_dim, self.value_dim, bias=True))
        self.o_norm = FusedRMSNormGated(self.head_v_dim, activation="sigmoid", eps=norm_eps)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    # -- PackedCausalMixer hooks, on packed rows (real tokens first, zeros after)

    def _streams(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw per-token inputs of the core: q, k [B,T,H,K] and v [B,T,HV,V] after conv+silu (not yet
        normalised), f [B,T,HV,K] (f_proj output, before the gate) and b [B,T,HV] (beta logits)."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.use_short_conv:
            q, k, v = self.q_conv1d(q), self.k_conv1d(k), self.v_conv1d(v)
        else:
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        return {"q": q.unflatten(-1, (-1, self.head_k_dim)), "k": k.unflatten(-1, (-1, self.head_k_dim)),
                "v": v.unflatten(-1, (-1, self.head_v_dim)), "f": self.f_proj(x).unflatten(-1, (-1, self.head_k_dim)),
                "b": self.b_proj(x)}

    def _activated(self, st: dict[str, torch.Tensor]):
        """What the reference core reads: normalised q, k, the log decay g and beta (compute dtype)."""
        dt = compute_dtype(st["v"])
        q, k = l2_normalise(st["q"].to(dt)), l2_normalise(st["k"].to(dt))
        g = kda_gate(st["f"], self.A_log, self.dt_bias, self.lower_bound)
        beta = torch.sigmoid(st["b"].to(dt)) * (2.0 if self.allow_neg_eigval else 1.0)
        return q, k, g, beta

    def _scale(self) -> float:
        return self.head_k_dim ** -0.5

    def _core(self, st: dict[str, torch.Tensor], form: str) -> torch.Tensor:
        if form == "fused":
            return self._fused_core(st)
        q, k, g, beta = self._activated(st)
        if form == "parallel":
            return kda_chunked(q, k, st["v"], g, beta, self._scale(), self.chunk_size)
        return kda_recurrent(q, k, st["v"], g, beta, self._scale())

    def _fused_core(self, st: dict[str, torch.Tensor]) -> torch.Tensor:
        from fla.ops.kda import chunk_kda, fused_recurrent_kda  # needs triton: imported on the CUDA path only

        q = st["q"]
        # fla's layer: the recurrent kernel only for short inputs at inference
        short_inference = not torch.is_grad_enabled() and q.shape[1] <= 64 and not self.training
        kernel = fused_recurrent_kda if short_inference else chunk_kda
        options = {"safe_gate": self.safe_gate} if kernel is chunk_kda else {}
        o, _ = kernel(q=q, k=st["k"], v=st["v"], g=st["f"], beta=st["b"], A_log=self.A_log, dt_bias=self.dt_bias,
                      use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True, use_beta_sigmoid_in_kernel=True,
                      allow_neg_eigval=self.allow_neg_eigval, lower_bound=self.lower_bound, state_v_first=True,
                      **options)
        return o

    def _core_matrix(self, st: dict[str, torch.Tensor]) -> torch.Tensor:
        q, k, g, beta = self._activated(st)
        return kda_attention(q, k, g, beta, self._scale())

    def _values(self, st: dict[str, torch.Tensor]) -> torch.Tensor:
        return st["v"]

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """o [B, T, HV, V] -> [B, T, hidden_size]: per-head RMSNorm * weight * sigmoid(g_proj x), o_proj."""
        gate = self.g_proj(x).unflatten(-1, (-1, self.head_v_dim))
        o = self.o_norm(o, gate).flatten(-2)
        return self.o_proj(o.to(x.dtype))
