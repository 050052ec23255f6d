"""Profiles choose scale: `smoke` (CI, seconds), `default` (a 2-core laptop, minutes), `paper` (GPU, real
corpora, the published settings). They are parameter files (sercore/profiles/<name>.yaml), not code
branches: a section per part of the library, read by that part.
"""

from __future__ import annotations

from pathlib import Path

import yaml

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
PROFILES = ("smoke", "default", "paper")


def load_profile(name_or_path: str | Path) -> dict:
    """A profile by name (smoke, default, paper) or by path to a YAML file of the same shape."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"profile {name_or_path!r} not found: expected {path} "
                                f"(built-in profiles: {', '.join(PROFILES)})")
    with open(path, encoding="utf-8") as handle:
        profile = yaml.safe_load(handle) or {}
    profile.setdefault("name", path.stem)
    return profile


def section(name_or_path: str | Path, key: str) -> dict:
    """One section of a profile (e.g. 'corpus', 'features', 'train'); empty when the profile has none."""
    return dict(load_profile(name_or_path).get(key) or {})
