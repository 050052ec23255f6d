"""pytest plugin: a per-test wall-clock cap, so one hung kernel test cannot eat the GPU check's budget.

    SERCORE_TEST_CAP_S=60 python -m pytest -p sercore.gpucheck.timecap ...

pytest-timeout may be absent on the GPU machine, so the check carries its own: a SIGALRM timer around each
test's call phase that fails the test with "over the per-test cap of N s". Python handles the signal only
between bytecodes, so a call stuck inside one CUDA kernel ends at that kernel's return; the whole pytest run
also has a subprocess timeout (sercore.gpucheck.checks.run_tests) for that case.

With SERCORE_TEST_LOG=<file> it also appends one JSON line per collected test ({"event": "collected",
"test": nodeid}), so the tests a timeout left unrun can be named in the table.
"""

from __future__ import annotations

import json
import os
import signal

import pytest


def _cap() -> float:
    try:
        return float(os.environ.get("SERCORE_TEST_CAP_S", "0"))
    except ValueError:
        return 0.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    cap = _cap()
    if cap <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        pytest.fail(f"over the per-test cap of {cap:g} s", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, cap)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_collection_modifyitems(session, config, items):
    log = os.environ.get("SERCORE_TEST_LOG")
    if log:
        with open(log, "a") as handle:
            for item in items:
                handle.write(json.dumps({"event": "collected", "test": item.nodeid}) + "\n")
