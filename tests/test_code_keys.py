"""Each training run is keyed on the sercore source it runs (issue 12, "Caching that is never stale").

The package is copied into tmp_path and sercore.source_key.PACKAGE pointed at the copy, so a test edits a
file of the copy and asserts which runs' code keys change: an edit that a run executes retrains it, one it
does not execute does not."""

import json
import shutil
import sys
from pathlib import Path

import pytest

import sercore
from sercore import source_key
from sercore.train import run as run_module

sys.path.insert(0, str(Path(__file__).parent))
from test_train_hostile import FAST, write_corpus  # noqa: E402

# (study, mechanism) of the runs whose keys the edits are checked against
RUNS = {"fusion-kda": ("fusion", "kda"), "fusion-softmax": ("fusion", "softmax"),
        "ks": ("ks-transformer", None), "area": ("area-cnn", None), "dimensional": ("dimensional", None)}


@pytest.fixture
def package(tmp_path, monkeypatch):
    copy = tmp_path / "src" / "sercore"
    shutil.copytree(Path(sercore.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(source_key, "PACKAGE", copy)
    return copy


@pytest.fixture(scope="module")
def run_entries() -> dict[str, tuple[str, ...]]:
    """Each run's run_modules (module names; the copy's files are what the key reads), built once."""
    from sercore.profiles import section

    return {name: run_module.model_spec(study, mechanism, run_module.model_section("smoke", study),
                                        section("smoke", "features")).modules
            for name, (study, mechanism) in RUNS.items()}


@pytest.fixture
def keys(run_entries):
    return lambda: {name: run_module.code_key(modules) for name, modules in run_entries.items()}


def _touch(package: Path, relative: str) -> None:
    path = package / relative
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")


def _changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_the_run_modules_name_the_model_and_its_mechanism(package):
    spec = run_module.model_spec("fusion", "kda", run_module.model_section("smoke", "fusion"), {})
    assert {"sercore.models.fusion", "sercore.attention.kda", "sercore.features.encoders"} <= set(spec.modules)
    assert "sercore.attention.softmax" not in spec.modules


@pytest.mark.parametrize("relative, retrained", [
    ("attention/kda.py", {"fusion-kda"}),
    ("attention/softmax.py", {"fusion-softmax"}),
    ("attention/keysparse.py", {"ks"}),
    ("models/ks_transformer.py", {"ks"}),
    ("models/fusion.py", {"fusion-kda", "fusion-softmax"}),
    ("train/trainer.py", set(RUNS)),
    ("data/corpus.py", set(RUNS)),
    ("metrics.py", set(RUNS)),
    ("features/logmel.py", set(RUNS)),
], ids=lambda value: value if isinstance(value, str) else "")
def test_an_edit_retrains_the_runs_that_execute_it(package, keys, relative, retrained):
    before = keys()
    _touch(package, relative)
    assert _changed(before, keys()) == retrained


@pytest.mark.parametrize("relative", ["plots.py", "book.py", "cli.py", "bench.py", "predict.py",
                                      "inspection.py", "fidelity.py", "results.py", "train/folds.py",
                                      "train/cli.py", "data/synth.py", "profiles/smoke.yaml"])
def test_an_edit_no_run_executes_retrains_nothing(package, keys, relative):
    # data/synth.py writes corpora (a changed corpus changes the data key); profiles reach a run as parameters
    before = keys()
    _touch(package, relative)
    assert _changed(before, keys()) == set()


def test_a_finished_run_is_reused_only_while_its_source_is_unchanged(package, tmp_path):
    corpus = write_corpus(tmp_path / "corpus")

    def train(mechanism):
        out = tmp_path / "runs" / mechanism
        metrics = run_module.train_run("fusion", corpus, out, profile="smoke", mechanism=mechanism, seed=0,
                                       **{**FAST, "cache_dir": str(tmp_path / "cache")})
        return metrics, (out / "metrics.json").stat().st_mtime_ns

    (kda, kda_written), (softmax, softmax_written) = train("kda"), train("softmax")
    _touch(package, "plots.py")
    assert train("kda") == (kda, kda_written) and train("softmax") == (softmax, softmax_written)
    _touch(package, "attention/kda.py")
    with pytest.warns(UserWarning, match="not resumed"):  # the kda checkpoint's fingerprint is stale too
        retrained, written = train("kda")
    assert written != kda_written and retrained["provenance"]["code_key"] != kda["provenance"]["code_key"]
    assert train("softmax") == (softmax, softmax_written)
    assert json.loads((tmp_path / "runs" / "kda" / "metrics.json").read_text())["finished"]


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_the_closure_follows_reexports_lazy_imports_and_registries(tmp_path):
    """On a hand-built package: a re-exported name pulls in only its own submodule, a lazy import inside a
    function counts, a name an __init__ defines does not pull in its submodules unless dispatch=True (which
    also follows a module named in a string), and a name served by __getattr__ follows everything."""
    root = _write(tmp_path / "sercore", {
        "__init__.py": "",
        "entry.py": "from sercore.pkg import used\n\ndef later():\n    from sercore import lazy\n",
        "lazy.py": "",
        "pkg/__init__.py": "from sercore.pkg.a import used\nfrom sercore.pkg.b import other\n",
        "pkg/a.py": "used = 1\n", "pkg/b.py": "other = 2\n",
        "reg/__init__.py": ("from sercore.reg.base import Base\nTABLE = {'x': 'sercore.reg.x'}\n\n"
                            "def build(name):\n    return TABLE[name]\n\ndef __getattr__(name):\n"
                            "    from sercore.reg import hidden\n    return hidden\n"),
        "reg/base.py": "", "reg/x.py": "from sercore.reg.base import Base\n", "reg/hidden.py": "",
        "user.py": "from sercore.reg import build\n", "user2.py": "from sercore.reg import Served\n",
    })
    assert source_key.module_closure(["sercore.entry"], root) == {
        "sercore", "sercore.entry", "sercore.lazy", "sercore.pkg", "sercore.pkg.a"}
    assert source_key.module_closure(["sercore.user"], root) == {"sercore", "sercore.user", "sercore.reg"}
    assert source_key.module_closure(["sercore.user"], root, dispatch=True) == {
        "sercore", "sercore.user", "sercore.reg", "sercore.reg.base", "sercore.reg.x", "sercore.reg.hidden"}
    assert "sercore.reg.hidden" in source_key.module_closure(["sercore.user2"], root)
    with pytest.raises(ValueError, match="sercore.nothing: no such module"):
        source_key.module_closure(["sercore.nothing"], root)


def test_a_file_that_does_not_parse_is_named(tmp_path):
    root = _write(tmp_path / "sercore", {"__init__.py": "", "entry.py": "import sercore.bad\n",
                                         "bad.py": "def broken(:\n"})
    with pytest.raises(SyntaxError, match=r"bad\.py:1: cannot parse it"):
        source_key.module_closure(["sercore.entry"], root)
