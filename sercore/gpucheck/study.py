"""The efficiency study of the GPU check: every mechanism x protocol x direction x length, timed under a global
time budget, one tidy row per shape (the columns are sercore.gpucheck's efficiency.csv schema).

Which code runs is sercore.bench.PROTOCOLS (the one dict of path choices). Each shape is warmed (`warmup`
untimed calls: the first call of a new shape compiles and autotunes fla's kernels) and then timed `repeats`
times: median with the 20-80 % band. "forward" runs under torch.no_grad; "train" is forward plus backward
(torch.autograd.grad of the output against a fixed random dy, to the input and every parameter). An
out-of-memory is a row with NaN timings and the error; so is any other exception of one shape (e.g. fla
refusing a kernel), so one failure never stops the sweep. When the budget is spent the remaining shapes are
rows with error "skipped: ..." and are listed in the provenance.
"""

from __future__ import annotations

import math
import time

import torch

from sercore.attention import build
from sercore.bench import (FLA_LAYERS, FRAMES_PER_SECOND, PROTOCOLS, SEQUENCE_MECHANISMS, band, cpu_peak_mb,
                           fla_layer, protocol_options, timings)
from sercore.gpucheck import roofline

SECONDS = (10, 25, 50, 100, 200, 400)
DIRECTIONS = ("forward", "train")
COLUMNS = ("mechanism", "implementation", "protocol", "direction", "seconds", "speech_frames", "text_tokens",
           "tokens", "dtype", "launch", "device", "median_ms", "p20_ms", "p80_ms", "repeats", "peak_mem_mb",
           "flops", "bytes", "floor_ms", "ratio_to_floor", "error", "note")


class Budget:
    """Wall-clock budget from `start` (seconds); `clock` is injectable so tests can drive it."""

    def __init__(self, seconds: float, clock=time.monotonic, start: float | None = None):
        self.seconds, self.clock = float(seconds), clock
        self.start = clock() if start is None else start
        self.skipped: list[str] = []

    def used(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.seconds - self.used()

    def allows(self, reserve: float = 0.0) -> bool:
        return self.left() > reserve

    def skip(self, what: str) -> str:
        self.skipped.append(what)
        return f"skipped: time budget ({self.seconds:g} s) spent"


def needs_triton(name: str, options: dict) -> bool:
    """Key-sparse's fused mode is sercore's own Triton kernel (the fla mechanisms' need fla as well)."""
    return name == "keysparse" and options.get("mode") == "fused"


def kernels_available(device: torch.device) -> bool:
    """fla / Triton kernels can run: CUDA with triton installed (or the interpreter on the CPU)."""
    import importlib.util
    import os

    has_triton = importlib.util.find_spec("triton") is not None
    return has_triton and (device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1")


def implementations(protocol: str, name: str, device: torch.device) -> list[tuple[str, dict, bool]]:
    """[(implementation label, constructor options, use fla's layer)] timed for one mechanism."""
    settings = PROTOCOLS[protocol]
    options = protocol_options(protocol, name)
    use_fla = bool(settings.get("fla_layer")) and name in FLA_LAYERS and device.type == "cuda"
    main = f"fla.layers.{FLA_LAYERS[name]}" if use_fla else f"sercore.{name} ({_path_label(name, options, device)})"
    rows = [(main, options, use_fla)]
    for label, extra in settings.get("variants", {}).get(name, {}).items():
        rows.append((f"sercore.{name} ({label})", {**options, **extra}, False))
    return rows


def _path_label(name: str, options: dict, device: torch.device) -> str:
    """The `mode` that runs: as asked, or what "auto" picks (fused on CUDA, reference elsewhere)."""
    mode = options.get("mode", "auto")
    if mode != "auto":
        return mode
    return "fused" if device.type == "cuda" else "reference"


def _graph_replay(call, x):
    """Capture call(x) in a CUDA graph after warm-up on a side stream; returns graph.replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            call(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call(x)
    return graph.replay


def _peak_mb(fn, device: torch.device) -> float:
    if device.type != "cuda":
        return cpu_peak_mb(fn)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    entry = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - entry) / 1e6


def time_shape(module, call, x, direction: str, launch: str, device: torch.device, warmup: int,
               repeats: int) -> dict:
    """Timing band, peak memory and launch of one shape; raises what the call raises."""
    note = ""
    if direction == "forward":
        def step():
            with torch.no_grad():
                return call(x)
    else:
        x = x.detach().requires_grad_(True)
        params = [p for p in module.parameters() if p.requires_grad]
        dy = torch.randn(x.shape, generator=torch.Generator(device="cpu").manual_seed(1)).to(x)

        def step():
            return torch.autograd.grad(call(x), [x, *params], dy, allow_unused=True)
    timed = step
    used_launch = "eager"
    if direction == "forward" and launch == "cuda-graph" and device.type == "cuda":
        try:
            with torch.no_grad():
                timed, used_launch = _graph_replay(call, x), "cuda-graph"
        except Exception as error:  # recorded per row: the eager timing is then what was measured
            note = f"graph capture failed, eager timed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
            torch.cuda.synchronize()
    times = timings(timed, device, repeats, warmup=warmup)
    return {**band(times), "repeats": len(times), "peak_mem_mb": _peak_mb(step, device), "launch": used_launch,
            "note": note}


def run_study(out_rows: list, budget: Budget, device: torch.device, dim: int = 1024, heads: int = 4,
              seconds=SECONDS, text_tokens: int = 32, mechanisms=SEQUENCE_MECHANISMS,
              protocols=("tuned", "paper"), directions=DIRECTIONS, warmup: int = 3, repeats: int = 20,
              ceilings: dict | None = None, reserve: float = 10.0, on_row=None) -> list:
    """Append one row per shape to out_rows (and call on_row(out_rows) after each, so a killed run still leaves
    its file); returns out_rows. `reserve`: seconds of budget kept for writing the files."""
    ceilings = ceilings or {}
    for protocol in protocols:
        dtype_name = PROTOCOLS[protocol]["dtype"]
        dtype = getattr(torch, dtype_name)
        launch = PROTOCOLS[protocol].get("launch", "eager")
        for direction in directions:
            for name in mechanisms:
                for implementation, options, use_fla in implementations(protocol, name, device):
                    _sweep(out_rows, budget, device, name, implementation, options, use_fla, protocol, direction,
                           dtype, dtype_name, launch, dim, heads, seconds, text_tokens, warmup, repeats,
                           ceilings, reserve, on_row)
    return out_rows


def _sweep(out_rows, budget, device, name, implementation, options, use_fla, protocol, direction, dtype,
           dtype_name, launch, dim, heads, seconds, text_tokens, warmup, repeats, ceilings, reserve, on_row):
    module = call = None
    setup_error = ""
    if needs_triton(name, options) and not kernels_available(device):
        setup_error = "skipped: no triton" if device.type == "cpu" else "skipped: no triton on this machine"
    for secs in seconds:
        frames = int(round(secs * FRAMES_PER_SECOND))
        tokens = frames + text_tokens
        row = {"mechanism": name, "implementation": implementation, "protocol": protocol, "direction": direction,
               "seconds": secs, "speech_frames": frames, "text_tokens": text_tokens, "tokens": tokens,
               "dtype": dtype_name, "launch": "", "device": device.type, "median_ms": math.nan,
               "p20_ms": math.nan, "p80_ms": math.nan, "repeats": 0, "peak_mem_mb": math.nan, "flops": math.nan,
               "bytes": math.nan, "floor_ms": math.nan, "ratio_to_floor": math.nan, "error": "", "note": ""}
        what = f"{protocol}/{direction}/{implementation}/{secs:g}s"
        if setup_error:
            row["error"] = setup_error
        elif not budget.allows(reserve):
            row["error"] = budget.skip(what)
        else:
            try:
                if module is None:
                    torch.manual_seed(0)
                    mixer = build(name, dim, heads, **options).to(device=device, dtype=dtype)
                    module = fla_layer(name, mixer, dim, heads, options).to(device=device, dtype=dtype) \
                        if use_fla else mixer
                    module.eval()
                    call = (lambda x: module(x)[0]) if use_fla else (lambda x: module(x))
                    ref = mixer
                generator = torch.Generator(device="cpu").manual_seed(0)
                x = torch.randn(1, tokens, dim, generator=generator).to(device=device, dtype=dtype)
                row.update(time_shape(module, call, x, direction, launch, device, warmup, repeats))
                flops = roofline.forward_flops(name, ref, tokens) * (1 if direction == "forward" else 3)
                nbytes = roofline.min_bytes(ref, tokens, dim, torch.empty(0, dtype=dtype).element_size(), direction)
                rate = ceilings.get("matmul_tflops", {}).get(dtype_name, math.nan) * 1e12
                floor = roofline.floor_ms(flops, nbytes, rate, ceilings.get("copy_gb_s", math.nan) * 1e9)
                row.update(flops=flops, bytes=nbytes, floor_ms=floor,
                           ratio_to_floor=row["median_ms"] / floor if floor > 0 else math.nan)
            except torch.OutOfMemoryError as error:  # NaN with the error; the sweep goes on
                row["error"] = f"OOM: {str(error).splitlines()[0][:300]}"
            except Exception as error:  # one shape's failure is a row, not a crash (module docstring)
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
            finally:
                x = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        out_rows.append(row)
        if on_row is not None:
            on_row(out_rows)
