"""CPU fwd+bwd time of the LightNet and KDA reference cores: the one-chunk-at-a-time specifications
(`lightnet_parallel_loop`, `kda_chunked_loop`) against the vectorised forms the layers run
(`lightnet_parallel`, `kda_chunked`), at a training-size call (issue 12, "Build time").

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/reference_paths.py [--batch 16] [--frames 320] [--repeats 5]

Not a test: it prints a table. Inputs are the layer's own streams (`build(name, width, heads)` applied to
a random [batch, frames, width] input, so K and V are the layers' defaults: LightNet K = 128, V = 32;
KDA K = V = 128), detached and made leaves, and each timing is forward plus backward of the core alone
(the projections around it are identical in both forms), in process CPU time. The figure is the median of
`repeats` rounds after one warm-up round; the forms take turns within each round, so the speedup column
(specification time / form time) is what to read.

Measured on the project's shared 2-core machine (torch 2.13 CPU, 1 thread, defaults above), median of 3:
LightNet loop 1.16 s -> fast 0.43 / 0.42 / 0.41 s at C = 16 / 32 / 64 (2.7-2.8x; the layer runs 32); KDA
loop 1.50 s -> fast 0.63 / 0.54 s at C = 16 / 32 (2.4x / 2.8x; the layer's default stays 16), while at
C = 64 the initial decays summed over a chunk pass the overflow guard and the call runs the loop (5.9 s).
Whole layers (build(name, 128, 4), the same input with 8 rows padded to 200 frames, fwd+bwd, median of 2):
LightNet 1.15 -> 0.57 s, KDA 2.00 -> 1.24 s (projections, convolutions and norms unchanged).
What remained (torch.profiler): logcumsumexp and its backward were half of LightNet's time; KDA's is matrix products.
LightNet's fast form now takes z from running_logsumexp (a cumsum); its rows "scan C=..." are the fast form on
torch.logcumsumexp as before (the guard's fallback forced), so fast / scan is that change alone. One run
(`--repeats 3 --chunks 32`, 1 thread, shared machine): LightNet loop 1.039 s, scan C=32 0.431 s, fast C=32 0.151 s
(2.85x over the scan).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from sercore.attention import build
from sercore.attention.kda import kda_chunked, kda_chunked_loop
from sercore.attention import lightnet as lightnet_module
from sercore.attention.lightnet import lightnet_parallel, lightnet_parallel_loop

SPEC_CHUNK = 16  # the chunk both layers ran on the CPU before the fast forms


def cpu_seconds(fn, inputs) -> float:
    """Process CPU time of one forward + backward: on a shared machine it counts this process's work only."""
    inputs = leaves(inputs)
    t0 = time.process_time()
    out = fn(*inputs)
    out.backward(torch.ones_like(out))
    return time.process_time() - t0


def torch_scan(fn):
    """fn with LightNet's running logsumexp forced onto torch.logcumsumexp (its guard's fallback): the fast form
    as it was before running_logsumexp. The backward follows the graph built in the forward, so it is the scan's."""
    def run(*args):
        saved = dict(lightnet_module.SPREAD_LIMIT)
        lightnet_module.SPREAD_LIMIT.update({dtype: -math.inf for dtype in saved})
        try:
            return fn(*args)
        finally:
            lightnet_module.SPREAD_LIMIT.update(saved)
    return run


def leaves(tensors):
    return [t.detach().requires_grad_() for t in tensors]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=320, help="frames + text tokens of one packed row")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunks", type=int, nargs="+", default=[16, 32, 64], help="chunk sizes of the fast forms")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.frames, args.width)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), B={args.batch} T={args.frames} "
          f"D={args.width} H={args.heads}, fwd+bwd of the core, median of {args.repeats} rounds")
    print(f"{'core':10} {'form':>10} {'CPU s':>8} {'speedup':>7}")

    with torch.no_grad():
        s = build("lightnet", args.width, args.heads)._streams(x)
    lightnet_inputs = (s["q"], s["k"], s["v"])
    kda = build("kda", args.width, args.heads)
    with torch.no_grad():
        st = kda._streams(x)
        q, k, g, beta = kda._activated(st)
    kda_inputs = (q, k, st["v"], g, beta)
    scale = kda._scale()

    cores = {"lightnet": (lightnet_parallel_loop, lightnet_parallel, lightnet_inputs, ()),
             "kda": (kda_chunked_loop, kda_chunked, kda_inputs, (scale,))}
    for name, (loop, fast, inputs, extra) in cores.items():
        # (label, function): the specification at its old layer default (16) first, then the fast form per chunk
        forms = [(f"loop C={SPEC_CHUNK}", lambda *a, f=loop: f(*a, *extra, SPEC_CHUNK))]
        forms += [(f"fast C={c}", lambda *a, c=c, f=fast: f(*a, *extra, c)) for c in args.chunks]
        if name == "lightnet":
            forms += [(f"scan C={c}", torch_scan(lambda *a, c=c: fast(*a, c))) for c in args.chunks]
        times = {label: [] for label, _ in forms}
        for repeat in range(args.repeats + 1):  # interleaved, so a burst of load hits every form alike
            for label, fn in forms:
                seconds = cpu_seconds(fn, inputs)
                if repeat:  # the first round is the warm-up
                    times[label].append(seconds)
        base = statistics.median(times[forms[0][0]])
        for label, values in times.items():
            median = statistics.median(values)
            print(f"{name:10} {label:>10} {median:>8.3f} {base / median:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
