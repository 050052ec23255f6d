"""CPU training-step time of the default-profile Key-Sparse Transformer: key-sparse mode "reference" (the
published materialized computation) against "auto" (which on the CPU trains with mode "dense",
sercore.attention.keysparse_dense), at keep_rate 0.3 and 1.0 with the model's attention-weight dropout on.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/ks_step.py [--repeats 7] [--keep-rates 0.3 1.0]

Not a test: it prints a table. One step = forward + backward + AdamW on a random batch of the shape the
default key-sparse page trains on (16 utterances of 460 log-Mel frames [16, 460, 80], half of them padded
after 300 frames, and [16, 20, 384] text states with 12 real tokens). Both models hold the same weights;
each round times one step of each in turn, in process CPU time (on a shared machine it counts this process's
work only); the figure is the median of `repeats` rounds after one warm-up round, and the ratio column
(reference / auto) is what to read.

Measured on the project's shared 2-core machine (torch 2.13 CPU, 1 thread, defaults above, one run):
keep_rate 0.3: 2.23 s -> 0.96 s a step (2.32x); keep_rate 1.0: 2.42 s -> 0.95 s (2.54x). What remains in a
dense step (torch.profiler): matrix products (bmm 23 %, the linear layers' mm/addmm 10 %), the dropout draw
(uniform_ 16 %, then lt and where 11 %), masked_fill_ 8 %, softmax forward and backward 6 %, the layers' own
activation dropout (bernoulli_, 5 %).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from sercore.attention.keysparse import KeySparseAttention
from sercore.models import build_model
from sercore.train.run import model_section

BATCH, FRAMES, TOKENS = 16, 460, 20


def random_batch(model, generator) -> dict:
    speech_mask = torch.ones(BATCH, FRAMES, dtype=torch.bool)
    speech_mask[::2, 300:] = False
    text_mask = torch.ones(BATCH, TOKENS, dtype=torch.bool)
    text_mask[:, 12:] = False
    return {"speech": torch.randn(BATCH, FRAMES, model.speech_dim, generator=generator), "speech_mask": speech_mask,
            "text": torch.randn(BATCH, TOKENS, model.text_dim, generator=generator), "text_mask": text_mask,
            "label": torch.randint(0, 4, (BATCH,), generator=generator)}


def with_mode(model, mode: str):
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, KeySparseAttention):
            m.mode = mode
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)


def step_seconds(model, optimizer, batch) -> float:
    t0 = time.process_time()
    optimizer.zero_grad()
    model.loss(batch, model(batch)).backward()
    optimizer.step()
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--keep-rates", type=float, nargs="+", default=[0.3, 1.0])
    args = parser.parse_args()
    options = model_section("default", "ks-transformer")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); model {options}")
    print(f"{'keep_rate':>9} {'dropout':>7} {'reference s':>11} {'auto s':>7} {'ratio':>6}  (auto runs)")
    for keep_rate in args.keep_rates:
        torch.manual_seed(0)
        model = build_model("ks-transformer", **options, keep_rate=keep_rate).train()
        batch = random_batch(model, torch.Generator().manual_seed(1))
        runs = {mode: with_mode(model, mode) for mode in ("reference", "auto")}
        times = {mode: [] for mode in runs}
        for round_ in range(args.repeats + 1):
            for mode, (m, optimizer) in runs.items():
                seconds = step_seconds(m, optimizer, batch)
                if round_:  # round 0 warms up
                    times[mode].append(seconds)
        ref, auto = (statistics.median(times[mode]) for mode in ("reference", "auto"))
        layer = next(m for m in runs["auto"][0].modules() if isinstance(m, KeySparseAttention))
        with torch.enable_grad():
            path = layer.path(batch["speech"])
        print(f"{keep_rate:>9} {layer.dropout:>7} {ref:>11.3f} {auto:>7.3f} {ref / auto:>6.2f}  ({path})")


if __name__ == "__main__":
    main()
