"""The CPU speedups of the default book, each before and after in one process (1 torch thread):

  * area-cnn training step (the default profile's model, batch 16 segments 128 x 81): the system allocator as it
    starts, then sercore.train.allocator.keep_freed_memory (set once per process, so "before" is timed first);
  * fusion training step with softmax attention (the default profile's model options, batch 16 of 300 log-Mel
    frames + 24 text tokens), bidirectional and causal: mode "reference" against "sdpa" (what "auto" runs on
    the CPU), taking turns;
  * the bootstrap of one classification split (n_boot 1000, 8 classes): bootstrap_ci's loop of scikit-learn
    calls against bootstrap_ci_counts, for the three metrics classification_report gives.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/cpu_speedups.py [--steps 3] [--rounds 2]

Prints medians and the ratio before / after. Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from sercore import metrics as M
from sercore.models import build_model
from sercore.profiles import section
from sercore.train.allocator import keep_freed_memory


def step_seconds(model, batch, steps: int) -> float:
    """Median seconds of one forward + backward + AdamW step, after one warm-up step."""
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def step():
        loss = model.loss(batch, model(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def row(what, before, after, unit="s"):
    print(f"{what:<44}{before:>10.3f}{after:>10.3f} {unit:<3}{before / after:>7.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="turns of reference / sdpa per direction")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'':<44}{'before':>10}{'after':>10}{'':>11}")
    torch.manual_seed(0)
    area = build_model("area-cnn", n_mels=128, frames=81, n_classes=4)
    batch = {"speech": torch.randn(16, 1, 128, 81), "label": torch.randint(0, 4, (16,))}
    before = step_seconds(area, batch, args.steps)
    if not keep_freed_memory():
        print("area-cnn: no glibc mallopt here, allocator unchanged")
    row("area-cnn step: system malloc -> keep freed", before, step_seconds(area, batch, args.steps))

    options = dict(section("default", "model")["fusion"])
    g = torch.Generator().manual_seed(0)
    fusion_batch = {"speech": torch.randn(16, 300, 80, generator=g), "text": torch.randn(16, 24, 384, generator=g),
                    "text_mask": torch.arange(24)[None] < torch.randint(8, 25, (16, 1), generator=g),
                    "label": torch.randint(0, 8, (16,), generator=g)}
    for causal in (False, True):
        torch.manual_seed(0)
        model = build_model("fusion", **{**options, "mechanism": "softmax", "n_classes": 8,
                                         "mechanism_options": {"causal": causal}})
        times = {"reference": [], "sdpa": []}
        for _ in range(args.rounds):
            for mode in times:
                model.blocks[0].mixer.mode = mode
                times[mode].append(step_seconds(model, fusion_batch, args.steps))
        row(f"fusion softmax {'causal' if causal else 'bidir'} step: reference -> sdpa",
            statistics.median(times["reference"]), statistics.median(times["sdpa"]))

    rng = np.random.default_rng(0)
    for n in (300, 1000):
        y_true, y_pred = rng.integers(0, 8, n), rng.integers(0, 8, n)
        timed = []
        for interval in (M.bootstrap_ci, M.bootstrap_ci_counts):
            started = time.perf_counter()
            for fn in (M.macro_f1, M.accuracy, M.balanced_accuracy):
                interval(fn, y_true, y_pred, n_boot=1000, seed=0)
            timed.append(time.perf_counter() - started)
        row(f"bootstrap of a split, n={n}: loop -> counts", *timed)


if __name__ == "__main__":
    main()
