"""Each list of names lives in one place: the mechanisms in sercore.attention, the studies in sercore.studies.

The command line's choices are read from the parsers it really builds, and must equal the library's lists.
The seeds a profile trains live in one place too: its results section (sercore.results.profile_seeds)."""

import subprocess
import sys
from pathlib import Path

import pytest

from sercore import attention, bench, results, studies
from sercore.cli import build_parser
from sercore.profiles import PROFILES, load_profile, section

ROOT = Path(__file__).resolve().parents[1]


def command(name):
    """The argparse parser of `python -m sercore <name>`."""
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return subparsers.choices[name]


def choices(parser, option):
    return tuple(next(a for a in parser._actions if option in a.option_strings).choices)


def test_train_cli_offers_exactly_the_library_studies_and_mechanisms():
    train = command("train")
    assert choices(train, "--study") == studies.STUDIES
    assert choices(train, "--mechanism") == attention.NAMES


def test_bench_cli_offers_exactly_the_sequence_mixers():
    assert choices(command("bench"), "--mechanisms") == attention.SEQUENCE_NAMES
    assert bench.SEQUENCE_MECHANISMS == attention.SEQUENCE_NAMES


def test_the_library_uses_the_one_list_of_studies():
    from sercore import models
    from sercore.train import run

    assert run.STUDIES is studies.STUDIES
    assert tuple(models.STUDIES) == studies.STUDIES, "every study has a model, in the same order"


def test_derived_mechanism_lists_are_subsets_of_the_registry():
    assert attention.SEQUENCE_NAMES == tuple(n for n in attention.NAMES if n != "area")
    assert results.PAPER_MECHANISMS is attention.PAPER_NAMES
    assert set(attention.PAPER_NAMES) <= set(attention.SEQUENCE_NAMES)


@pytest.mark.parametrize("name", attention.NAMES)
def test_every_registry_name_has_a_modes_tuple_with_the_three_common_values(name):
    values = attention.modes(name)
    assert isinstance(values, tuple)
    assert {"auto", "reference", "fused"} <= set(values)


def test_the_name_lists_import_without_torch():
    """The CLI reads them to build its choices: importing them must not load torch (or anything heavy)."""
    code = ("import sys; import sercore.attention as a, sercore.studies as s; a.NAMES, a.SEQUENCE_NAMES, s.STUDIES; "
            "heavy = [m for m in ('torch', 'numpy', 'pandas') if m in sys.modules]; print(heavy); "
            "sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_seeds_live_only_in_the_results_section(profile):
    def seed_keys(value, where):
        found = []
        for key, item in (value.items() if isinstance(value, dict) else []):
            found += [f"{where}.{key}"] if "seed" in str(key) else []
            found += seed_keys(item, f"{where}.{key}")
        return found

    cfg = load_profile(profile)
    assert seed_keys({k: v for k, v in cfg.items() if k != "results"}, profile) == []
    for study in studies.STUDIES:  # every by_study key is a study (profile_seeds refuses others)
        assert results.profile_seeds(profile, study)


def test_the_keysparse_page_trains_the_seeds_it_trained_before_they_moved():
    """smoke: three seeds for the key-sparse curve, one for its fusion heatmap runs; default: three for both."""
    assert results.profile_seeds("smoke", "ks-transformer") == [0, 1, 2]
    assert results.profile_seeds("smoke", "fusion") == [0]
    assert results.profile_seeds("default", "ks-transformer") == results.profile_seeds("default", "fusion") == [0, 1, 2]
    for profile in ("smoke", "default"):
        assert set(section(profile, "studies")["keysparse"]) == {"keep_rates", "fusion_mechanisms"}


@pytest.mark.parametrize("profile", PROFILES)
def test_the_multitask_and_dimensional_pages_train_the_seeds_they_hard_coded_before(profile):
    """Their pages wrote seeds = [0, 1, 2] until the profile gave them (smoke: results.by_study)."""
    assert results.profile_seeds(profile, "multitask") == [0, 1, 2]
    assert results.profile_seeds(profile, "dimensional") == [0, 1, 2]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_resolves_the_keysparse_pages_sweep(profile):
    """notebooks/keysparse.ipynb reads results.page_sweep(profile, "keysparse") under every profile."""
    sweep = results.page_sweep(profile, "keysparse")
    assert set(sweep) == set(results.PAGE_SWEEPS["keysparse"])
    rates = sweep["keep_rates"]
    assert rates == sorted(set(rates)) and all(0 < r <= 1 for r in rates)
    linear = set(sweep["fusion_mechanisms"]) & (set(attention.PAPER_NAMES) - {"softmax"})
    assert "softmax" in sweep["fusion_mechanisms"] and len(linear) >= 2  # the heatmaps: softmax and two linear


def test_the_paper_profile_sweeps_the_key_sparse_papers_keep_rates():
    assert results.page_sweep("paper", "keysparse")["keep_rates"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


@pytest.mark.parametrize("studies_text, problem", [
    ("", "no studies.keysparse section"),
    ("studies:\n  keysparse:\n    keep_rates: [0.5]\n", "lacks (or has empty) fusion_mechanisms"),
    ("studies:\n  keysparse:\n    keep_rates: [0.5]\n    fusion_mechanisms: [softmax]\n    seeds: [0]\n",
     "has seeds, which the page does not read"),
    ("studies:\n  keysparse:\n    keep_rates: [0.0, 0.5]\n    fusion_mechanisms: [softmax]\n", "numbers in (0, 1]"),
    ("studies:\n  keysparse:\n    keep_rates: [0.5]\n    fusion_mechanisms: [softmaxx]\n", "['softmaxx']"),
], ids=["no-section", "no-mechanisms", "unknown-key", "keep-rate-0", "unknown-mechanism"])
def test_a_bad_keysparse_sweep_fails_in_one_line_naming_the_profile(tmp_path, studies_text, problem):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nresults:\n  seeds: [0]\n" + studies_text)
    with pytest.raises(ValueError) as error:
        results.page_sweep(str(path), "keysparse")
    message = str(error.value)
    assert problem in message and str(path) in message and "\n" not in message
