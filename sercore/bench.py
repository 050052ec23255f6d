"""Efficiency benchmark: latency and memory of one token mixer call vs sequence length.

The main paper's protocol: only the seq2seq call is measured, batch 1, width 1024, 4 heads, fp32, one
warm-up, CUDA events; memory = peak allocated minus allocated at entry; length set by audio seconds at
50 frames/s. We take the median of several timed calls (fla's benchmarks do the same) after warming every
shape, because fla's kernels autotune on the first call of each new shape and that must not be timed.

On the CPU the same code times with perf_counter and reports memory as NaN (torch keeps no CPU peak
counter); an out-of-memory at one length is recorded as NaN and the sweep goes on.

    python -m sercore bench --mechanisms softmax kda --seconds 10 100 400 --device cuda --out runs/bench
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import torch

from sercore.attention import NAMES, build
from sercore.progress import bar_disabled

FRAMES_PER_SECOND = 50
SEQUENCE_MECHANISMS = tuple(name for name in NAMES if name != "area")

# Protocols are settings, not code paths: "paper" is what the paper measured, "tuned" what a careful user
# would run (bf16, fused softmax through SDPA).
PROTOCOLS = {
    "paper": {"dtype": "float32", "softmax": {"implementation": "naive"}},
    "tuned": {"dtype": "bfloat16", "softmax": {"implementation": "standard"}},
}


def _time_call(fn, device: torch.device, repeats: int) -> float:
    """Median milliseconds of fn() over `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(mixer: torch.nn.Module, length: int, dim: int, device: torch.device, dtype: torch.dtype,
            repeats: int = 10, batch: int = 1, seed: int = 0) -> dict:
    """Latency (ms, median) and peak extra memory (GB, CUDA only) of one forward call at `length` frames."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch, length, dim, generator=generator).to(device=device, dtype=dtype)
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    row = {"length": length, "ms": math.nan, "peak_gb": math.nan, "error": ""}
    try:
        with torch.no_grad():
            call = lambda: mixer(x, mask)  # noqa: E731
            row["ms"] = _time_call(call, device, repeats)
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                entry = torch.cuda.memory_allocated()
                call()
                torch.cuda.synchronize()
                row["peak_gb"] = (torch.cuda.max_memory_allocated() - entry) / 1e9
    except torch.OutOfMemoryError as error:  # recorded, not a crash: the sweep continues
        row["error"] = f"OOM: {str(error).splitlines()[0]}"
    finally:
        del x
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def benchmark(mechanisms=SEQUENCE_MECHANISMS, seconds=(10, 50, 100, 200, 400), lengths=None, dim: int = 1024,
              heads: int = 4, protocol: str = "paper", device: str | None = None, repeats: int = 10,
              options: dict | None = None, progress: bool = True):
    """Sweep mechanisms x lengths; returns a pandas DataFrame (one row per mechanism and length).

    `lengths` (frames) overrides `seconds` (audio seconds at 50 frames/s). `options` maps a mechanism name
    to extra constructor options (e.g. {"retnet": {"bidirectional": True}})."""
    import pandas as pd
    from tqdm.auto import tqdm

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    unknown = sorted(set(mechanisms) - set(SEQUENCE_MECHANISMS))
    if unknown:
        raise ValueError(f"not sequence mixers: {unknown}; valid: {', '.join(SEQUENCE_MECHANISMS)}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, PROTOCOLS[protocol]["dtype"])
    lengths = list(lengths) if lengths else [int(s * FRAMES_PER_SECOND) for s in seconds]
    rows = []
    bar = tqdm(total=len(mechanisms) * len(lengths), disable=bar_disabled(progress),
               desc=f"bench ({device.type})")
    for name in mechanisms:
        kwargs = {**PROTOCOLS[protocol].get(name, {}), **(options or {}).get(name, {})}
        torch.manual_seed(0)
        mixer = build(name, dim, heads, **kwargs).to(device=device, dtype=dtype).eval()
        for length in lengths:
            bar.set_postfix(mechanism=name, length=length)
            row = measure(mixer, length, dim, device, dtype, repeats=repeats)
            rows.append({"mechanism": name, "seconds": length / FRAMES_PER_SECOND, **row,
                         "dtype": str(dtype).replace("torch.", ""), "device": device.type, "protocol": protocol})
            bar.update()
        del mixer
    bar.close()
    return pd.DataFrame(rows)


def save(table, out_dir: str | Path, parameters: dict) -> Path:
    """Write bench.csv and bench.json (provenance) atomically into out_dir."""
    from sercore.provenance import atomic_write_json, atomic_write_text, provenance

    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "bench.csv", table.to_csv(index=False))
    atomic_write_json(out_dir / "bench.json", provenance(parameters))
    return out_dir / "bench.csv"


def _main(args) -> int:
    parameters = {"mechanisms": args.mechanisms, "seconds": args.seconds, "lengths": args.lengths, "dim": args.dim,
                  "heads": args.heads, "protocol": args.protocol, "device": args.device, "repeats": args.repeats}
    if args.threads:
        torch.set_num_threads(args.threads)
        parameters["threads"] = args.threads
    table = benchmark(args.mechanisms, args.seconds, args.lengths, args.dim, args.heads, args.protocol, args.device,
                      args.repeats)
    print(table.pivot(index="length", columns="mechanism", values="ms").round(2).to_string())
    if args.out:
        print(f"written: {save(table, args.out, parameters)}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="latency / memory of the token mixers vs sequence length",
                                   description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    parser.add_argument("--mechanisms", nargs="+", default=list(SEQUENCE_MECHANISMS), choices=SEQUENCE_MECHANISMS)
    parser.add_argument("--seconds", nargs="+", type=float, default=[10, 50, 100, 200, 400],
                        help="audio seconds (50 frames/s)")
    parser.add_argument("--lengths", nargs="+", type=int, help="sequence lengths in frames (overrides --seconds)")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--protocol", default="paper", choices=sorted(PROTOCOLS))
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", help="folder for bench.csv + bench.json")
    parser.set_defaults(func=_main)


def load(out_dir: str | Path):
    """(table, provenance dict) from a folder written by save(), or None when it holds no results."""
    import json

    import pandas as pd

    out_dir = Path(out_dir)
    if not (out_dir / "bench.csv").is_file():
        return None
    meta = json.loads((out_dir / "bench.json").read_text()) if (out_dir / "bench.json").is_file() else {}
    return pd.read_csv(out_dir / "bench.csv"), meta
