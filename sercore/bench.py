"""Efficiency benchmark: latency and memory of one seq2seq (token-mixer) call vs sequence length.

The main paper's protocol (github marccasals98/AttentionAlternatives): only the seq2seq call is measured,
batch 1, width 1024, 4 heads, fp32, one warm-up, CUDA events; memory = peak allocated minus allocated at
entry; the call gets no padding mask (`mask="none"`; `mask="model"` calls the layers as the public model's
wrappers in scripts/poolings.py do, which hand GSA an all-ones mask); length set by audio seconds at 50 frames/s. In the model that call sees
the speech frames followed by the transcript's text tokens, so each row's sequence is
`speech_frames + text_tokens` long. `text_tokens` is a setting: by default the median token count of a
corpus's transcripts (`median_text_tokens`, counted with the text encoder's tokenizer, [CLS] and [SEP]
included, as sercore.features.text feeds them), or DEFAULT_TEXT_TOKENS when no corpus is given.

What is timed (the `implementation` column; sercore's rows name the `mode` that ran):
  * on CUDA, for the five fla mechanisms: fla's own layer class (fla.layers.*, the paper's call) with the
    weights of sercore's module copied in, and sercore's module beside it as a second row (its PyTorch glue
    around the same kernels: packing, dtype casts);
  * softmax: sercore's module (the paper's SA is a plain batched matmul softmax, mode `naive` in
    the `paper` protocol); it is not an fla layer;
  * on the CPU there is no fla (it needs triton and a GPU): only sercore's PyTorch reference paths are timed,
    which rank the reference implementations, not the kernels the paper timed (softmax's tuned row is
    torch's CPU SDPA kernel, mode `sdpa`). The table's notes say so.
We take the median of several timed calls (fla's benchmarks do the same) after `warmup` untimed calls per
shape (default 1, the paper's one warm-up; the default profile's bench section sets 2), because fla's kernels
autotune on the first call of each new shape and that must not be timed.

On the CPU the timer is perf_counter and memory is the resident high-water mark above the call's entry
(cpu_peak_mb: torch keeps no CPU peak counter); an out-of-memory at one length is recorded as NaN with its
error and the sweep goes on. Each length reports the median and the 20-80 % band (p20_ms, p80_ms).

PAPER_FIGURES holds the main paper's published numbers (its H100, fla kernels) for pages to mark beside
measured ones; they are quoted, never measured here.

    python -m sercore bench --mechanisms softmax kda --seconds 10 100 400 --device cuda --out runs/bench
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import torch

from sercore.attention import SEQUENCE_NAMES, build
from sercore.attention import _REGISTRY as _ATTENTION_REGISTRY
from sercore.progress import bar_disabled

FRAMES_PER_SECOND = 50
# The main paper's published efficiency figures (reference-notes, "How Attention Shapes Emotion"): quoted for
# reference marks on the efficiency page, one dict per number.
PAPER_FIGURES = (
    {"mechanism": "softmax", "seconds": 10, "quantity": "median_ms", "value": 0.55},
    {"mechanism": "softmax", "seconds": 400, "quantity": "median_ms", "value": 48.59},
    {"mechanism": "kda", "seconds": 400, "quantity": "median_ms", "value": 5.96},
    {"mechanism": "fox", "seconds": 400, "quantity": "peak_gb", "value": 0.328},
)
SEQUENCE_MECHANISMS = SEQUENCE_NAMES  # the mechanisms with forward(x, mask); the list is sercore.attention's
# Text tokens appended to the speech frames when no corpus is given: this library's fixed stand-in (about
# one spoken sentence in BERT word pieces plus [CLS] and [SEP]), not a number measured on the paper's corpus.
DEFAULT_TEXT_TOKENS = 32

# The fla layer class the paper called for each mechanism (fla.layers, fla 0.6.0). sercore's modules keep
# those classes' constructor and parameter names, so one state_dict loads into both.
FLA_LAYERS = {"retnet": "MultiScaleRetention", "lightnet": "LightNetAttention", "gsa": "GatedSlotAttention",
              "fox": "ForgettingAttention", "kda": "KimiDeltaAttention"}
# Padding masks: "none" calls every layer on x alone (the fla layers without a mask); "model" calls each as the
# public model's wrappers do (scripts/poolings.py): GSA with an all-ones attention_mask (which sends fla's layer
# through its un-padding path), the others without one.
MASKS = ("none", "model")
MODEL_MASKED = ("gsa",)
# Constructor options of sercore's modules that fla's classes do not have.
SERCORE_ONLY_OPTIONS = ("mode", "bidirectional")

# Protocols are settings, not code paths: "paper" is what the paper measured, "tuned" what a careful user
# would run. This dict is the one place that says which path each protocol runs, for `bench` and for
# `gpu-check` (sercore.gpucheck): per mechanism the constructor options of sercore's module; "dtype";
# "launch" (how gpu-check launches the forward call: "eager", or "cuda-graph": captured once and replayed,
# on CUDA only, since short sequences are launch-bound there); "fla_layer" (on CUDA, time fla's own layer
# class, the paper's call, instead of sercore's module for the five fla mechanisms); "variants": extra rows
# {mechanism: {implementation label: options}} timed beside the main one.
# Every path is chosen by the mixers' one switch, `mode` (sercore.attention.modes(name) lists the values).
PROTOCOLS = {
    "paper": {"dtype": "float32", "launch": "eager", "fla_layer": True,
              "softmax": {"mode": "naive"},
              # the published Key-Sparse Transformer code materialises the B*H*T*S weights
              "keysparse": {"mode": "reference"}},
    "tuned": {"dtype": "bfloat16", "launch": "cuda-graph", "fla_layer": False,
              "softmax": {"mode": "auto"},  # SDPA: its CUDA kernels, or torch's CPU kernel ("sdpa")
              "keysparse": {"mode": "memory-linear"},
              "variants": {"keysparse": {"triton": {"mode": "fused"}}}},
}
PROTOCOL_SETTINGS = ("dtype", "launch", "fla_layer", "variants")  # the keys of a protocol that are not mechanisms


def protocol_options(protocol: str, name: str) -> dict:
    """Constructor options of mechanism `name` under `protocol` (PROTOCOLS)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    return dict(PROTOCOLS[protocol].get(name, {}))


def token_counter(model_dir=None):
    """text -> token count of the text encoder's tokenizer ([CLS] and [SEP] included, capped at its limit),
    the count sercore.features.text gives the model; default the shipped all-MiniLM-L6-v2 tokenizer (the
    uncased WordPiece vocabulary of BERT)."""
    from sercore.features.local_model import offline_transformers
    from sercore.features.text import default_text_model_dir

    tokenizer = offline_transformers().AutoTokenizer.from_pretrained(str(model_dir or default_text_model_dir()),
                                                                     local_files_only=True)
    limit = tokenizer.model_max_length if tokenizer.model_max_length < 100_000 else 512
    return lambda text: min(len(tokenizer(text)["input_ids"]), limit)


def median_text_tokens(corpus, count=None) -> int:
    """Median text-token count over the utterances of `corpus` (a folder load_corpus reads, or its table).

    `count` maps a transcript to its token count (default: token_counter()). An empty transcript counts as
    the text encoder sees it ("[CLS] [SEP]": 2 with the default tokenizer), so the median is of what the
    model's seq2seq call gets."""
    import pandas as pd

    if isinstance(corpus, pd.DataFrame):
        table, where = corpus, "the table given"
    else:
        from sercore.data import load_corpus

        table, where = load_corpus(corpus)[0], str(corpus)
    if "transcript" not in table or table.empty:
        raise ValueError(f"{where}: no utterances with a transcript column to count text tokens from")
    count = count or token_counter()
    return int(round(statistics.median(count(str(text)) for text in table["transcript"].fillna(""))))


def resolve_text_tokens(text_tokens: int | None = None, corpus=None, count=None) -> tuple[int, str]:
    """(text tokens per sequence, where the number came from): an explicit count, else the corpus's median,
    else DEFAULT_TEXT_TOKENS."""
    if text_tokens is not None:
        if isinstance(text_tokens, bool) or not isinstance(text_tokens, int) or text_tokens < 0:
            raise ValueError(f"text_tokens={text_tokens!r}: must be an integer >= 0 (0: speech frames only)")
        return text_tokens, "set"
    if corpus is not None:
        return median_text_tokens(corpus, count), f"median of {corpus if isinstance(corpus, (str, Path)) else 'the table'}"
    return DEFAULT_TEXT_TOKENS, "DEFAULT_TEXT_TOKENS, no corpus given"


def timings(fn, device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Milliseconds of each of `repeats` calls of fn(), after `warmup` untimed calls (the first call of a new
    shape compiles and autotunes fla's kernels; it must not be timed). CUDA: events around each call; CPU:
    perf_counter."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
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
    return times


def band(times: list[float]) -> dict:
    """median_ms, p20_ms, p80_ms of a list of milliseconds (linear interpolation between order statistics)."""
    import numpy as np

    if not times:
        return {"median_ms": math.nan, "p20_ms": math.nan, "p80_ms": math.nan}
    p20, median, p80 = np.percentile(np.asarray(times, dtype=float), [20, 50, 80])
    return {"median_ms": float(median), "p20_ms": float(p20), "p80_ms": float(p80)}


def _time_call(fn, device: torch.device, repeats: int) -> float:
    """Median milliseconds of fn() over `repeats` calls, after one warm-up call."""
    return statistics.median(timings(fn, device, repeats))


def cpu_peak_mb(fn, timeout: float = 120.0) -> float:
    """Peak resident memory (MB) that one call of fn() adds on the CPU, measured in a forked child so the
    parent's heap and timings are untouched: the child fixes glibc's mmap threshold at 128 KiB (mallopt
    M_MMAP_THRESHOLD, so every large tensor is its own mapping, returned at free instead of cached), runs one
    torch thread, calls fn() once untimed (a forked child faults in the code and file pages it touches, which
    are not the call's memory), returns the free heap pages inherited from the parent to the OS (malloc_trim:
    a large request is served from free heap memory before any mmap), resets the kernel's high-water mark (writing 5 to /proc/self/clear_refs sets
    VmHWM to VmRSS), calls fn() again and reports VmHWM minus VmRSS before that call. NaN where fork, glibc or that
    /proc file is missing, or when the child does not answer within `timeout` seconds."""
    import ctypes
    import os
    import re
    import select

    if not hasattr(os, "fork") or not os.path.exists("/proc/self/clear_refs"):
        return math.nan

    def status(field):
        with open("/proc/self/status") as handle:
            return int(re.search(rf"{field}:\s+(\d+) kB", handle.read()).group(1)) / 1024

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, answer, exit without running the parent's cleanup
        answer = "nan"
        try:
            os.close(read)
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 128 * 1024)  # -3: M_MMAP_THRESHOLD (malloc.h)
            torch.set_num_threads(1)
            fn()
            libc.malloc_trim(0)  # free heap pages back to the OS: reusing them must fault them in again
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            before = status("VmRSS")
            fn()
            answer = repr(max(status("VmHWM") - before, 0.0))
        finally:
            os.write(write, answer.encode())
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], timeout)
        answer = os.read(read, 64).decode() if ready else ""
    finally:
        os.close(read)
        if not answer:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
    try:
        return float(answer)
    except ValueError:
        return math.nan


def measure(call, length: int, dim: int, device: torch.device, dtype: torch.dtype,
            repeats: int = 10, batch: int = 1, seed: int = 0, warmup: int = 1) -> dict:
    """Latency (ms: median, and the 20-80 % band p20_ms..p80_ms) and peak extra memory (GB; CUDA: peak
    allocated above the entry; CPU: resident high-water mark above the entry, cpu_peak_mb) of call(x) on
    x [batch, length, dim], with no padding mask (the paper's protocol: `call` gets x alone)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch, length, dim, generator=generator).to(device=device, dtype=dtype)
    row = {"length": length, "ms": math.nan, "p20_ms": math.nan, "p80_ms": math.nan, "peak_gb": math.nan,
           "error": ""}
    try:
        with torch.no_grad():
            timed = band(timings(lambda: call(x), device, repeats, warmup=warmup))
            row.update(ms=timed["median_ms"], p20_ms=timed["p20_ms"], p80_ms=timed["p80_ms"])
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                entry = torch.cuda.memory_allocated()
                call(x)
                torch.cuda.synchronize()
                row["peak_gb"] = (torch.cuda.max_memory_allocated() - entry) / 1e9
            else:
                row["peak_gb"] = cpu_peak_mb(lambda: call(x)) / 1e3
    except torch.OutOfMemoryError as error:  # recorded, not a crash: the sweep continues
        row["error"] = f"OOM: {str(error).splitlines()[0]}"
    finally:
        del x
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def fla_layer(name: str, mixer: torch.nn.Module, dim: int, heads: int, options: dict):
    """fla's own layer class for mechanism `name`, built with the same arguments and loaded with `mixer`'s
    weights (strict: a parameter that does not match is an error, not a silently different layer).
    Needs flash-linear-attention with triton (a CUDA machine)."""
    import fla.layers  # needs triton

    arg_names = _ATTENTION_REGISTRY[name][2]
    kwargs = {arg_names["dim"]: dim, arg_names["heads"]: heads,
              **{k: v for k, v in options.items() if k not in SERCORE_ONLY_OPTIONS}}
    layer = getattr(fla.layers, FLA_LAYERS[name])(**kwargs)
    layer.load_state_dict(mixer.state_dict(), strict=True)
    return layer


def _implementations(name: str, mixer, dim: int, heads: int, options: dict, device: torch.device,
                     dtype: torch.dtype, notes: list[str], masked: bool = False) -> list[tuple[str, object]]:
    """[(implementation label, call x -> output)] to time for one mechanism, fla's layer first where it runs;
    `masked`: each call gets an all-ones mask (built in the call, as the public wrapper builds it)."""
    path = mixer.path(torch.empty(1, 1, dim, device=device))  # the mode that runs here, e.g. softmax's "naive"
    ours = (f"sercore.attention.{name} ({path})",
            (lambda x: mixer(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device))) if masked
            else (lambda x: mixer(x)))
    if name not in FLA_LAYERS:
        return [ours]
    if device.type != "cuda":
        notes.append(f"{name}: fla's {FLA_LAYERS[name]} not timed (fla needs triton and CUDA); only sercore's "
                     "PyTorch reference path ran")
        return [ours]
    if options.get("bidirectional"):
        notes.append(f"{name}: bidirectional=True has no fla layer; only sercore's module was timed")
        return [ours]
    layer = fla_layer(name, mixer, dim, heads, options).to(device=device, dtype=dtype).eval()
    theirs = ((lambda x: layer(x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long, device=x.device))[0])
              if masked else (lambda x: layer(x)[0]))
    return [(f"fla.layers.{FLA_LAYERS[name]}", theirs), ours]


def benchmark(mechanisms=SEQUENCE_MECHANISMS, seconds=(10, 50, 100, 200, 400), lengths=None, dim: int = 1024,
              heads: int = 4, protocol: str = "paper", device: str | None = None, repeats: int = 20,
              options: dict | None = None, progress: bool = True, text_tokens: int | None = None, corpus=None,
              mask: str = "none", warmup: int = 1, time_cap_ms: float | None = None):
    """Sweep mechanisms x lengths; returns a pandas DataFrame (one row per mechanism, implementation and
    length) whose `attrs["notes"]` say what could not be timed here.

    `lengths` (speech frames) overrides `seconds` (audio seconds at 50 frames/s); every sequence is those
    frames plus `text_tokens` (see resolve_text_tokens; `corpus` gives the median). `options` maps a
    mechanism name to extra constructor options (e.g. {"retnet": {"bidirectional": True}}). `mask` (MASKS):
    "none", or "model" for the public model's calls (an all-ones mask for GSA only). `warmup` untimed calls
    precede the `repeats` timed ones at every length. `time_cap_ms`: once a mechanism's median passes it, its
    longer lengths are rows with error "skipped: ..." (so a CPU sweep can reach each quadratic mechanism's
    limit without spending minutes past it)."""
    import pandas as pd
    from tqdm.auto import tqdm

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    unknown = sorted(set(mechanisms) - set(SEQUENCE_MECHANISMS))
    if unknown:
        raise ValueError(f"not sequence mixers: {unknown}; valid: {', '.join(SEQUENCE_MECHANISMS)}")
    if mask not in MASKS:
        raise ValueError(f"unknown mask {mask!r}; valid: {', '.join(MASKS)}")
    tokens, tokens_from = resolve_text_tokens(text_tokens, corpus)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, PROTOCOLS[protocol]["dtype"])
    frames = list(lengths) if lengths else [int(s * FRAMES_PER_SECOND) for s in seconds]
    rows, notes = [], [f"each sequence: speech frames + {tokens} text tokens ({tokens_from}); mask={mask}"]
    bar = tqdm(total=len(mechanisms) * len(frames), disable=bar_disabled(progress), desc=f"bench ({device.type})")
    for name in mechanisms:
        kwargs = {**protocol_options(protocol, name), **(options or {}).get(name, {})}
        torch.manual_seed(0)
        mixer = build(name, dim, heads, **kwargs).to(device=device, dtype=dtype).eval()
        masked = mask == "model" and name in MODEL_MASKED
        implementations = _implementations(name, mixer, dim, heads, kwargs, device, dtype, notes, masked)
        capped = {}
        for speech in frames:
            bar.set_postfix(mechanism=name, frames=speech)
            for implementation, call in implementations:
                if implementation in capped:
                    row = {"length": speech + tokens, "ms": math.nan, "p20_ms": math.nan, "p80_ms": math.nan,
                           "peak_gb": math.nan, "error": capped[implementation]}
                else:
                    row = measure(call, speech + tokens, dim, device, dtype, repeats=repeats, warmup=warmup)
                    if time_cap_ms is not None and row["ms"] > time_cap_ms:
                        capped[implementation] = (f"skipped: {row['ms']:.0f} ms at {speech / FRAMES_PER_SECOND:g} s "
                                                  f"passed the time cap of {time_cap_ms:g} ms")
                rows.append({"mechanism": name, "implementation": implementation,
                             "seconds": speech / FRAMES_PER_SECOND, "speech_frames": speech, "text_tokens": tokens,
                             **row, "mask": "all-ones" if masked else "none", "dtype": str(dtype).replace("torch.", ""),
                             "device": device.type, "protocol": protocol})
            bar.update()
        del mixer, implementations
    bar.close()
    table = pd.DataFrame(rows)
    table.attrs["notes"] = notes
    return table


def save(table, out_dir: str | Path, parameters: dict) -> Path:
    """Write bench.csv and bench.json (provenance, with the table's notes) atomically into out_dir."""
    from sercore.provenance import atomic_write_json, atomic_write_text, provenance

    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "bench.csv", table.to_csv(index=False))
    atomic_write_json(out_dir / "bench.json", provenance({**parameters, "notes": table.attrs.get("notes", [])}))
    return out_dir / "bench.csv"


def _main(args) -> int:
    parameters = {"mechanisms": args.mechanisms, "seconds": args.seconds, "lengths": args.lengths, "dim": args.dim,
                  "heads": args.heads, "protocol": args.protocol, "device": args.device, "repeats": args.repeats,
                  "text_tokens": args.text_tokens, "corpus": args.corpus, "mask": args.mask, "warmup": args.warmup,
                  "time_cap_ms": args.time_cap_ms}
    if args.threads:
        torch.set_num_threads(args.threads)
        parameters["threads"] = args.threads
    table = benchmark(args.mechanisms, args.seconds, args.lengths, args.dim, args.heads, args.protocol, args.device,
                      args.repeats, text_tokens=args.text_tokens, corpus=args.corpus, mask=args.mask,
                      warmup=args.warmup, time_cap_ms=args.time_cap_ms)
    print(table.pivot(index="length", columns=["mechanism", "implementation"], values="ms").round(2).to_string())
    print("\n".join(table.attrs["notes"]))
    if args.out:
        print(f"written: {save(table, args.out, parameters)}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="latency / memory of the token mixers vs sequence length",
                                   description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    parser.add_argument("--mechanisms", nargs="+", default=list(SEQUENCE_MECHANISMS), choices=SEQUENCE_MECHANISMS)
    parser.add_argument("--seconds", nargs="+", type=float, default=[10, 50, 100, 200, 400],
                        help="audio seconds (50 frames/s)")
    parser.add_argument("--lengths", nargs="+", type=int, help="speech frames (overrides --seconds)")
    parser.add_argument("--text-tokens", type=int, help="text tokens after the speech frames (default: the median "
                        f"of --corpus's transcripts, else {DEFAULT_TEXT_TOKENS}; 0: speech only)")
    parser.add_argument("--corpus", help="corpus folder whose median transcript token count sets --text-tokens")
    parser.add_argument("--mask", default="none", choices=MASKS,
                        help="none: no padding mask; model: as the public model's wrappers (all-ones for GSA)")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--protocol", default="paper", choices=sorted(PROTOCOLS))
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before each length's timed ones")
    parser.add_argument("--time-cap-ms", type=float, help="stop a mechanism's sweep once its median passes this")
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


GPU_RESULTS = "efficiency.csv"  # the file sercore.gpucheck writes under its --out folder (book/gpu)


def load_gpu_results(directory: str | Path = "book/gpu"):
    """The GPU efficiency table written by `python -m sercore gpu-check` (sercore.gpucheck's schema: one row
    per mechanism, implementation, protocol, direction and length), as a pandas DataFrame whose
    attrs["provenance"] holds provenance.json and attrs["label"] says what measured it: "GPU (<name>)", or
    "CPU rehearsal ..." for a folder written by --rehearse; None when the folder holds no efficiency.csv."""
    import json

    import pandas as pd

    directory = Path(directory)
    if not (directory / GPU_RESULTS).is_file():
        return None
    text = ("error", "note", "launch", "mechanism", "implementation", "protocol", "direction", "dtype", "device")
    table = pd.read_csv(directory / GPU_RESULTS, dtype={column: str for column in text})
    for column in text:
        if column in table:
            table[column] = table[column].fillna("")
    provenance_file = directory / "provenance.json"
    table.attrs["provenance"] = json.loads(provenance_file.read_text()) if provenance_file.is_file() else {}
    gpu = table.attrs["provenance"].get("gpu", {}).get("gpu")
    table.attrs["label"] = f"GPU ({gpu})" if gpu else "CPU rehearsal of the GPU check (not GPU results)"
    return table
