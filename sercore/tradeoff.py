"""The main paper's trade-off: accuracy of each mechanism against the cost of its mixer at one length.

    summary = results.seed_summary(runs, "macro_f1", splits=["Test1"])
    cost = tradeoff.efficiency(mechanisms, gpu_dir="../book/gpu", profile="default")
    table = tradeoff.join(summary, cost)          # one row per mechanism: F1 with interval, latency, memory
    plots.tradeoff(table, cost.attrs["source"])

The paper (Casals et al. 2026, github marccasals98/AttentionAlternatives) sets the macro-F1 of each
mechanism beside the latency and peak memory of its seq2seq call at 400 s of audio on a GPU. Those GPU
numbers come from book/gpu/ when it holds them (sercore.bench.load_gpu_results, the GPU check's table:
columns EFFICIENCY_COLUMNS). Without them the machine measures its own with sercore.bench at one length, the
profile's bench.tradeoff_seconds (else the longest length of its bench sweep), and the table says so in
attrs["source"] ("this machine (CPU)", the length, the width): a CPU number at 25 s is never passed off as
the paper's 400 s on a GPU. On the CPU torch keeps no peak-memory counter, so peak_mem_mb there is
sercore.bench.cpu_peak_mb: the resident high-water mark one call adds above its entry, measured in a forked
child (NaN only where fork or /proc/self/clear_refs is missing, or the child does not answer).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

# The GPU check's results schema (sercore.bench.load_gpu_results); a CPU measurement is put in the same shape.
EFFICIENCY_COLUMNS = ("mechanism", "protocol", "direction", "seconds", "tokens", "dtype", "median_ms", "p20_ms",
                      "p80_ms", "peak_mem_mb", "floor_ms", "error")
PAPER_SECONDS = 400.0
# the checkout sercore runs from, as sercore.book.ROOT: not imported from there, since a page's key covers the
# modules it imports (sercore.book.page_modules) and the accuracy page must not re-run for a book driver edit
REPOSITORY = Path(__file__).resolve().parents[1]


def from_bench(table: pd.DataFrame) -> pd.DataFrame:
    """A sercore.bench.benchmark table in the EFFICIENCY_COLUMNS shape (forward calls; the median with its
    20-80 % band over the timed calls; the timer floor is NaN; peak memory in MB, on the CPU
    sercore.bench.cpu_peak_mb's)."""
    out = pd.DataFrame({
        "mechanism": table["mechanism"], "protocol": table["protocol"], "direction": "forward",
        "seconds": table["seconds"].astype(float), "tokens": table["length"], "dtype": table["dtype"],
        "median_ms": table["ms"], "p20_ms": table["p20_ms"], "p80_ms": table["p80_ms"],
        "peak_mem_mb": table["peak_gb"] * 1e3, "floor_ms": math.nan, "error": table["error"].fillna("")})
    return out.reset_index(drop=True)


def select(table: pd.DataFrame, seconds: float, protocol: str = "paper", direction: str = "forward") -> pd.DataFrame:
    """The rows of one (protocol, direction, length): one per mechanism; two rows for one mechanism there are an
    error naming it, since which to plot would be a guess."""
    missing = sorted(set(EFFICIENCY_COLUMNS) - set(table.columns))
    if missing:
        raise ValueError(f"efficiency table lacks columns {missing}; expected {', '.join(EFFICIENCY_COLUMNS)}")
    rows = table[(table["protocol"] == protocol) & (table["direction"] == direction)
                 & (table["seconds"].astype(float) - seconds).abs().lt(1e-9)]
    doubled = sorted(rows["mechanism"][rows["mechanism"].duplicated()].unique())
    if doubled:
        raise ValueError(f"efficiency table has several {protocol}/{direction} rows at {seconds:g} s for "
                         f"{doubled}; keep one per mechanism (e.g. one dtype)")
    return rows.reset_index(drop=True)


def efficiency(mechanisms, gpu_dir=None, profile: str = "default", seconds: float = PAPER_SECONDS,
               protocol: str = "paper", loader=None, progress: bool = False) -> pd.DataFrame:
    """Cost of each mechanism's mixer call (EFFICIENCY_COLUMNS, one row per mechanism measured) and where it
    came from, in attrs["source"].

    GPU results (loader(gpu_dir), default sercore.bench.load_gpu_results) are used when they have `protocol`
    forward rows at `seconds`. Otherwise sercore.bench measures here at one length, the profile's
    bench.tradeoff_seconds (else the longest of bench.seconds), with its dim, heads, repeats and warmup;
    attrs["source"] names this machine and that length, attrs["gpu_absent"] the reason the GPU table was not
    used. Both name gpu_dir relative to the repository root when it lies inside it (shown_folder)."""
    from sercore import bench
    from sercore.profiles import section

    mechanisms = list(mechanisms)
    loader = loader if loader is not None else bench.load_gpu_results
    gpu = loader(gpu_dir) if gpu_dir is not None else None
    label = gpu.attrs.get("label", "GPU") if gpu is not None else ""
    rehearsal = gpu is not None and not label.startswith("GPU")  # a CPU rehearsal's files are not GPU results
    rows = select(gpu, seconds, protocol) if gpu is not None and not rehearsal else None
    rows = rows[rows["mechanism"].isin(mechanisms)] if rows is not None else None
    folder = shown_folder(gpu_dir) if gpu_dir is not None else None
    if rows is not None and len(rows):
        rows = rows.reset_index(drop=True)
        rows.attrs.update(source=f"{label}, {protocol} protocol, {seconds:g} s of audio (GPU results in "
                                 f"{folder})", gpu_absent="", seconds=seconds, device="cuda")
        return rows
    reason = (f"no GPU results in {folder}" if gpu is None
              else f"{folder} holds {label}" if rehearsal
              else f"GPU results in {folder} have no {protocol} forward rows at {seconds:g} s")
    cfg = section(profile, "bench")
    # the sweep's longest length would take minutes (and gigabytes) for the quadratic mixers on a CPU
    longest = cfg.get("tradeoff_seconds") or max(cfg.get("seconds") or [20])
    measured = bench.benchmark(mechanisms, seconds=[longest], dim=cfg.get("dim", 1024), heads=cfg.get("heads", 4),
                               protocol=protocol, device="cpu", repeats=cfg.get("repeats", 3), progress=progress,
                               warmup=cfg.get("warmup", 1))
    rows = from_bench(measured)
    rows.attrs.update(source=f"this machine (CPU), {protocol} protocol at width {cfg.get('dim', 1024)}, "
                             f"{longest:g} s of audio, not the paper's 400 s on a GPU; peak memory as sercore.bench "
                             f"measures it on the CPU", gpu_absent=reason, seconds=float(longest),
                      device="cpu", notes=measured.attrs.get("notes", []))
    return rows


def shown_folder(folder) -> str:
    """`folder` as a reader of a page finds it: relative to the repository root when it lies inside it (a book
    page runs from book/executed, so the book's "../gpu" is book/gpu), else as given."""
    for path in (Path(os.path.abspath(folder)), Path(folder).resolve()):  # as given, then through symlinks
        if path.is_relative_to(REPOSITORY):
            return path.relative_to(REPOSITORY).as_posix()
    return str(folder)


def join(summary: pd.DataFrame, cost: pd.DataFrame, split: str = "Test1") -> pd.DataFrame:
    """One row per mechanism of `summary` (results.seed_summary; its variants named by mechanism): the split's
    mean metric with its 95 % interval and seed count, beside the mechanism's latency and peak memory from
    `cost` (NaN where `cost` has no row, e.g. an OOM or a mechanism not timed)."""
    part = summary[summary["split"] == split]
    if part.empty:
        raise ValueError(f"seed summary has no {split} rows (splits: {sorted(set(summary['split']))})")
    left = part[["variant", "n_seeds", "mean", "ci95_low", "ci95_high"]].rename(columns={"variant": "mechanism"})
    right = cost[["mechanism", "seconds", "median_ms", "p20_ms", "p80_ms", "peak_mem_mb", "error"]]
    table = left.merge(right, on="mechanism", how="left", validate="one_to_one")
    table.attrs.update(cost.attrs, split=split)
    return table.set_index("mechanism")
