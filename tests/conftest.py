import os

import pytest
import torch
from attention_checks import INTERPRETING

# Two cores in CI: keep torch from oversubscribing them when pytest runs.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

# Kernel tests (marker `kernels`) run fla's Triton kernels: on CUDA, or on the CPU in Triton's interpreter when
# TRITON_INTERPRET=1 and triton is installed (slow; tests/triton_interpreter.py lists the shims it needs).
if INTERPRETING:
    from triton_interpreter import install

    install()


@pytest.fixture(autouse=True, scope="session")
def _private_feature_cache(tmp_path_factory):
    """Tests never read or fill the user's default feature cache (sercore.features.cache.default_cache_dir)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SERCORE_CACHE", str(tmp_path_factory.mktemp("sercore-cache")))
        yield


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA (GPU test); not run on this machine")
    skip_kernels = pytest.mark.skip(reason="runs fla/Triton kernels: needs CUDA, or TRITON_INTERPRET=1 with triton "
                                           "installed (Triton's CPU interpreter); not run here")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "kernels" in item.keywords and not (torch.cuda.is_available() or INTERPRETING):
            item.add_marker(skip_kernels)
