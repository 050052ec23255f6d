"""CPU fwd+bwd time of the LightNet, KDA and GSA reference cores: the one-chunk-at-a-time specifications
(`lightnet_parallel_loop`, `kda_chunked_loop`, `gsa_chunked_loop`) against the vectorised forms the layers
run (`lightnet_parallel`, `kda_chunked`, `gsa_chunked`), and FoX's blockwise softmax differentiated by
autograd (`forgetting_parallel_autograd`) against its hand-written backward (`forgetting_parallel`), at a
training-size call (issue 12, "Build time").

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/reference_paths.py [--batch 16] [--frames 320] [--repeats 5]

Not a test: it prints a table. Inputs are the layer's own streams (`build(name, width, heads)` applied to
a random [batch, frames, width] input, so K and V are the layers' defaults: LightNet K = 128, V = 32;
KDA K = V = 128; GSA K = V = M = 32; FoX 32 query heads of dim 4 on 4 kv heads), detached and made leaves,
and each timing is forward plus backward of the core alone (the projections around it are identical in
both forms), in process CPU time. The figure is the median of `repeats` rounds after one warm-up round; the
forms take turns within each round, so the speedup column (specification time / form time) is what to read.
`--layers` times whole GSA and FoX layers instead (build(name, width, heads), causal and bidirectional=True,
rows padded to 200+ frames), the layer's core switched between specification and fast form; it prints the
minimum over the rounds.

Measured on the project's shared 2-core machine (torch 2.13 CPU, 1 thread, defaults above), median of 3:
LightNet loop 1.16 s -> fast 0.43 / 0.42 / 0.41 s at C = 16 / 32 / 64 (2.7-2.8x; the layer runs 32); KDA
loop 1.50 s -> fast 0.63 / 0.54 s at C = 16 / 32 (2.4x / 2.8x; the layer's default stays 16), while at
C = 64 the initial decays summed over a chunk pass the overflow guard and the call runs the loop (5.9 s).
Whole layers (build(name, 128, 4), the same input with 8 rows padded to 200 frames, fwd+bwd, median of 2):
LightNet 1.15 -> 0.57 s, KDA 2.00 -> 1.24 s (projections, convolutions and norms unchanged).
GSA loop 0.24 s -> fast 0.060 / 0.062 s at C = 16 / 32 (4.0x; the layer's default stays 16); FoX autograd
0.70 s -> hand-written backward 0.29 s (2.4x). Whole layers (--layers --frames 300, minimum of 5; four runs
on the machine loaded by other jobs, so the spread): GSA causal 3.0-3.8x (e.g. 415 -> 109 ms), bidirectional
2.9-3.2x; FoX causal 2.1-2.7x (e.g. 585 -> 217 ms), bidirectional 2.2-2.8x. FoX's time is now its softmax
(computed twice, forward and backward) and the matrix products.
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
from sercore.attention.fox import forgetting_parallel, forgetting_parallel_autograd
from sercore.attention.gsa import gsa_chunked, gsa_chunked_loop
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


def layer_rounds(args, x) -> None:
    """Whole GSA and FoX layers, fwd+bwd, with the module's core function set to the specification or the
    fast form in turn (the layer calls it through its module, so the swap reaches it)."""
    import sercore.attention.fox as fox_module
    import sercore.attention.gsa as gsa_module

    mask = torch.arange(x.shape[1])[None] < torch.randint(200, x.shape[1] + 1, (x.shape[0],))[:, None]
    swaps = {"gsa": (gsa_module, "gsa_chunked", gsa_chunked_loop, gsa_chunked),
             "fox": (fox_module, "forgetting_parallel", forgetting_parallel_autograd, forgetting_parallel)}
    print(f"{'layer':16} {'spec ms':>8} {'fast ms':>8} {'speedup':>7}")
    for name, (module, attribute, spec, fast) in swaps.items():
        for bidirectional in (False, True):
            layer = build(name, args.width, args.heads, bidirectional=bidirectional)
            times = {"spec": [], "fast": []}
            for repeat in range(args.repeats + 1):
                for label, fn in (("spec", spec), ("fast", fast)):
                    setattr(module, attribute, fn)
                    seconds = cpu_seconds(lambda z: layer(z, mask), [x])
                    if repeat:
                        times[label].append(seconds)
            setattr(module, attribute, fast)
            spec_ms, fast_ms = (min(times[label]) * 1000 for label in ("spec", "fast"))
            label = f"{name}{' bidir' if bidirectional else ' causal'}"
            print(f"{label:16} {spec_ms:>8.0f} {fast_ms:>8.0f} {spec_ms / fast_ms:>7.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=320, help="frames + text tokens of one packed row")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunks", type=int, nargs="+", default=[16, 32, 64], help="chunk sizes of the fast forms")
    parser.add_argument("--layers", action="store_true", help="whole GSA and FoX layers instead of the cores")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.frames, args.width)
    if args.layers:
        layer_rounds(args, x)
        return
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
    gsa = build("gsa", args.width, args.heads)
    with torch.no_grad():
        st = gsa._streams(x)
    gsa_inputs = tuple(st[name] for name in "qkvsg")

    fox = build("fox", args.width, args.heads)
    with torch.no_grad():
        st = fox._streams(x)
    fox_inputs = (st["q"], st["k"], st["v"], st["log_f"])

    cores = {"lightnet": (lightnet_parallel_loop, lightnet_parallel, lightnet_inputs, ()),
             "kda": (kda_chunked_loop, kda_chunked, kda_inputs, (scale,)),
             "gsa": (gsa_chunked_loop, gsa_chunked, gsa_inputs, (gsa._scale(),))}
    runs = {}
    for name, (loop, fast, inputs, extra) in cores.items():
        # (label, function): the specification at its old layer default (16) first, then the fast form per chunk
        forms = [(f"loop C={SPEC_CHUNK}", lambda *a, f=loop, e=extra: f(*a, *e, SPEC_CHUNK))]
        forms += [(f"fast C={c}", lambda *a, c=c, f=fast, e=extra: f(*a, *e, c)) for c in args.chunks]
        if name == "lightnet":
            forms += [(f"scan C={c}", torch_scan(lambda *a, c=c, f=fast: f(*a, c))) for c in args.chunks]
        runs[name] = (forms, inputs)
    # FoX has no chunks: both forms at the layer's query blocks (the _BLOCK_ELEMENTS rule), autograd's first
    runs["fox"] = ([("autograd", forgetting_parallel_autograd), ("hand bwd", forgetting_parallel)], fox_inputs)
    for name, (forms, inputs) in runs.items():
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
