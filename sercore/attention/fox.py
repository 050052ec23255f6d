"""Forgetting attention (FoX, Lin et al. 2025, "Forgetting Transformer") as flash-linear-attention 0.6.0
builds it.

Per query head h (num_heads query heads of head_dim = hidden_size / num_heads, sharing num_kv_heads
key/value heads: query head h reads kv head h // (num_heads / num_kv_heads), fla's GQA):
    log f_t = logsigmoid(x W_f + b_f)   (one scalar per query head and token),  F_t = sum_{j<=t} log f_j
    A[t, s] = softmax_{s<=t}( head_dim^-1/2 q_t . k_s + F_t - F_s )      (F_t - F_s = sum_{j=s+1..t} log f_j)
    o_t     = sum_s A[t, s] v_s,   y = o_proj( [sigmoid(x W_g) *] o )
with optional per-head RMS qk-norm (qk_norm) and a sliding window (window_size: key s visible to query t
when t - window_size < s <= t). attention_matrix returns A; the value path is o = A v before the
optional output gate and o_proj (forward_from_matrix applies them).

`mode` (base.SequenceMixer): "fused" runs fla.ops.forgetting_attn.parallel_forgetting_attn (fla imported
there only); "reference" is our blockwise softmax (blocks of queries, each against its causal prefix of
keys, so memory stays bounded at long T): `forgetting_parallel`, whose backward is written by hand
(flash-style: it recomputes each block's probabilities instead of keeping them), tested against
`forgetting_parallel_autograd`, the same blocks differentiated by autograd (the specification); "auto"
picks fused on CUDA. forward_recurrent is a decoding-style scan, the test oracle: each new token adds
log f_t to the running biases of all earlier keys, then one softmax over the visible keys.
Constructor arguments, defaults and parameter names are fla's ForgettingAttention's (state_dicts load
both ways); `mode` and `bidirectional` are added at the end.

fla 0.6.0 details and differences:
  * window_size: fla's layer stores it but its forward never passes it to the kernel (it only sizes the
    decoding cache), so fla ignores it when training. We apply it (the kernel's documented meaning);
    with the default None both agree.
  * fla's defaults give the paper's basic FoX, not "FoX (Pro)": no output gate, no qk-norm, no
    key/value shift. The log forget gate is computed in float32 (float64 for float64 inputs here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sercore.attention._modules import GroupNorm, PackedCausalMixer, compute_dtype

_BLOCK_ELEMENTS = 1 << 20  # default query block for the CPU form: ~1M logits at once (faster than bigger blocks)


def _visible(t: torch.Tensor, s: torch.Tensor, window_size: int | None) -> torch.Tensor:
    ok = s[None, :] <= t[:, None]
    if window_size is not None:
        ok = ok & (s[None, :] > t[:, None] - window_size)
    return ok


def _prepare(q, k, v, log_f):
    """To [B, H, T, D] in the compute dtype, kv heads repeated to the query heads; F = cumsum log f."""
    dt = compute_dtype(q)
    groups = q.shape[2] // k.shape[2]
    q, k, v = (x.to(dt).transpose(1, 2) for x in (q, k, v))
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return q, k, v, log_f.to(dt).transpose(1, 2).cumsum(-1)


def forgetting_probabilities(q, k, cum_f, row0: int, rows: int, window_size: int | None) -> torch.Tensor:
    """Softmax rows t = row0 .. row0+rows-1 against keys 0 .. row0+rows-1 (the causal prefix): [B, H, R, row0+R]."""
    cols = row0 + rows
    t = torch.arange(row0, cols, device=q.device)
    s = torch.arange(cols, device=q.device)
    # in place after the matmul: at long T these [B, H, R, T] temporaries dominate the CPU time
    logits = torch.matmul(q[:, :, row0:cols] * q.shape[-1] ** -0.5, k[:, :, :cols].transpose(-1, -2))
    logits.add_(cum_f[:, :, row0:cols, None]).sub_(cum_f[:, :, None, :cols])
    logits.masked_fill_(~_visible(t, s, window_size), float("-inf"))
    return torch.softmax(logits, dim=-1)


def forgetting_matrix(q, k, log_f, window_size: int | None = None) -> torch.Tensor:
    """A [B, H, T, T] from q [B, T, H, D], k [B, T, Hkv, D], log_f [B, T, H]."""
    q, k, _, cum_f = _prepare(q, k, k, log_f)
    return forgetting_probabilities(q, k, cum_f, 0, q.shape[2], window_size)


def forgetting_parallel_autograd(q, k, v, log_f, window_size: int | None = None,
                                 block: int | None = None) -> torch.Tensor:
    """Blockwise forgetting attention -> o [B, T, H, D] (v's dtype); `block` queries at a time, autograd's
    backward through every block's saved probabilities: the specification `forgetting_parallel` is tested against."""
    out_dtype = v.dtype
    q, k, v, cum_f = _prepare(q, k, v, log_f)
    B, H, T, _ = q.shape
    block = block or max(1, min(T, _BLOCK_ELEMENTS // max(1, B * H * T)))
    out = []
    for r0 in range(0, T, block):
        rows = min(block, T - r0)
        out.append(forgetting_probabilities(q, k, cum_f, r0, rows, window_size) @ v[:, :, :r0 + rows])
    return torch.cat(out, dim=2).transpose(1, 2).to(out_dtype)


def _block_probabilities(q, kt, cum_f, r0: int, r1: int, window_size: int | None):
    """Softmax rows r0 .. r1-1 of one block against its visible keys lo .. r1-1 -> (P [B, Hkv, G, R, r1-lo], lo).

    q [B, Hkv, G, T, D] (already scaled), kt [B, Hkv, D, T] (keys transposed), cum_f [B, Hkv, G, T]: the G
    query heads of a kv head share one matrix product with its keys (no repeated k). The bias F_t - F_s
    enters as F_r0 - F_s: the two differ by a constant per row, which the softmax ignores, and F_r0 - F_s
    stays small near the diagonal, where the weight is."""
    B, Hkv, G, _, D = q.shape
    R = r1 - r0
    lo = 0 if window_size is None else max(0, r0 - window_size + 1)
    logits = (q[:, :, :, r0:r1].reshape(B, Hkv, G * R, D) @ kt[..., lo:r1]).view(B, Hkv, G, R, -1)
    logits.add_((cum_f[..., r0, None] - cum_f[..., lo:r1]).unsqueeze(-2))
    # only the last R columns hold keys after some row (causal), only the first R keys before some row's window
    visible = _visible(torch.arange(r0, r1, device=q.device), torch.arange(lo, r1, device=q.device), window_size)
    edges = (slice(-R, None),) if window_size is None else (slice(-R, None), slice(None, R))
    for edge in edges:
        logits[..., edge].masked_fill_(~visible[:, edge], float("-inf"))
    return torch.softmax(logits, dim=-1), lo


class _BlockwiseAttention(torch.autograd.Function):
    """o = softmax(q k^T + F_t - F_s, causal / windowed) v a block of queries at a time, with a flash-style
    backward (Dao et al. 2022, "FlashAttention", its Algorithm 4 without the key tiling): only o is saved, and
    each block's probabilities are recomputed in the backward, so every block's temporaries stay in cache
    instead of T x T probabilities going to memory. With dP = dO v^T and dS = P * (dP - rowsum(dO * O)):
    dq = dS k, dk = dS^T q, dv = P^T dO, and the bias F_r0 - F_s gets -colsum(dS) at F_s; F_r0 gets sum(dS),
    which is zero (every row of dS sums to zero), so it is not computed.
    Keys and values come transposed, kt, vt [B, Hkv, D, T] (their gradients too): with head dims of a few
    channels, CPU matrix products whose narrow operand is a contiguous [T, D] run several times slower than
    with it as a transposed [D, T] (measured at D = 4: P @ v 650 us, P @ vt^T 150 us)."""

    @staticmethod
    def forward(ctx, q, kt, vt, cum_f, window_size, block):
        B, Hkv, G, T, D = q.shape
        o = q.new_empty(B, Hkv, G, T, vt.shape[-2])
        for r0 in range(0, T, block):
            r1 = min(T, r0 + block)
            p, lo = _block_probabilities(q, kt, cum_f, r0, r1, window_size)
            o[:, :, :, r0:r1] = (p.flatten(2, 3) @ vt[..., lo:r1].transpose(-1, -2)).view(B, Hkv, G, r1 - r0, -1)
        ctx.save_for_backward(q, kt, vt, cum_f, o)
        ctx.window_size, ctx.block = window_size, block
        return o

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do):
        q, kt, vt, cum_f, o = ctx.saved_tensors
        B, Hkv, G, T, D = q.shape
        delta = (do * o).sum(-1, keepdim=True)                       # rowsum(dO * O) [B, Hkv, G, T, 1]
        dq, dkt, dvt, dF = (torch.zeros_like(x) for x in (q, kt, vt, cum_f))
        for r0 in range(0, T, ctx.block):
            r1 = min(T, r0 + ctx.block)
            p, lo = _block_probabilities(q, kt, cum_f, r0, r1, ctx.window_size)
            do_r = do[:, :, :, r0:r1].reshape(B, Hkv, -1, do.shape[-1])
            dvt[..., lo:r1] += do_r.transpose(-1, -2) @ p.flatten(2, 3)
            ds = (do_r @ vt[..., lo:r1]).view_as(p).sub_(delta[:, :, :, r0:r1]).mul_(p)
            ds_flat = ds.flatten(2, 3)
            dq[:, :, :, r0:r1] = (ds_flat @ kt[..., lo:r1].transpose(-1, -2)).view(B, Hkv, G, r1 - r0, D)
            dkt[..., lo:r1] += q[:, :, :, r0:r1].reshape(B, Hkv, -1, D).transpose(-1, -2) @ ds_flat
            dF[..., lo:r1] -= ds.sum(-2)
        return dq, dkt, dvt, dF, None, None


def forgetting_parallel(q, k, v, log_f, window_size: int | None = None, block: int | None = None) -> torch.Tensor:
    """Blockwise forgetting attention -> o [B, T, H, D] (v's dtype), `block` queries at a time, with the
    hand-written backward of `_BlockwiseAttention`: what the layer runs. The same function as
    `forgetting_parallel_autograd`, tested against it in values and gradients."""
    out_dtype, dt = v.dtype, compute_dtype(q)
    B, T, H, D = q.shape
    Hkv = k.shape[2]
    # [B, Hkv, G, T, *]: query head h = kv head h // G, group member h % G (fla's GQA)
    qh = (q.to(dt) * D ** -0.5).transpose(1, 2).unflatten(1, (Hkv, -1))
    kt, vt = (x.to(dt).permute(0, 2, 3, 1).contiguous() for x in (k, v))
    cum_f = log_f.to(dt).transpose(1, 2).cumsum(-1).unflatten(1, (Hkv, -1))
    block = block or max(1, min(T, _BLOCK_ELEMENTS // max(1, B * H * T)))
    o = _BlockwiseAttention.apply(qh, kt, vt, cum_f, window_size, block)
    return o.flatten(1, 2).transpose(1, 2).to(out_dtype)


def forgetting_recurrent(q, k, v, log_f, window_size: int | None = None) -> torch.Tensor:
    """Decoding-style: biases of past keys accumulate log f_t; one softmax per step over the visible keys."""
    dt = compute_dtype(q)
    groups = q.shape[2] // k.shape[2]
    q, k, v = q.to(dt), k.repeat_interleave(groups, dim=2).to(dt), v.repeat_interleave(groups, dim=2).to(dt)
    log_f = log_f.to(dt)
    B, T, H, D = q.shape
    bias = q.new_zeros(B, H, 0)
    out = []
    for t in range(T):
        bias = torch.cat((bias + log_f[:, t, :, None], q.new_zeros(B, H, 1)), dim=-1)  # key t enters with 0
        first = 0 if window_size is None else max(0, t - window_size + 1)
        logits = torch.einsum("bhd,bshd->bhs", q[:, t], k[:, first:t + 1]) * D ** -0.5 + bias[..., first:]
        out.append(torch.einsum("bhs,bshd->bhd", torch.softmax(logits, dim=-1), v[:, first:t + 1]))
    return torch.stack(out, dim=1).to(v.dtype)


class ForgettingAttention(PackedCausalMixer):
    """fla.layers.ForgettingAttention in plain PyTorch (fla's kernel on CUDA); see the module docstring.

    forward(x [B, T, D], mask [B, T] bool, True = real) -> [B, T, D]; padded outputs are zero and a
    padded row equals its sequence run alone. bidirectional=True adds a reversed pass with the same
    weights (its forget gates read in reverse) and averages the two attention outputs before the gate
    and o_proj, so A = (A_forward + A_backward) / 2 stays row-stochastic.
    mode: "auto" (fused on CUDA, reference elsewhere), "reference" (the PyTorch blockwise form,
    forgetting_parallel) or "fused" (fla's parallel_forgetting_attn; CUDA, or the CPU under TRITON_INTERPRET=1);
    forward_recurrent is the token-by-token oracle."""

    query_block: int | None = None  # queries per block in the CPU form; None sizes blocks to ~1M logits

    def __init__(self, hidden_size: int = 2048, num_heads: int = 32, num_kv_heads: int | None = None,
                 qkv_bias: bool = False, qk_norm: bool = False, window_size: int | None = None,
                 use_output_gate: bool = False, layer_idx: int | None = None, mode: str = "auto",
                 bidirectional: bool = False):
        super().__init__(mode)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_heads % self.num_kv_heads or hidden_size % num_heads:
            raise ValueError(f"ForgettingAttention: need num_heads ({num_heads}) divisible by num_kv_heads "
                             f"({self.num_kv_heads}) and hidden_size ({hidden_size}) divisible by num_heads")
        if window_size is not None and window_size < 1:
            raise ValueError(f"ForgettingAttention: window_size must be None or >= 1, got {window_size}")
        self.num_kv_groups = num_heads // self.num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.kv_dim = self.num_kv_heads * self.head_dim
        self.qkv_bias, self.qk_norm, self.window_size = qkv_bias, qk_norm, window_size
        self.use_output_gate, self.layer_idx, self.bidirectional = use_output_gate, layer_idx, bidirectional

        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, self.kv_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, self.kv_dim, bias=qkv_bias)
        self.f_proj = nn.Linear(hidden_size, num_heads, bias=True)
        if use_output_gate:
            self.g_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        if qk_norm:
            self.q_norm = GroupNorm(num_groups=num_heads, hidden_size=hidden_size, is_rms_norm=True)
            self.k_norm = GroupNorm(num_groups=self.num_kv_heads, hidden_size=self.kv_dim, is_rms_norm=True)

    def _streams(self, x: torch.Tensor) -> dict:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        log_f = F.logsigmoid(self.f_proj(x).to(compute_dtype(x)))
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        split = (-1, self.head_dim)
        return {"q": q.unflatten(-1, split), "k": k.unflatten(-1, split), "v": v.unflatten(-1, split),
                "log_f": log_f}

    def _core(self, s: dict, form: str) -> torch.Tensor:
        args = (s["q"], s["k"], s["v"], s["log_f"])
        if form == "fused":
            from fla.ops.forgetting_attn.parallel import parallel_forgetting_attn  # needs triton and CUDA

            return parallel_forgetting_attn(*args, window_size=self.window_size)
        if form == "recurrent":
            return forgetting_recurrent(*args, window_size=self.window_size)
        return forgetting_parallel(*args, window_size=self.window_size, block=self.query_block)

    def _core_matrix(self, s: dict) -> torch.Tensor:
        return forgetting_matrix(s["q"], s["k"], s["log_f"], self.window_size)

    def _values(self, s: dict) -> torch.Tensor:
        return s["v"].repeat_interleave(self.num_kv_groups, dim=2)

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        o = o.flatten(-2).to(x.dtype)
        if self.use_output_gate:
            o = torch.sigmoid(self.g_proj(x)) * o
        return self.o_proj(o)
