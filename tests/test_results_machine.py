"""results.machine: the device a results page names, read from each run's provenance.device."""

import json
import os

import torch

from sercore import results
from sercore.provenance import provenance

DEMO = "generated demonstration corpus"


def run(device: dict, world_size: int = 1, corpus_kind: str = DEMO) -> dict:
    return {"corpus": "data/demo-smoke", "corpus_kind": corpus_kind, "world_size": world_size,
            "provenance": {"seed": 0, "device": device}}


CPU = {"platform": "Linux", "cpu_count": 2, "torch_device": "cpu", "torch_threads": 1}
GPU = {"platform": "Linux", "cpu_count": 16, "torch_device": "cuda:0", "torch_threads": 16,
       "cuda_device": "NVIDIA H200", "cuda_version": "12.8"}


def test_the_statement_names_corpus_and_machine():
    statement = results.corpus_statement([run(CPU), run(CPU)])
    assert statement == ("Computed on the generated demonstration corpus (data/demo-smoke): a working demonstration "
                         "of the pipeline, not the papers' claims. Trained on CPU (2 cores, 1 torch thread).")
    licensed = results.corpus_statement([run(GPU, corpus_kind="user corpus")])
    assert licensed == "Computed on user corpus (data/demo-smoke). Trained on NVIDIA H200."


def test_threads_processes_and_several_devices():
    assert results.machine([run({**CPU, "torch_threads": 4})]) == "CPU (2 cores, 4 torch threads)"
    assert results.machine([run(GPU, world_size=2)]) == "2 x NVIDIA H200"
    assert results.machine([run(GPU), run(CPU)]) == "CPU (2 cores, 1 torch thread) + NVIDIA H200"
    assert results.machine([run({"torch_device": "mps"})]) == "mps"


def test_a_visible_gpu_is_not_the_device_a_run_used():
    # provenance without torch_device (written before it was recorded) names any visible GPU, even for a
    # CPU run: that GPU is not claimed
    assert results.machine([run({"cpu_count": 2, "cuda_device": "NVIDIA H200"})]) == "an unrecorded device"
    assert results.machine([{"provenance": {"seed": 0}}]) == "an unrecorded device"
    assert results.machine([]) == "an unrecorded device"


def test_what_provenance_records_is_what_machine_reads():
    recorded = provenance(seed=0, device="cpu")["device"]
    threads = torch.get_num_threads()
    assert results.machine([run(recorded)]) == (f"CPU ({os.cpu_count()} cores, {threads} torch "
                                                f"thread{'' if threads == 1 else 's'})")


def test_the_summary_table_has_a_machine_column(tmp_path):
    out = tmp_path / "accuracy" / "softmax-seed0"
    out.mkdir(parents=True)
    metrics = {**run(CPU), "finished": True, "profile": "smoke",
               "splits": {"Test1": {"macro_f1": {"value": 0.4, "ci95": [0.3, 0.5]}}}}
    (out / "metrics.json").write_text(json.dumps(metrics))
    table = results.headline_table(tmp_path)
    assert table.set_index("page").loc["accuracy", "machine"] == "CPU (2 cores, 1 torch thread)"
