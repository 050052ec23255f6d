"""Profiles choose scale: `smoke` (CI, seconds), `default` (a 2-core laptop, minutes), `paper` (GPU, real
corpora, the papers' protocol as their public code ran it; sercore.fidelity lists every difference). They
are parameter files (sercore/profiles/<name>.yaml), not code branches: a section per part of the library,
read by that part.

Numbers: PyYAML follows YAML 1.1, which reads 3e-4, 1e-4 and 1.0e30 as strings (a float there needs a dot
and a signed exponent). Profiles and every `--set key=value` go through one loader, `Loader`, that also
reads those as floats (the YAML 1.2 rule); `parse_value` / `parse_assignments` are the --set helpers.
"""

from __future__ import annotations

from pathlib import Path

import re

import yaml

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
PROFILES = ("smoke", "default", "paper")


class Loader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads YAML 1.2 floats without a dot or exponent sign (3e-4, 1e5, 1.0e30)."""


# The YAML 1.2 core-schema float pattern, plus .inf / .nan as in YAML 1.1.
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_value(text: str):
    """One --set value parsed as YAML with `Loader`: 3 -> int, 3e-4 -> float, true -> bool, [1, 7] -> list,
    null -> None, anything else -> the string. Text YAML cannot read (e.g. "[1,") fails naming it."""
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0]
        raise ValueError(f"--set value {text!r} is not valid YAML ({problem}); quote it to pass a string") \
            from None


def parse_assignments(items) -> dict:
    """{key: value} from --set KEY=VALUE items (values by parse_value); a later key replaces an earlier one."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def profile_path(name_or_path: str | Path) -> Path:
    """The YAML file of a profile given by name (smoke, default, paper) or by path."""
    path = Path(name_or_path)
    return PROFILE_DIR / f"{name_or_path}.yaml" if not path.suffix else path


def load_profile(name_or_path: str | Path) -> dict:
    """A profile by name (smoke, default, paper) or by path to a YAML file of the same shape."""
    path = profile_path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"profile {name_or_path!r} not found: expected {path} "
                                f"(built-in profiles: {', '.join(PROFILES)})")
    with open(path, encoding="utf-8") as handle:
        profile = yaml.load(handle, Loader=Loader) or {}
    profile.setdefault("name", path.stem)
    return profile


def section(name_or_path: str | Path, key: str) -> dict:
    """One section of a profile (e.g. 'corpus', 'features', 'train'); empty when the profile has none."""
    return dict(load_profile(name_or_path).get(key) or {})
