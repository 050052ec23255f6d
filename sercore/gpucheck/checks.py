"""The correctness steps of the GPU check: the tests marked gpu and kernels (pytest, junit xml parsed into rows),
tests/kernel_errors.py's measured errors, and the Hopper guard of fla's gated chunk backward.

Each step runs in a subprocess with a wall-clock timeout taken from the global budget, so a hung kernel ends as
a row ("timeout after N s"), never as a missing file.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TEST_FILES = ("tests/test_attention_fla_kernels.py", "tests/test_attention_fla_kernels_gsa_kda.py",
              "tests/test_attention_gpu_softmax_keysparse.py")
TEST_COLUMNS = ("test", "outcome", "seconds", "message")
ERROR_COLUMNS = ("mechanism", "width", "tokens", "dtype", "padded", "output_err", "grad_err", "seconds", "device",
                 "status")
GUARD_COLUMNS = ("mechanism", "direction", "calls_gated_chunk_bwd_dqkwg", "guard_active", "triton", "hopper",
                 "status")
# fla 0.6.0, fla/ops/common/chunk_o.py chunk_bwd_dqkwg: raises for g is not None on Hopper with
# 3.4.0 <= triton < 3.7.1 ("produces incorrect results for gated chunk_bwd_dqkwg (see #640)").
GUARDED = ("fla.ops.common.chunk_o", "chunk_bwd_dqkwg")
FLA_MECHANISMS = ("retnet", "lightnet", "gsa", "fox", "kda")
CONTROL = "control: fla chunk_simple_gla with g"  # a call that does reach the guarded kernel (_control)


def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def parse_junit(path: str | Path) -> list[dict]:
    """One row per <testcase>: test id, outcome (passed|failed|error|skipped), seconds, first line of the message."""
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        if not case.get("name"):
            continue  # pytest's stand-in for the test a SIGINT interrupted; that test is then a "not run" row
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                message = (child.get("message") or child.text or "").strip().splitlines()[:1]
                message = message[0][:300] if message else ""
                break
        rows.append({"test": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": outcome,
                     "seconds": float(case.get("time") or 0.0), "message": message})
    return rows


def junit_id(nodeid: str) -> str:
    """pytest's node id (tests/test_x.py::Class::test[p]) as parse_junit names it (tests.test_x.Class::test[p])."""
    path, *rest = nodeid.split("::")
    classname = ".".join([path[:-3].replace("/", ".") if path.endswith(".py") else path, *rest[:-1]])
    return f"{classname}::{rest[-1]}" if rest else classname


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_tests(repo: Path, junit: Path, timeout: float, per_test_cap: float, env: dict, files=TEST_FILES,
              marker: str = "gpu or kernels") -> list[dict]:
    """pytest -m "gpu or kernels" on `files` with the per-test cap (sercore.gpucheck.timecap) and a whole-run
    timeout; the rows of its junit xml. At the timeout pytest gets SIGINT (it then writes the junit xml of the
    tests done so far) and every collected test without a result is a row "not run"; a crash of pytest itself
    is a row too."""
    present = [f for f in files if (repo / f).is_file()]
    log = junit.with_suffix(".collected.jsonl")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "sercore.gpucheck.timecap", *(["-m", marker] if marker else []),
               f"--junitxml={junit}", "-o", "junit_family=xunit2", *present]
    env = {**env, "SERCORE_TEST_CAP_S": f"{per_test_cap:g}", "SERCORE_TEST_LOG": str(log)}
    # The child must take SIGINT: a job started in the background of a non-interactive shell inherits it
    # ignored, and Python then installs no KeyboardInterrupt handler, so pytest would write no junit xml.
    process = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, preexec_fn=_default_sigint)
    timed_out = False
    try:
        output, _ = process.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        timed_out = True
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    rows = parse_junit(junit) if junit.is_file() else []
    done = {row["test"] for row in rows}
    collected = [json.loads(line)["test"] for line in log.read_text().splitlines()] if log.is_file() else []
    why = f"the tests step's timeout ({timeout:.0f} s) came first" if timed_out else "no result reported"
    rows += [{"test": junit_id(nodeid), "outcome": "not run", "seconds": 0.0, "message": why}
             for nodeid in collected if junit_id(nodeid) not in done]
    if not junit.is_file():
        tail = (output or "").strip().splitlines()[-1:] or [""]
        rows.append({"test": "pytest", "outcome": "error", "seconds": 0.0,
                     "message": f"no junit xml (exit {process.returncode}): {tail[0][:300]}"})
    return rows


def run_kernel_errors(repo: Path, out_csv: Path, timeout: float, env: dict, tiny: bool) -> list[dict]:
    """tests/kernel_errors.py --csv in a subprocess; its rows (status "measured"), or one row saying why none."""
    if not has_triton():
        return [{"mechanism": "all", "status": "skipped: no triton"}]
    command = [sys.executable, "tests/kernel_errors.py", "--csv", str(out_csv), *(["--tiny"] if tiny else [])]
    status = ""
    try:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=max(timeout, 1))
        if done.returncode != 0:
            status = f"failed (exit {done.returncode}): {(done.stderr.strip().splitlines() or [''])[-1][:300]}"
    except subprocess.TimeoutExpired:
        status = f"timeout after {timeout:.0f} s: the cases after the last row were not measured"
    rows = []
    if out_csv.is_file():
        with open(out_csv, newline="") as handle:
            rows = [{**row, "status": "measured"} for row in csv.DictReader(handle)]
    return rows + ([{"mechanism": "rest" if rows else "all", "status": status}] if status else [])


def hopper_guard(device, dim: int = 1024, heads: int = 4, tokens: int = 256, allows=lambda: True,
                 skip=lambda what: "skipped") -> list[dict]:
    """Does any of our fused paths reach fla's guarded kernel? Each fla mechanism's fused module runs forward and
    backward while every module-level reference to chunk_bwd_dqkwg records calls with a gate g; a RuntimeError
    from fla's guard is recorded as the row's status, not raised. `allows()` is asked before each mechanism
    (the budget); when it says no, the row's status is skip(what)."""
    import torch

    if not has_triton():
        return [{"mechanism": name, "direction": "train", "status": "skipped: no triton"} for name in FLA_MECHANISMS]
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return [{"mechanism": name, "direction": "train", "status": "skipped: no CUDA"} for name in FLA_MECHANISMS]
    import triton

    from sercore.attention import build

    for ops in ("retention", "lightnet", "gsa", "kda", "forgetting_attn.parallel"):
        importlib.import_module(f"fla.ops.{ops}")
    from fla.utils import IS_NVIDIA_HOPPER, TRITON_ABOVE_3_4_0, TRITON_ABOVE_3_7_1

    guard_active = bool(IS_NVIDIA_HOPPER and TRITON_ABOVE_3_4_0 and not TRITON_ABOVE_3_7_1)
    original = getattr(importlib.import_module(GUARDED[0]), GUARDED[1])
    gated_calls = []

    def recording(*args, **kwargs):
        if kwargs.get("g") is not None:
            gated_calls.append(1)
        return original(*args, **kwargs)

    holders = [m for m in list(sys.modules.values()) if getattr(m, GUARDED[1], None) is original]
    rows = []
    try:
        for module in holders:
            setattr(module, GUARDED[1], recording)
        for name in FLA_MECHANISMS:
            gated_calls.clear()
            row = {"mechanism": name, "direction": "train", "guard_active": guard_active,
                   "triton": triton.__version__, "hopper": bool(IS_NVIDIA_HOPPER)}
            if not allows():
                rows.append({**row, "status": skip(f"hopper guard/{name}")})
                continue
            try:
                torch.manual_seed(0)
                on_gpu = device.type == "cuda"  # else Triton's interpreter: a tiny layer
                width = dim if on_gpu else 64
                options = {"num_heads": 4} if name == "fox" and not on_gpu else {}
                mixer = build(name, width, heads, mode="fused", **options).to(device)
                x = torch.randn(1, tokens if on_gpu else 24, width, device=device, requires_grad=True)
                mixer(x).square().sum().backward()
                row["status"] = "ok"
            except RuntimeError as error:
                row["status"] = f"raised: {str(error).splitlines()[0][:300]}"
            row["calls_gated_chunk_bwd_dqkwg"] = bool(gated_calls)
            rows.append(row)
        rows.append(_control(device, allows, skip, gated_calls, {"direction": "train", "guard_active": guard_active,
                                                                 "triton": triton.__version__,
                                                                 "hopper": bool(IS_NVIDIA_HOPPER)}))
    finally:
        for module in holders:
            setattr(module, GUARDED[1], original)
    return rows


def _control(device, allows, skip, gated_calls, row) -> dict:
    """The positive control: fla's chunk_simple_gla with a per-head gate g, which does reach the guarded kernel,
    so its row must say True (and, where the guard is active, "raised: ..."): proof that the recorder sees it."""
    import torch

    row = {"mechanism": CONTROL, **row}
    if not allows():
        return {**row, "status": skip("hopper guard/control")}
    from fla.ops.simple_gla import chunk_simple_gla

    gated_calls.clear()
    generator = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(1, 64, 2, 32, generator=generator).to(device).requires_grad_(True) for _ in range(3))
    g = torch.nn.functional.logsigmoid(torch.randn(1, 64, 2, generator=generator)).to(device).requires_grad_(True)
    try:
        output, _ = chunk_simple_gla(q, k, v, g=g)
        output.square().sum().backward()
        row["status"] = "ok"
    except RuntimeError as error:
        row["status"] = f"raised: {str(error).splitlines()[0][:300]}"
    row["calls_gated_chunk_bwd_dqkwg"] = bool(gated_calls)
    return row
