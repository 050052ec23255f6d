"""run_grid(..., workers=N) trains independent runs in N one-thread processes and gives what one process
gives (issue 12, "Build time"): the same metrics and predictions, in the same order."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_train_hostile import FAST, write_corpus  # noqa: E402

from sercore import results  # noqa: E402

VARIANTS = {"softmax": {"mechanism": "softmax"}, "retnet": {"mechanism": "retnet"}}


def test_two_workers_give_the_metrics_of_one(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    common = {**FAST, "max_steps": 4, "eval_every": 2, "cache_dir": str(tmp_path / "cache")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each worker runs with: CPU sums depend on the thread count
    try:
        alone = results.run_grid("fusion", corpus, tmp_path / "alone", "smoke", VARIANTS, seeds=(0, 1),
                                 workers=1, **common)
    finally:
        torch.set_num_threads(threads)
    pooled = results.run_grid("fusion", corpus, tmp_path / "pooled", "smoke", VARIANTS, seeds=(0, 1),
                              workers=2, **common)
    assert [(r["variant"], r["provenance"]["seed"]) for r in pooled] == \
        [("softmax", 0), ("softmax", 1), ("retnet", 0), ("retnet", 1)]
    assert [r["variant"] for r in alone] == [r["variant"] for r in pooled]
    for one, two in zip(alone, pooled):
        assert two["provenance"]["device"]["torch_threads"] == 1
        assert one["splits"] == two["splits"] and one["training"]["history"] == two["training"]["history"]
        pd.testing.assert_frame_equal(pd.read_csv(Path(one["out_dir"]) / "predictions.csv"),
                                      pd.read_csv(Path(two["out_dir"]) / "predictions.csv"))
    # the variants did train different models (their probabilities differ; the tiny corpus's labels may not)
    probs = [pd.read_csv(Path(alone[i]["out_dir"]) / "predictions.csv").filter(like="prob_") for i in (0, 2)]
    assert not probs[0].equals(probs[1])


@pytest.mark.parametrize("value", [0, -1, "two", 1.5, True])
def test_a_worker_count_that_is_not_a_whole_number_is_refused(value, monkeypatch):
    with pytest.raises(ValueError, match="expected a whole number of processes"):
        results.grid_workers(value)
    monkeypatch.setenv(results.WORKERS_VARIABLE, str(value))
    with pytest.raises(ValueError, match=r"\$SERCORE_GRID_WORKERS"):
        results.grid_workers()


def test_the_worker_count_defaults_to_the_environment_then_one(monkeypatch):
    monkeypatch.delenv(results.WORKERS_VARIABLE, raising=False)
    assert results.grid_workers() == 1
    monkeypatch.setenv(results.WORKERS_VARIABLE, "3")
    assert results.grid_workers() == 3 and results.grid_workers(2) == 2
