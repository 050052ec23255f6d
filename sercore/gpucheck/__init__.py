"""The GPU check: one command that verifies every fused path and measures the efficiency study on a bare GPU
machine, within a global time budget, and leaves tidy files the CPU-built book reads.

    python -m sercore gpu-check --out book/gpu              # on one H100/H200 (README, "The GPU check")
    python -m sercore gpu-check --rehearse                  # the same sequence on the CPU at tiny sizes
    python -m sercore gpu-check --wheels .whl               # download fla's wheels to carry (pip, PyPI)

Sequence (each step's wall time goes to provenance.json):
  0. fla missing and a wheels folder present (--wheels-dir, default .whl): pip install --no-index --no-deps
     --target <tmp> of its wheels, put on sys.path and on the subprocesses' PYTHONPATH;
  1. ceilings: the bf16 and fp32 matmul rates and the copy bandwidth, measured now (sercore.gpucheck.roofline);
  2. tests: pytest -m "gpu or kernels" on checks.TEST_FILES, a per-test cap (sercore.gpucheck.timecap, no
     pytest-timeout needed) and a whole-step timeout (--tests-share of the budget); junit xml -> tests.csv;
  3. kernel errors: tests/kernel_errors.py's output and gradient errors -> kernel_errors.csv;
  4. Hopper guard (at most 10 % of the budget): whether any fused path reaches fla's gated chunk_bwd_dqkwg, which fla 0.6.0 refuses on
     Hopper with 3.4.0 <= triton < 3.7.1 (fla/ops/common/chunk_o.py) -> hopper_guard.csv;
  5. online SSL (at most --ssl-share, 8 %, of the budget; sercore.gpucheck.online_ssl): the main paper's
     training step at its size, WavLM-Large from its config (random weights, bf16, inference_mode) on 32 crops
     of 3 s plus the fusion model's forward, backward and AdamW step -> provenance["ssl"];
  6. the efficiency study (sercore.gpucheck.study) -> efficiency.csv, rewritten after every row;
  7. autotune.tar.gz and provenance.json.
The budget (--budget, default 480 s of wall time from the command's start, the tests included; counted from
this module's import) is checked
before every shape; what it cuts is a row with error "skipped: ..." and a line of provenance["skipped"], and
every file is still written. On the CPU (--rehearse, or no CUDA) steps that need Triton are recorded as
"skipped: no triton" when triton is absent (never as passed); with triton installed they run in Triton's
interpreter (TRITON_INTERPRET=1, tiny shapes, tests/triton_interpreter.py's shims installed in this process
too), where the tests step is normally cut by its timeout: the tests not reached are rows "not run".

Files under --out (at most 8, the number the device tool brings back):
  efficiency.csv   mechanism, implementation, protocol (paper|tuned), direction (forward|train), seconds,
                   speech_frames, text_tokens, tokens (= frames + text tokens), dtype, launch (eager|cuda-graph),
                   device, median_ms, p20_ms, p80_ms (20-80 % band), repeats, peak_mem_mb (MB = 1e6 bytes: CUDA
                   peak allocated above the call's entry; CPU: resident high-water mark above the call's entry),
                   flops, bytes, floor_ms (roofline floor), ratio_to_floor (median_ms / floor_ms), error (empty,
                   "OOM: ...", "skipped: ...", or the exception), note. Read it with
                   sercore.bench.load_gpu_results(directory).
  tests.csv        test, outcome (passed|failed|error|skipped), seconds, message
  kernel_errors.csv mechanism, width, tokens, dtype, padded, output_err, grad_err (||fused - ref|| / ||ref||),
                   seconds, device, status (measured | why not)
  hopper_guard.csv mechanism, direction, calls_gated_chunk_bwd_dqkwg, guard_active, triton, hopper, status
  provenance.json  parameters, git_sha (SERCORE_GIT_SHA when the copy has no .git), versions (torch, triton,
                   fla...), device (GPU name, driver, CUDA), dtypes per protocol, ceilings, created, budget
                   {seconds, used}, skipped, steps (wall seconds), autotune, wheels, files, and ssl (the
                   online-SSL step, when run): rehearsal (true on the CPU: tiny config, not a GPU figure), device,
                   config (wavlm-large | tiny), batch, crop_seconds, text_tokens, warmup, steps (asked),
                   precision (of the SSL forward), steps_timed, seconds_per_step (median of the whole training
                   step), p20_s, p80_s, frozen_seconds_per_step (the SSL forward alone, median),
                   crops_per_second (batch / seconds_per_step), max_memory_allocated_mb
                   (torch.cuda.max_memory_allocated over the timed steps, MB = 1e6 bytes; null on the CPU),
                   weights_mb (allocated before them: weights, AdamW state, the batch), ssl_parameters,
                   trainable_parameters, error (empty, "OOM: ...", "skipped: ..." or the exception); what was
                   not measured is null
  autotune.tar.gz  Triton's cached autotuning results (*.autotune.json) for a rerun

fla's autotuning: fla 0.6.0 decorates its kernels with triton.autotune(..., cache_results=FLA_CACHE_RESULTS)
(fla/utils/env.py; default on), so Triton writes each kernel's chosen config to TRITON_CACHE_DIR as
<kernel>.autotune.json, keyed on the kernel's autotune key (block sizes, head counts, flags, dtypes: most of
fla's keys leave out the sequence length, so a new length reuses the choice; fla/ops/utils/cumsum.py and a few
others key on B, H, S). The check (a) points TRITON_CACHE_DIR at --triton-cache (default .triton-cache in the
repository) for itself and its subprocesses, (b) restores the *.autotune.json files from --out's
autotune.tar.gz (committed after a GPU run) before anything imports fla, so a rerun skips benchmarking the
configs, and (c) packs them again at the end; provenance["autotune"] records how many were restored and
found. fla's own pinned-config store (FLA_CACHE_MODE + FLA_CONFIG_DIR, fla/ops/utils/cache.py) covers only
the kernels decorated with fla_cache_autotune, and fla 0.6.0 ships no configs for our kernels, so it is not
used. The first run on a bare machine still autotunes each (kernel, key) once: the tests run first and warm
the same kernels, and the study warms every shape before timing it.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMPORTED = time.monotonic()  # the budget counts from here: the CLI imports this module when it starts
FLA_WHEELS = ("flash-linear-attention==0.6.0", "fla-core==0.6.0")
# pip download for the GPU machine (Python 3.12, x86-64); both wheels are pure Python.
WHEEL_PLATFORM = ("--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                  "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                  "--platform", "manylinux2014_x86_64")
STEPS = ("tests", "errors", "guard", "ssl", "study")  # --steps: the default runs every one, in this order
FILES = ("efficiency.csv", "tests.csv", "kernel_errors.csv", "hopper_guard.csv", "provenance.json",
         "autotune.tar.gz")
REHEARSAL = {"dim": 64, "heads": 4, "seconds": (0.2, 0.5, 1, 2, 4, 8), "text_tokens": 8, "warmup": 1,
             "repeats": 5, "matmul_n": 256, "copy_bytes": 16 << 20}
FULL = {"dim": 1024, "heads": 4, "seconds": (10, 25, 50, 100, 200, 400), "text_tokens": 32, "warmup": 3,
        "repeats": 20, "matmul_n": 8192, "copy_bytes": 2 << 30}


def download_wheels(directory: str | Path) -> dict:
    """pip download --no-deps the wheels the GPU machine lacks into `directory`; {file: bytes}."""
    directory = Path(directory)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *WHEEL_PLATFORM, "-d", str(directory),
                    *FLA_WHEELS], check=True)
    return {p.name: p.stat().st_size for p in sorted(directory.glob("*.whl"))}


def install_wheels(directory: Path, env: dict) -> dict:
    """When fla is not importable and `directory` holds wheels: install them into a temporary folder that this
    process and its subprocesses import from. Returns what was done (for provenance)."""
    if importlib.util.find_spec("fla") is not None:
        return {"fla": "present"}
    wheels = sorted(directory.glob("*.whl")) if directory.is_dir() else []
    if not wheels:
        return {"fla": f"missing, and no wheels in {directory}"}
    target = Path(tempfile.mkdtemp(prefix="sercore-site-"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(target), *map(str, wheels)], check=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH", "")]))
    return {"fla": "installed from wheels", "wheels": [w.name for w in wheels], "target": str(target)}


def restore_autotune(archive: Path, cache: Path) -> int:
    """Extract the *.autotune.json regular files of `archive` into `cache`; how many."""
    if not archive.is_file():
        return 0
    count = 0
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and member.name.endswith(".autotune.json") and ".." not in parts \
                    and not Path(member.name).is_absolute():
                target = cache / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                count += 1
    return count


def pack_autotune(cache: Path, archive: Path) -> int:
    """Write every *.autotune.json under `cache` into `archive` (tar.gz); how many."""
    from sercore.provenance import atomic_write_bytes

    found = sorted(cache.rglob("*.autotune.json")) if cache.is_dir() else []
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in found:
            tar.add(path, arcname=str(path.relative_to(cache)))
    atomic_write_bytes(archive, buffer.getvalue())
    return len(found)


def gpu_facts() -> dict:
    """GPU name, driver and CUDA versions (what provenance.device_info does not record)."""
    import torch

    facts = {"cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        try:
            facts["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                             capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as error:
            facts["driver"] = f"unknown ({error})"
    return facts


def write_table(path: Path, rows: list[dict], columns) -> None:
    import pandas as pd

    from sercore.provenance import atomic_write_text

    atomic_write_text(path, pd.DataFrame(rows, columns=list(columns)).to_csv(index=False))


def run_check(out: Path, rehearse: bool = False, budget_s: float = 480.0, device: str | None = None,
              tests_share: float = 0.35, errors_share: float = 0.10, guard_share: float = 0.10,
              ssl_share: float = 0.08, per_test_cap: float = 60.0,
              wheels_dir: Path = REPO / ".whl", triton_cache: Path = REPO / ".triton-cache",
              steps=STEPS, sizes: dict | None = None, clock=time.monotonic,
              start: float | None = None) -> dict:
    """Run the check, write every file under `out`, return the provenance dict. The budget counts from `start`
    (a reading of `clock`; the command passes IMPORTED, its own start), else from this call."""
    from sercore.gpucheck.study import Budget

    budget = Budget(budget_s, clock=clock, start=start)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    triton_cache.mkdir(parents=True, exist_ok=True)
    for key, value in {"TRITON_CACHE_DIR": str(triton_cache), "FLA_CACHE_RESULTS": "1"}.items():
        os.environ[key] = env[key] = value  # before anything imports fla or triton
    restored = restore_autotune(out / "autotune.tar.gz", triton_cache)
    wheels = install_wheels(Path(wheels_dir), env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    interpreting = rehearse and importlib.util.find_spec("triton") is not None
    if interpreting:
        os.environ["TRITON_INTERPRET"] = env["TRITON_INTERPRET"] = "1"
        # the shims that let fla's kernels run in Triton's interpreter (the kernel tests install them in
        # tests/conftest.py; this process runs the Hopper guard and the Triton key-sparse rows itself)
        sys.path.insert(0, str(REPO / "tests"))
        from triton_interpreter import install

        install()

    import torch

    from sercore.bench import PROTOCOLS
    from sercore.gpucheck import checks, online_ssl, roofline, study
    from sercore.provenance import atomic_write_json, provenance

    sizes = sizes or (REHEARSAL if rehearse else FULL)
    torch_device = torch.device(device or ("cpu" if rehearse or not torch.cuda.is_available() else "cuda"))
    parameters = {"rehearse": rehearse, "budget_s": budget_s, "device": str(torch_device), "sizes": sizes,
                  "tests_share": tests_share, "errors_share": errors_share, "guard_share": guard_share,
                  "ssl_share": ssl_share,
                  "per_test_cap_s": per_test_cap,
                  "steps": list(steps), "protocols": {p: {k: v for k, v in PROTOCOLS[p].items()}
                                                      for p in PROTOCOLS}}
    record = {"steps": {}, "skipped": budget.skipped, "wheels": wheels,
              "autotune": {"triton_cache_dir": str(triton_cache), "restored": restored},
              "dtypes": {p: PROTOCOLS[p]["dtype"] for p in PROTOCOLS}, "gpu": gpu_facts(),
              "triton_interpreter": interpreting}

    def finish():
        meta = provenance(parameters, device=torch_device, **record)
        if meta["git_sha"] == "unknown" and os.environ.get("SERCORE_GIT_SHA"):
            meta["git_sha"] = os.environ["SERCORE_GIT_SHA"] + " (SERCORE_GIT_SHA: the copy has no .git)"
        meta["budget"] = {"seconds": budget_s, "used": round(budget.used(), 1)}
        meta["files"] = list(FILES)
        atomic_write_json(out / "provenance.json", meta)
        return meta

    def step(name, function):
        start = clock()
        try:
            return function()
        finally:
            record["steps"][name] = round(clock() - start, 1)

    record["ceilings"] = step("ceilings", lambda: roofline.measure_ceilings(
        torch_device, matmul_n=sizes["matmul_n"], copy_bytes=sizes["copy_bytes"]))
    print(f"gpu-check: ceilings {record['ceilings']}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        test_rows, error_rows, guard_rows = [], [], []
        if "tests" in steps:
            share = min(tests_share * budget_s, budget.left() - 30)
            if share > 5:
                test_rows = step("tests", lambda: checks.run_tests(REPO, Path(scratch) / "junit.xml", share,
                                                                    per_test_cap, env))
            else:
                test_rows = [{"test": "all", "outcome": "skipped", "message": budget.skip("tests")}]
        write_table(out / "tests.csv", test_rows, checks.TEST_COLUMNS)
        print(f"gpu-check: tests {_count(test_rows, 'outcome')}", flush=True)
        if "errors" in steps:
            share = min(errors_share * budget_s, budget.left() - 30)
            if share > 5 or not checks.has_triton():
                error_rows = step("errors", lambda: checks.run_kernel_errors(
                    REPO, Path(scratch) / "errors.csv", share, env, tiny=rehearse or torch_device.type == "cpu"))
            else:
                error_rows = [{"mechanism": "all", "status": budget.skip("kernel errors")}]
        write_table(out / "kernel_errors.csv", error_rows, checks.ERROR_COLUMNS)
        if "guard" in steps:
            guard_end = budget.used() + guard_share * budget_s
            guard_rows = step("guard", lambda: checks.hopper_guard(
                torch_device, allows=lambda: budget.used() < guard_end and budget.allows(30), skip=budget.skip))
        write_table(out / "hopper_guard.csv", guard_rows, checks.GUARD_COLUMNS)
        print(f"gpu-check: hopper guard {[(r['mechanism'], r['status']) for r in guard_rows]}", flush=True)

    if "ssl" in steps:
        record["ssl"] = step("ssl", lambda: online_ssl.run_ssl_step(
            budget, torch_device, sizes.get("ssl"), share_s=ssl_share * budget_s))
        print(f"gpu-check: online ssl {record['ssl']}", flush=True)
    rows: list[dict] = []
    save_rows = lambda current: write_table(out / "efficiency.csv", current, study.COLUMNS)  # noqa: E731
    save_rows(rows)
    if "study" in steps:
        step("study", lambda: study.run_study(
            rows, budget, torch_device, dim=sizes["dim"], heads=sizes["heads"], seconds=sizes["seconds"],
            text_tokens=sizes["text_tokens"], warmup=sizes["warmup"], repeats=sizes["repeats"],
            ceilings=record["ceilings"], on_row=save_rows))
    save_rows(rows)
    record["autotune"]["found"] = pack_autotune(triton_cache, out / "autotune.tar.gz")
    meta = finish()
    print(f"gpu-check: efficiency rows {len(rows)} ({_count(rows, 'error', lambda e: e.split(':')[0] or 'ok')}); "
          f"budget used {meta['budget']['used']} of {budget_s:g} s; files in {out}", flush=True)
    return meta


def _count(rows, key, label=lambda value: value) -> dict:
    counts: dict = {}
    for row in rows:
        name = label(str(row.get(key, "")))
        counts[name] = counts.get(name, 0) + 1
    return counts


def _main(args) -> int:
    if args.wheels:
        sizes = download_wheels(args.wheels)
        print(json.dumps(sizes, indent=1))
        print(f"total {sum(sizes.values()) / 1e6:.2f} MB in {args.wheels}")
        return 0
    out = Path(args.out or ("/tmp/sercore-gpu-rehearsal" if args.rehearse else "book/gpu"))
    run_check(out, rehearse=args.rehearse, budget_s=args.budget, device=args.device, tests_share=args.tests_share,
              errors_share=args.errors_share, ssl_share=args.ssl_share, per_test_cap=args.per_test_cap, wheels_dir=Path(args.wheels_dir),
              triton_cache=Path(args.triton_cache), steps=tuple(args.steps), start=IMPORTED)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("gpu-check", help="verify the fused paths and measure the efficiency study on "
                                   "a GPU (or rehearse on the CPU)", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="folder for the files (default book/gpu; /tmp/sercore-gpu-rehearsal with "
                        "--rehearse)")
    parser.add_argument("--rehearse", action="store_true", help="the same sequence on the CPU at tiny sizes")
    parser.add_argument("--budget", type=float, default=480.0, help="wall seconds from the start, tests included")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available; cpu with --rehearse)")
    parser.add_argument("--tests-share", type=float, default=0.35, help="at most this share of the budget for tests")
    parser.add_argument("--errors-share", type=float, default=0.10, help="at most this share for kernel errors")
    parser.add_argument("--ssl-share", type=float, default=0.08, help="at most this share for the online-SSL step")
    parser.add_argument("--per-test-cap", type=float, default=60.0, help="seconds per test")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=list(STEPS))
    parser.add_argument("--wheels-dir", default=str(REPO / ".whl"), help="wheels to install when fla is missing")
    parser.add_argument("--triton-cache", default=str(REPO / ".triton-cache"), help="TRITON_CACHE_DIR for the run")
    parser.add_argument("--wheels", metavar="DIR", help="only download the wheels to carry into DIR, then exit")
    parser.set_defaults(func=_main)
