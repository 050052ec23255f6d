"""sercore.train.allocator: freed feature maps are reused, not faulted in again (glibc only).

Measured in a fresh process each (as a training run is): pytest's own process has a heap shaped by what ran
before, which decides whether a block can come from the heap at all."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")

SCRIPT = """
import resource, sys, torch
from sercore.train.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() is True and keep_freed_memory() is True  # set once, idempotent
def faults(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(n // 4, dtype=torch.float32)
    x.fill_(1.0)  # touch every page
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print([faults(64 << 20) for _ in range(6)], resource.getpagesize())
"""


def _faults(setting: str) -> tuple[list, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, setting], capture_output=True, text=True, check=True)
    counts, page = out.stdout.rsplit(" ", 1)
    return eval(counts), int(page)  # noqa: S307 - our own script's list of ints


def test_a_freed_block_is_reused_without_page_faults():
    """64 MiB is above glibc's largest dynamic mmap threshold (32 MiB): by default every cycle maps fresh
    pages; with keep_freed_memory the heap holds the block after it settles, and later cycles fault nothing."""
    default, page = _faults("default")
    kept, _ = _faults("keep")
    pages = (64 << 20) // page
    assert min(default[2:]) > pages // 2, "the system allocator as it starts: fresh pages every cycle"
    assert max(kept[3:]) < pages // 10, "kept: a training step's cycle reuses the pages already mapped"
