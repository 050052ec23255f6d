"""Print how far each mechanism's fused path (fla's kernels) is from our PyTorch reference: the figures behind the
pass/fail of tests/test_attention_fla_kernels*.py, at the CUDA tests' shapes.

    python tests/kernel_errors.py                      # on a CUDA machine (fp32 and bf16)
    TRITON_INTERPRET=1 python tests/kernel_errors.py   # CPU, Triton's interpreter (fp32 only; ~15 min on one core)
    python tests/kernel_errors.py --csv errors.csv     # also write the rows (sercore.gpucheck runs it so)
    TRITON_INTERPRET=1 python tests/kernel_errors.py --tiny   # small widths and lengths (the CPU rehearsal)

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


# --tiny (the gpu-check rehearsal in the interpreter): the same mechanisms at small widths and lengths
TINY_CASES = [("retnet", 64, 4, {}, 24), ("lightnet", 64, 4, {}, 24), ("fox", 64, 4, {"num_heads": 4}, 24),
              ("gsa", 64, 4, {}, 24), ("kda", 64, 4, {}, 24)]
CSV_COLUMNS = ("mechanism", "width", "tokens", "dtype", "padded", "output_err", "grad_err", "seconds", "device")


def measure(cases, dtypes):
    """One dict per case and dtype: the relative errors of output and input gradient, and the fused call's time."""
    for name, width, heads, options, T in cases:
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
            yield {"mechanism": name, "width": width, "tokens": T, "dtype": str(dtype)[6:], "padded": True,
                   "output_err": rel(y, y_ref), "grad_err": rel(g, g_ref), "seconds": seconds,
                   "device": f"{KERNEL_DEVICE}{' (Triton interpreter)' if INTERPRETING else ''}"}


def main(argv=None):
    import argparse
    import csv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", help="write the rows to this CSV file as they are measured")
    parser.add_argument("--tiny", action="store_true", help="small widths and lengths (TINY_CASES)")
    args = parser.parse_args(argv)
    if INTERPRETING:
        from triton_interpreter import install
        install()
    elif not torch.cuda.is_available():
        sys.exit("needs CUDA, or TRITON_INTERPRET=1 with triton installed")
    dtypes = [torch.float32] if INTERPRETING else [torch.float32, torch.bfloat16]
    print(f"device {KERNEL_DEVICE}{' (Triton interpreter)' if INTERPRETING else ''}, torch {torch.__version__}")
    print("mechanism width T dtype | output err | input-grad err | fused time")
    writer = None
    handle = open(args.csv, "w", newline="") if args.csv else None
    if handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
    for row in measure(TINY_CASES if args.tiny else CASES, dtypes):
        print(f"{row['mechanism']} {row['width']} {row['tokens']} {row['dtype']} | {row['output_err']:.1e} | "
              f"{row['grad_err']:.1e} | {row['seconds']:.1f} s", flush=True)
        if writer:
            writer.writerow(row)
            handle.flush()
    if handle:
        handle.close()

if __name__ == "__main__":
    main()
