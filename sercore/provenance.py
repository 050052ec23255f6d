"""Provenance and safe writing: every results file says what produced it, and no file is half-written.

Atomic writes go to a temporary file in the same folder and are renamed over the target, so an
interrupted run leaves either the old file or the new one, never a truncated mix. The file gets the mode a
plain open() would give it (0o666 minus the umask), not mkstemp's private 0600, so results and caches can
be shared the way the user's umask says.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import random
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

PACKAGES = ("sercore", "torch", "flash-linear-attention", "fla-core", "triton", "transformers",
            "numpy", "pandas", "scikit-learn")


def current_umask() -> int:
    # The umask can only be read by setting it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call write(tmp_path), then rename tmp_path over path with mode 0o666 & ~umask (what open() gives).
    The temp file is removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def git_sha(repo: str | os.PathLike | None = None) -> str:
    """The commit of the checkout sercore runs from, with '+dirty' when it has uncommitted changes."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions(packages=PACKAGES) -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def device_info(device=None) -> dict[str, Any]:
    """The machine, and when `device` (the torch device a run used) is given: "torch_device" ("cpu",
    "cuda:0", ...) and, for a CUDA device, "cuda_device" = the name of that very GPU."""
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor(),
                            "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device is not None:
            device = torch.device(device)
            if device.type == "cuda" and device.index is None:
                device = torch.device("cuda", torch.cuda.current_device())
            info["torch_device"] = str(device)
        if torch.cuda.is_available() and (device is None or device.type == "cuda"):
            info["cuda_device"] = torch.cuda.get_device_name(device)
            info["cuda_version"] = torch.version.cuda
    except ImportError:
        pass
    return info


def provenance(parameters: dict | None = None, seed: int | None = None, device=None, **keys) -> dict[str, Any]:
    """The block every results file carries: parameters, seed, git SHA, versions, device (with the torch
    device used, when given), time, and any content keys passed (e.g. data_key=, code_key=)."""
    return {
        "parameters": parameters or {},
        "seed": seed,
        **keys,
        "git_sha": git_sha(),
        "versions": versions(),
        "device": device_info(device),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
