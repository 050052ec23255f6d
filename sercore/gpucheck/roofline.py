"""Roofline floor of one token-mixer call: the fewest FLOPs over the machine's matmul rate and the fewest bytes
over its memory bandwidth, both measured by the check itself (METHOD.md's "two numbers" in the device notes).

The floor is the larger of the two times; no implementation of the mechanism runs much faster, so each timing's
ratio to it (measured / floor >= 1) says how far the code is from the machine.

FLOPs (batch 1, T tokens, multiply-add = 2):
  * projections: 2 T x (weights of every nn.Linear in the module), i.e. the q, k, v, gate and output maps;
  * token mixing: softmax, keysparse: 4 T^2 Dq (scores and weighted sum; Dq = q_proj's width); fox: 2 T^2 Dq
    (causal: half the pairs); retnet, lightnet, kda: 4 T Dq Dv / H (the recurrent form's state update and
    readout, H heads of dk x dv states; no intra-chunk work counted); gsa: 4 T M (Dq + Dv) (two passes over
    M slots per head);
  * train (forward + backward): 3 x forward.
Bytes: the weights once + x read once + y written once (forward); train adds the weights' gradients written,
the weights read again, dy read and dx written: 3 P + 4 T D elements. Intermediate tensors are not counted
(a fused kernel need not write them), so the floor is a lower bound, not a model of any implementation.

The ceilings: the matmul rate of an N x N x N product on random data (in the dtype of the row), and the
bandwidth of a device-to-device copy counting bytes read plus written, each the median of several timed
calls after warm-up.
"""

from __future__ import annotations

import math

import torch
from torch import nn

QUADRATIC = {"softmax": 4, "keysparse": 4, "fox": 2}  # FLOPs per T^2 Dq
RECURRENT = ("retnet", "lightnet", "kda")


def _width(module, name: str) -> int:
    projection = getattr(module, name, None)
    return projection.out_features if isinstance(projection, nn.Linear) else 0


def forward_flops(name: str, module: nn.Module, tokens: int) -> float:
    """Lower-bound FLOPs of one forward call on [1, tokens, D] (module docstring)."""
    linear = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))
    flops = 2.0 * tokens * linear
    dq, dv = _width(module, "q_proj"), _width(module, "v_proj")
    heads = getattr(module, "num_heads", None) or getattr(module, "heads", 1)
    if name in QUADRATIC:
        flops += QUADRATIC[name] * tokens ** 2 * dq
    elif name in RECURRENT:
        flops += 4.0 * tokens * dq * dv / heads
    elif name == "gsa":
        flops += 4.0 * tokens * module.num_slots * (dq + dv)
    else:
        raise ValueError(f"no FLOP count for mechanism {name!r}")
    return flops


def min_bytes(module: nn.Module, tokens: int, dim: int, element_size: int, direction: str) -> float:
    """Fewest bytes one call must move (module docstring)."""
    params = sum(p.numel() for p in module.parameters())
    elements = params + 2 * tokens * dim if direction == "forward" else 3 * params + 4 * tokens * dim
    return float(elements * element_size)


def floor_ms(flops: float, nbytes: float, flops_per_s: float, bytes_per_s: float) -> float:
    if not (flops_per_s > 0 and bytes_per_s > 0):
        return math.nan
    return max(flops / flops_per_s, nbytes / bytes_per_s) * 1e3


def measure_ceilings(device: torch.device, dtypes=("bfloat16", "float32"), matmul_n: int = 8192,
                     copy_bytes: int = 2 << 30, repeats: int = 10) -> dict:
    """{"matmul_tflops": {dtype: rate}, "copy_gb_s": bandwidth, sizes}: measured here, now."""
    from sercore.bench import band, timings

    generator = torch.Generator(device="cpu").manual_seed(0)
    rates = {}
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        a = torch.randn(matmul_n, matmul_n, generator=generator).to(device=device, dtype=dtype)
        b = torch.randn(matmul_n, matmul_n, generator=generator).to(device=device, dtype=dtype)
        ms = band(timings(lambda: a @ b, device, repeats, warmup=3))["median_ms"]
        rates[dtype_name] = 2.0 * matmul_n ** 3 / (ms / 1e3) / 1e12
        del a, b
    source = torch.randn(copy_bytes // 4, generator=generator).to(device)
    target = torch.empty_like(source)
    ms = band(timings(lambda: target.copy_(source), device, repeats, warmup=3))["median_ms"]
    bandwidth = 2.0 * source.numel() * 4 / (ms / 1e3) / 1e9
    del source, target
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"matmul_tflops": rates, "copy_gb_s": bandwidth, "matmul_n": matmul_n, "copy_bytes": copy_bytes,
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32)}
