import os

import pytest
import torch

# Two cores in CI: keep torch from oversubscribing them when pytest runs.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (GPU test); not run on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
