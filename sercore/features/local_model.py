"""Frozen transformers models from a local folder only: sercore never downloads weights.

`require_model_dir` fails early, naming the path, when a folder cannot hold a model; `fingerprint` hashes
the files that determine the model's outputs so cached features follow the weights, not the folder name.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Files whose bytes define the computation (weights, configs, tokenizer vocabularies).
_FINGERPRINT_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model")


def offline_transformers():
    """Import transformers with the hub switched off, so nothing is fetched even by accident."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    return transformers


def require_model_dir(path: str | os.PathLike, what: str) -> Path:
    """The path as a Path, or FileNotFoundError explaining what sercore needs there."""
    folder = Path(path).expanduser()
    if not folder.is_dir() or not (folder / "config.json").is_file():
        problem = "does not exist" if not folder.exists() else (
            "is not a directory" if not folder.is_dir() else "has no config.json")
        raise FileNotFoundError(
            f"{what}: {folder} {problem}. sercore loads models only from a local directory holding "
            f"config.json and the weights (as written by save_pretrained, or a downloaded model snapshot); "
            f"it never downloads. Copy the model there first.")
    return folder.resolve()


def fingerprint(folder: Path) -> str:
    """sha256 over the names and bytes of the model folder's config, weight and vocabulary files."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _FINGERPRINT_SUFFIXES):
        digest.update(str(file.relative_to(folder)).encode("utf-8") + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(transformers, model_dir, device):
    """AutoModel from a local folder, in eval mode on `device`, frozen (requires_grad False on every weight:
    sercore never trains a loaded model), never fetched (local_files_only)."""
    model = transformers.AutoModel.from_pretrained(model_dir, local_files_only=True).eval().to(device)
    return model.requires_grad_(False)
