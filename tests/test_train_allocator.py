"""sercore.train.allocator: freed feature maps are reused, not faulted in again (glibc only)."""

import resource
import sys

import pytest
import torch

from sercore.train.allocator import keep_freed_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")


def _faults_of_touch(n_bytes: int) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(n_bytes // 4, dtype=torch.float32)
    x.fill_(1.0)  # touch every page
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_a_freed_block_is_reused_without_page_faults():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # set once, idempotent
    n = 64 << 20  # above glibc's largest dynamic mmap threshold (32 MiB): always a fresh mmap by default
    _faults_of_touch(n)  # first time: the heap grows, its pages are faulted in
    pages = n // resource.getpagesize()
    assert _faults_of_touch(n) < pages // 10  # second time: the same pages, already mapped
