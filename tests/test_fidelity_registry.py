"""The registry of deviations holds: every entry's default is what the library and each profile really run."""

import pytest

from sercore import fidelity
from sercore.fidelity import DEVIATIONS, Deviation


@pytest.mark.parametrize("entry", DEVIATIONS, ids=[f"{e.study}:{e.setting}" for e in DEVIATIONS])
def test_every_entry_matches_where_its_default_lives(entry):
    assert fidelity.check(entry) == []


def fake(setting, default, profiles=None, study="fusion", note=""):
    return Deviation(study, setting, paper="p", code="c", default=default, profiles=profiles or {}, note=note)


@pytest.mark.parametrize("entry,problem", [
    (fake("model.fusion.heads", 5), "library default is 4"),
    (fake("model.fusion.no_such_option", 1), "no option 'no_such_option'"),
    (fake("train.lr", 3e-4), "library default is 0.0001"),
    (fake("train.by_study.ks-transformer.optimizer", "adam", study="ks-transformer"),
     "profile 'paper' runs 'sgd'"),
    (fake("features.logmel.n_mels", 64), "profile 'smoke' runs 80"),
    (fake("features.logmel.no_such_key", 1), "the paper profile does not set it"),
    (fake("bench.dim", 1024), "profile 'smoke' runs 64"),
    (fake("bench.dim", 1024, {"smoke": 64, "default": 256, "laptop": 1}), "unknown profile(s) ['laptop']"),
    (fake("code.sercore.bench:DEFAULT_TEXT_TOKENS", 16), "library default is 32"),
    (fake("code.sercore.bench:benchmark.repeats", 10), "library default is 20"),
    (fake("attention.softmax.mode", "naive"), "library default is 'auto'"),
    (fake("attention.softmax.no_such_option", 1), "has no option 'no_such_option'"),
    (fake("none", "always this"), "must say why in its note"),
    (fake("hyper.lr", 1), "unknown kind of setting 'hyper'"),
])
def test_the_checker_catches_an_entry_the_library_contradicts(entry, problem):
    problems = fidelity.check(entry)
    assert any(problem in line for line in problems), problems


def test_the_checker_accepts_true_entries_of_every_kind():
    true_entries = [  # what the built-in profiles run today (smoke: 2 heads; the CPU profiles use AdamW for KS)
        fake("model.fusion.heads", 4, {"smoke": 2}),
        fake("train.by_study.ks-transformer.optimizer", "sgd", {"smoke": "adamw", "default": "adamw"},
             study="ks-transformer"),
        fake("features.logmel_area.n_mels", 128),
        fake("bench.dim", 1024, {"smoke": 64, "default": 256}),
        fake("code.sercore.bench:benchmark.repeats", 20, {"smoke": 20, "default": 20}),
        fake("attention.softmax.mode", "auto"),
        fake("none", "always this", note="why"),
    ]
    for entry in true_entries:
        assert fidelity.check(entry) == [], entry


def test_value_in_reads_the_profile_then_the_library():
    assert fidelity.value_in(fake("bench.dim", 1024), "smoke") == 64
    assert fidelity.value_in(fake("bench.mask", "none"), "smoke") == "none", "unset in smoke: benchmark's default"
    assert fidelity.value_in(fake("train.optimizer", "adamw", study="area-cnn"), "paper") == "adam", \
        "a train key is what resolve() gives that study"


def test_the_page_lists_every_entry_under_its_study():
    text = fidelity.markdown()
    for entry in DEVIATIONS:
        assert f"## {entry.study}" in text
        assert f"`{entry.setting}`" in text
    frame = fidelity.table()
    assert len(frame) == len(DEVIATIONS)
    assert list(frame.columns[:6]) == ["study", "setting", "paper", "public code", "sercore default", "alternatives"]


def test_a_pipe_in_a_cell_does_not_break_the_table():
    text = fidelity.markdown([fake("none", "a | b", note="why")])
    row = [line for line in text.splitlines() if line.startswith("| `none`")][0]
    assert row.count(" | ") == 5 and "a \\| b" in row


def _markdown_cells(name):
    import json
    from pathlib import Path

    notebook = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / f"{name}.ipynb").read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "markdown"]


@pytest.mark.parametrize("page", ["efficiency", "accuracy", "keysparse", "area", "multitask", "dimensional"])
def test_every_results_page_links_the_fidelity_page_near_its_top(page):
    assert "{doc}`fidelity`" in _markdown_cells(page)[0]


def test_no_page_claims_the_dimensional_reproduction():
    import sercore.models.dimensional as dimensional

    cells = [cell for name in ("dimensional", "accuracy", "data") for cell in _markdown_cells(name)]
    for cell in cells:
        if ".638" in cell:
            assert "No profile reproduces" in cell or "probe" in cell, cell
        assert "reproduce that" not in cell
    assert "probe" in _markdown_cells("dimensional")[0]
    assert "a probe" in dimensional.__doc__ and "fine-tuned" in dimensional.__doc__
    assert any(entry.setting == "none" and "probe" in entry.default for entry in fidelity.DIMENSIONAL)
