"""Print how far each mechanism's fused path (fla's kernels) is from our PyTorch reference: the figures behind the
pass/fail of tests/test_attention_fla_kernels*.py, at the CUDA tests' shapes.

    python tests/kernel_errors.py                      # on a CUDA machine (fp32 and bf16)
    TRITON_INTERPRET=1 python tests/kernel_errors.py   # CPU, Triton's interpreter (fp32 only; ~15 min on one core)

Batch 3 with padding (one row right-padded, one left-padded), same weights on both sides; relative error
||fused - reference|| / ||reference|| of the output and of the input gradient of sum(y^2).
"""

import copy
import os
import sys
import time

os.environ.setdefault("TRITON_F32_DEFAULT", "ieee")
sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402
from attention_checks import INTERPRETING, KERNEL_DEVICE  # noqa: E402

from sercore.attention import build  # noqa: E402

# registry name, width, heads, options, T (T = 48 takes fla's recurrent kernels for GSA, 200 the chunked ones)
CASES = [("retnet", 256, 4, {}, 100), ("lightnet", 256, 4, {}, 100), ("fox", 512, 4, {"num_heads": 16}, 100),
         ("fox", 1024, 4, {}, 100), ("gsa", 256, 4, {}, 48), ("gsa", 256, 4, {}, 200), ("kda", 256, 4, {}, 48),
         ("kda", 256, 4, {}, 200)]


def output_and_grad(module, x, mask):
    x = x.detach().clone().requires_grad_(True)
    y = module(x, mask)
    y.float().square().sum().backward()
    return y.detach().float().cpu(), x.grad.float().cpu()


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def main():
    if INTERPRETING:
        from triton_interpreter import install
        install()
    elif not torch.cuda.is_available():
        sys.exit("needs CUDA, or TRITON_INTERPRET=1 with triton installed")
    dtypes = [torch.float32] if INTERPRETING else [torch.float32, torch.bfloat16]
    print(f"device {KERNEL_DEVICE}{' (Triton interpreter)' if INTERPRETING else ''}, torch {torch.__version__}")
    print("mechanism width T dtype | output err | input-grad err | fused time")
    for name, width, heads, options, T in CASES:
        for dtype in dtypes:
            torch.manual_seed(0)
            fused = build(name, width, heads, mode="fused", **options).to(KERNEL_DEVICE, dtype)
            reference = copy.deepcopy(fused).float().cpu()  # the same dtype-rounded weights, computed in fp32
            reference.mode = "reference"
            x = torch.randn(3, T, width).to(dtype)
            mask = torch.ones(3, T, dtype=torch.bool)
            mask[1, T - T // 3:] = False
            mask[2, :T // 4] = False
            start = time.perf_counter()
            y, g = output_and_grad(fused, x.to(KERNEL_DEVICE), mask.to(KERNEL_DEVICE))
            seconds = time.perf_counter() - start
            y_ref, g_ref = output_and_grad(reference, x.float(), mask)
            print(f"{name} {width} {T} {str(dtype)[6:]} | {rel(y, y_ref):.1e} | {rel(g, g_ref):.1e} | {seconds:.1f} s",
                  flush=True)


if __name__ == "__main__":
    main()
