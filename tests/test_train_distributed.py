"""Two processes under torchrun (gloo on the CPU) write the same results files as one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from test_train_toy import make_toy_data, toy_settings  # noqa: E402

from sercore.provenance import seed_everything  # noqa: E402
from sercore.train.run import fit_and_evaluate  # noqa: E402

WORKER = """
import sys
from sercore.provenance import seed_everything
from sercore.train import distributed
from sercore.train.run import fit_and_evaluate
from test_train_toy import ToyModel, make_toy_data, toy_settings

world, device = distributed.start("cpu")
assert world.size == 2 and device.type == "cpu"
seed_everything(0 + world.rank)
out = fit_and_evaluate(ToyModel(), make_toy_data(), toy_settings(), task="classification", segmented=False,
                       out_dir=sys.argv[1], seed=0, parameters={"p": 1}, fingerprint="f",
                       info={"study": "toy", "corpus": "in memory", "corpus_kind": "user corpus"},
                       world=world, device=device)
assert out["world_size"] == 2  # every rank returns the metrics
distributed.stop(world)
"""


def keys(tree, prefix=""):
    """Every key path of a nested dict (lists of dicts excluded: the history's length is checked apart)."""
    out = set()
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.add(prefix + k)
            if k not in ("history", "parameters", "versions", "device"):
                out |= keys(v, prefix + k + ".")
    return out


def test_two_process_torchrun_writes_the_same_results(tmp_path):
    from test_train_toy import ToyModel

    seed_everything(0)
    single = fit_and_evaluate(ToyModel(), make_toy_data(), toy_settings(), task="classification", segmented=False,
                              out_dir=tmp_path / "single", seed=0, parameters={"p": 1}, fingerprint="f",
                              info={"study": "toy", "corpus": "in memory", "corpus_kind": "user corpus"})
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path / "ddp")], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert keys(ddp) == keys(single)
    # same data order and global batch: the same steps and dev checks, and the toy problem is learnt
    assert ddp["training"]["steps"] == single["training"]["steps"]
    assert [h["step"] for h in ddp["training"]["history"]] == [h["step"] for h in single["training"]["history"]]
    assert ddp["splits"]["Test1"]["macro_f1"]["value"] > 0.9
    predictions = pd.read_csv(tmp_path / "ddp" / "predictions.csv")
    assert len(predictions) == 48 and predictions.utt_id.is_unique
    assert list(predictions.columns) == list(pd.read_csv(tmp_path / "single" / "predictions.csv").columns)
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
