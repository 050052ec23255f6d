"""Triton kernels for the memory-heavy passes of key-sparse attention (KeySparseAttention(mode="fused")).

STATUS: verified only in Triton's interpreter (TRITON_INTERPRET=1, kernels run on the CPU with numpy) against
the materialized reference (tests/test_attention_keysparse_triton.py). It has not run on a GPU yet: compiled
code, tensor-core dot precision and speed are unconfirmed until tests/test_attention_gpu_softmax_keysparse.py
passes on one. That is why mode="auto" keeps the PyTorch memory-linear form on CUDA.

The computation is the memory-linear form of sercore.attention.keysparse, on [B, H, T, d] queries and
[B, H, S, d] keys/values, never holding T x S scores:
  * passes 1+2 (`importance`): one kernel gives each query row its log-sum-exp over the real keys (online, key
    block by key block); a second gives each key its importance, the column sum of exp(s - lse) over the
    voting queries (all rows, or only the real ones when padded queries do not vote). Each program owns one
    block of keys and walks all queries, so the sums need no atomics and are deterministic. Both run in fp32
    (IEEE dots, no TF32) whatever the input dtype: rounding would otherwise flip near-ties in the ranking.
  * top-k per head (ties kept) stays in PyTorch: sercore.attention.keysparse_parts.top_k_keys.
  * pass 3 (`kept_attention`): flash-attention-style forward over the kept keys only, an online softmax over
    the kept real keys; unless renormalising, the result is rescaled by the kept mass exp(lse_kept - lse),
    with lse from pass 1. fp32 inputs use IEEE dots; bf16/fp16 inputs use the tensor-core dot with fp32
    accumulation (under the interpreter bf16 operands are widened to fp32 first: its bf16 dot is broken).
Backward: `keysparse_triton` wraps the kernels in a torch.autograd.Function whose backward does NOT use a
kernel: it recomputes pass 3 in PyTorch, query block by query block, over the kernels' kept-key set, and takes
the gradient of that (the same gradient as the memory-linear PyTorch path: selection carries none, the full
normaliser lse does). Dropout on the kept weights is not supported here (a clear error, never ignored).

triton is not a dependency of sercore: this file imports it at the top and is itself imported only when
mode="fused" is used. Tensors must be on CUDA, except under TRITON_INTERPRET=1, where CPU tensors are
accepted (and only then).
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("sercore/attention/keysparse_triton.py: mode='fused' needs the triton package, "
                      "which is not installed (it is not a dependency of sercore; it comes with CUDA builds of "
                      "torch). Use mode='memory-linear' or 'auto' instead.") from error

from sercore.attention.base import triton_interpreting
from sercore.attention.keysparse_parts import kept_block, key_padding, top_k_keys


def check_device(*tensors: torch.Tensor) -> None:
    """CUDA tensors, or CPU tensors under Triton's interpreter; anything else is a clear error."""
    if all(t.is_cuda for t in tensors) or (triton_interpreting() and not any(t.is_cuda for t in tensors)):
        return
    raise RuntimeError("sercore/attention/keysparse_triton.py: mode='fused' needs CUDA tensors "
                       f"(got {sorted({str(t.device) for t in tensors})}); CPU tensors run only under Triton's "
                       "interpreter (TRITON_INTERPRET=1). On the CPU use mode='memory-linear' or 'auto'.")


def _blocks(head_dim: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_D): tl.dot needs every side >= 16 and powers of two; wide heads get smaller
    row/key blocks so the operand tiles stay within shared memory."""
    block_d = max(16, triton.next_power_of_2(head_dim))
    rows = 64 if block_d <= 64 else 32
    return rows, rows, block_d


@triton.jit
def _row_lse_kernel(Q, K, KEY_REAL, LSE, sqb, sqh, sqt, sqd, skb, skh, sks, skd, H, T, S, D, scale,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pass 1: LSE[b, h, t] = log sum_j exp(s_tj) over the real keys j, s = (q * scale) . k in fp32."""
    bh = tl.program_id(1)
    b, h = bh // H, bh % H
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqt + dims[None, :] * sqd,
                mask=(rows[:, None] < T) & (dims[None, :] < D), other=0.0).to(tl.float32) * scale
    running_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_M], tl.float32)
    for start in range(0, S, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k_t = tl.load(K + b * skb + h * skh + cols[None, :] * sks + dims[:, None] * skd,
                      mask=(cols[None, :] < S) & (dims[:, None] < D), other=0.0).to(tl.float32)
        real = tl.load(KEY_REAL + b * S + cols, mask=cols < S, other=0) != 0
        s = tl.where(real[None, :], tl.dot(q, k_t, input_precision="ieee"), float("-inf"))
        new_max = tl.maximum(running_max, tl.max(s, 1))
        # A block of padded keys only leaves the max at -inf: shift by 0 then, not by -inf (NaN).
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        running_sum = running_sum * tl.exp(running_max - shift) + tl.sum(tl.exp(s - shift[:, None]), 1)
        running_max = new_max
    tl.store(LSE + bh * T + rows, running_max + tl.log(running_sum), mask=rows < T)


@triton.jit
def _importance_kernel(Q, K, KEY_REAL, QUERY_REAL, LSE, IMPORTANCE, sqb, sqh, sqt, sqd, skb, skh, sks, skd,
                       H, T, S, D, scale, PADDED_QUERIES_VOTE: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pass 2: IMPORTANCE[b, h, j] = sum over voting rows t of exp(s_tj - LSE[b, h, t]); 0 for padded keys."""
    bh = tl.program_id(1)
    b, h = bh // H, bh % H
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    k_t = tl.load(K + b * skb + h * skh + cols[None, :] * sks + dims[:, None] * skd,
                  mask=(cols[None, :] < S) & (dims[:, None] < D), other=0.0).to(tl.float32)
    real_key = tl.load(KEY_REAL + b * S + cols, mask=cols < S, other=0) != 0
    total = tl.zeros([BLOCK_N], tl.float32)
    for start in range(0, T, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqt + dims[None, :] * sqd,
                    mask=(rows[:, None] < T) & (dims[None, :] < D), other=0.0).to(tl.float32) * scale
        lse = tl.load(LSE + bh * T + rows, mask=rows < T, other=0.0)
        voter = rows < T
        if not PADDED_QUERIES_VOTE:
            voter = voter & (tl.load(QUERY_REAL + b * T + rows, mask=rows < T, other=0) != 0)
        s = tl.dot(q, k_t, input_precision="ieee")
        p = tl.where(voter[:, None] & real_key[None, :], tl.exp(s - lse[:, None]), 0.0)
        total += tl.sum(p, 0)
    tl.store(IMPORTANCE + bh * S + cols, total, mask=cols < S)


@triton.jit
def _kept_attention_kernel(Q, K, V, KEPT, LSE, O, sqb, sqh, sqt, sqd, skb, skh, sks, skd, svb, svh, svs, svd,
                           sob, soh, sot, sod, H, T, S, D, scale, RENORMALIZE: tl.constexpr,
                           PRECISION: tl.constexpr, DOT_IN_FP32: tl.constexpr, BLOCK_M: tl.constexpr,
                           BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pass 3: O = sum over kept keys of exp(s - lse_kept) v, times exp(lse_kept - LSE) unless RENORMALIZE.

    KEPT[b, h, j] is nonzero for kept real keys only; every head keeps at least one real key. DOT_IN_FP32
    widens the (already rounded) dot operands to fp32: only for bf16 under the interpreter, whose dot
    multiplies bf16 as raw 16-bit integers (Triton 3.9); the products are the same, the sum order may differ."""
    bh = tl.program_id(1)
    b, h = bh // H, bh % H
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqt + dims[None, :] * sqd,
                mask=(rows[:, None] < T) & (dims[None, :] < D), other=0.0)
    running_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in range(0, S, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        kept = tl.load(KEPT + bh * S + cols, mask=cols < S, other=0) != 0
        k_t = tl.load(K + b * skb + h * skh + cols[None, :] * sks + dims[:, None] * skd,
                      mask=(cols[None, :] < S) & (dims[:, None] < D), other=0.0)
        v = tl.load(V + b * svb + h * svh + cols[:, None] * svs + dims[None, :] * svd,
                    mask=(cols[:, None] < S) & (dims[None, :] < D), other=0.0)
        if DOT_IN_FP32:
            s = tl.dot(q.to(tl.float32), k_t.to(tl.float32), input_precision="ieee") * scale
        else:
            s = tl.dot(q, k_t, input_precision=PRECISION) * scale
        s = tl.where(kept[None, :], s, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(s, 1))
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        decay = tl.exp(running_max - shift)
        p = tl.exp(s - shift[:, None])
        running_sum = running_sum * decay + tl.sum(p, 1)
        p = p.to(v.dtype)  # flash-attention rounding: probabilities in the value dtype for the second dot
        if DOT_IN_FP32:
            acc = acc * decay[:, None] + tl.dot(p.to(tl.float32), v.to(tl.float32), input_precision="ieee")
        else:
            acc = acc * decay[:, None] + tl.dot(p, v, input_precision=PRECISION)
        running_max = new_max
    if RENORMALIZE:
        acc = acc / running_sum[:, None]
    else:
        # softmax over kept keys x exp(lse_kept - lse) = acc / sum x sum * exp(max - lse) = acc * exp(max - lse)
        lse = tl.load(LSE + bh * T + rows, mask=rows < T, other=0.0)
        acc = acc * tl.exp(running_max - lse)[:, None]
    tl.store(O + b * sob + h * soh + rows[:, None] * sot + dims[None, :] * sod, acc.to(O.dtype.element_ty),
             mask=(rows[:, None] < T) & (dims[None, :] < D))


def importance(q: torch.Tensor, k: torch.Tensor, query_mask: torch.Tensor, key_mask: torch.Tensor,
               padded_queries_vote: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Passes 1+2 on q [B, H, T, d], k [B, H, S, d], masks [B, T] / [B, S] bool (True = real).

    Returns (lse [B, H, T], importance [B, H, S]), both fp32."""
    check_device(q, k, query_mask, key_mask)
    (b, h, t, d), s = q.shape, k.shape[2]
    block_m, block_n, block_d = _blocks(d)
    key_real = key_mask.to(torch.int8).contiguous()
    query_real = query_mask.to(torch.int8).contiguous()
    lse = torch.empty(b, h, t, dtype=torch.float32, device=q.device)
    scores = torch.empty(b, h, s, dtype=torch.float32, device=q.device)
    _row_lse_kernel[(triton.cdiv(t, block_m), b * h)](
        q, k, key_real, lse, *q.stride(), *k.stride(), h, t, s, d, d ** -0.5,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d)
    _importance_kernel[(triton.cdiv(s, block_n), b * h)](
        q, k, key_real, query_real, lse, scores, *q.stride(), *k.stride(), h, t, s, d, d ** -0.5,
        PADDED_QUERIES_VOTE=padded_queries_vote, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d)
    return lse, scores


def kept_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kept: torch.Tensor, lse: torch.Tensor,
                   renormalize: bool = False) -> torch.Tensor:
    """Pass 3: attention of q over the keys with kept [B, H, S] True (padded keys must be False there),
    rescaled by the kept mass exp(lse_kept - lse) unless renormalize. Returns [B, H, T, d] in q's dtype."""
    check_device(q, k, v, kept, lse)
    (b, h, t, d), s = q.shape, k.shape[2]
    block_m, block_n, block_d = _blocks(d)
    out = torch.empty(b, h, t, d, dtype=q.dtype, device=q.device)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"  # "tf32" only names the default; bf16 ignores it
    _kept_attention_kernel[(triton.cdiv(t, block_m), b * h)](
        q, k, v, kept.to(torch.int8).contiguous(), lse.contiguous(), out, *q.stride(), *k.stride(), *v.stride(),
        *out.stride(), h, t, s, d, d ** -0.5, RENORMALIZE=renormalize, PRECISION=precision,
        DOT_IN_FP32=triton_interpreting() and q.dtype == torch.bfloat16,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d)
    return out


def select_keys(q, k, query_mask, key_mask, counts, padded_queries_vote=True):
    """Passes 1+2 then top-k per head (ties kept). Returns (kept [B, H, S] bool, lse [B, H, T] fp32)."""
    lse, scores = importance(q, k, query_mask, key_mask, padded_queries_vote)
    return top_k_keys(scores, counts), lse


class _TritonKeySparse(torch.autograd.Function):
    """Forward: the kernels. Backward: PyTorch recomputation of pass 3 over the same kept keys, per query block."""

    @staticmethod
    def forward(ctx, q, k, v, query_mask, key_mask, counts, renormalize, padded_queries_vote, block_size):
        kept, lse = select_keys(q, k, query_mask, key_mask, counts, padded_queries_vote)
        # top_k_keys may also keep padded keys (importance 0 when k exceeds the real keys): they carry no weight.
        kept = kept & key_mask[:, None, :]
        ctx.save_for_backward(q, k, v, key_mask, kept)
        ctx.renormalize, ctx.block_size = renormalize, block_size
        return kept_attention(q, k, v, kept, lse, renormalize)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, key_mask, kept = ctx.saved_tensors
        scale = q.shape[-1] ** -0.5
        padding, dropped = key_padding(key_mask), ~kept[:, :, None, :]
        # dk and dv sum over query blocks: accumulate in fp32 at least, as one big backward would.
        wide = torch.promote_types(k.dtype, torch.float32)
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k, dtype=wide), torch.zeros_like(v, dtype=wide)
        for i in range(0, q.shape[2], ctx.block_size):
            with torch.enable_grad():
                q_block = q[:, :, i:i + ctx.block_size].detach().requires_grad_(True)
                k_leaf, v_leaf = k.detach().requires_grad_(True), v.detach().requires_grad_(True)
                out = kept_block(q_block * scale, k_leaf, v_leaf, padding, dropped, ctx.renormalize, 0.0, False)
                grads = torch.autograd.grad(out, (q_block, k_leaf, v_leaf), grad_out[:, :, i:i + ctx.block_size])
            dq[:, :, i:i + ctx.block_size] = grads[0]
            dk += grads[1]
            dv += grads[2]
        return dq, dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, None, None


def keysparse_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, query_mask: torch.Tensor,
                     key_mask: torch.Tensor, counts: torch.Tensor, renormalize: bool = False,
                     padded_queries_vote: bool = True, dropout: float = 0.0, training: bool = False,
                     block_size: int = 256) -> torch.Tensor:
    """Same result as sercore.attention.keysparse.memory_linear_keysparse (output only), by the kernels above.

    block_size: query rows per block of the PyTorch backward recomputation. Dropout is not supported."""
    if dropout > 0.0 and training:
        raise ValueError(f"sercore/attention/keysparse_triton.py: mode='fused' has no dropout on the kept "
                         f"weights (dropout={dropout} in training); use mode='memory-linear' or dropout=0")
    check_device(q, k, v, query_mask, key_mask)
    return _TritonKeySparse.apply(q, k, v, query_mask, key_mask, counts, renormalize, padded_queries_vote,
                                  block_size)
