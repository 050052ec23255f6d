"""Where the book's training time goes: per page and run kind, measured seconds per step, estimated hours.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/book_cost.py [--profile default] [--steps 5]
        [--corpus data/demo-default] [--pages accuracy area]

Each page's grid is the one its notebook trains: the sweep values come from the notebook's parameters cell
and the profile (results.profile_seeds, results.page_sweep, results.direction_variants), and the variants are
built as the notebook's cells build them (GRIDS below mirrors those cells). Every distinct run kind (study,
overrides, corpus) is one real sercore.train.train_run with the profile's settings except max_steps = 1 + steps
(a temporary out_dir, retrain): the first step is warm-up, the next `steps` are timed by a Trainer callback
with one torch thread. The run's own metrics.json timing gives one dev check, the final evaluation and the
bootstrap; the bootstrap does not depend on the model, so it is measured with the profile's n_boot on the
first kind of each (study, corpus) and the other kinds run with n_boot=0.

Estimated s per run = steps x s/step + dev checks x s/check + evaluation + bootstrap, where steps and dev
checks are the real run's (its epochs x steps per epoch, capped by max_steps; one check every eval_every
steps and one at the end). Feature extraction is left out (cached after a page's first run), except VTLP
copies, drawn anew per run: their measured extraction time is added when the kind has copies (measured
only if the cache does not hold them yet, so run this on a fresh cache to see it). Page hours at 2 workers
are the runs packed greedily onto 2 processes (run_grid runs the first alone); two processes on a 2-core
machine slow each other, so that column is a floor.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from sercore import results
from sercore.profiles import section
from sercore.train import train_run
from sercore.train.settings import resolve

ROOT = Path(__file__).resolve().parents[1]


def notebook_parameters(page: str) -> dict:
    """The literal assignments of notebooks/<page>.ipynb's parameters cell (what papermill overrides)."""
    cells = json.loads((ROOT / "notebooks" / f"{page}.ipynb").read_text(encoding="utf-8"))["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    out = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


# Each page's grids as its notebook's cells build them: (study, corpus role, variants, seeds).
def _accuracy(p, profile):
    seeds = results.profile_seeds(profile, "fusion")
    variants = {name: {"mechanism": name} for name in p["mechanisms"]}
    if p["compare_directions"]:
        variants.update(results.direction_variants(p["mechanisms"])[0])
    return [("fusion", "standard", variants, seeds)]


def _area(p, profile):
    seeds = results.profile_seeds(profile, "area-cnn")
    sizes = {f"{n}x{n}": {"model.area_options": {"max_height": n, "max_width": n}} for n in p["area_sizes"]}
    vtlp = {"3x3" if k == 0 else f"3x3, VTLP k={k}":
            {"model.area_options": {"max_height": 3, "max_width": 3}, **({"vtlp_copies": k} if k else {})}
            for k in p["vtlp_copies"]}
    return [("area-cnn", "standard", {**sizes, **vtlp}, seeds)]  # "3x3" is one run, read back by the second grid


def _multitask(p, profile):
    variants = {f"lambda {w}": {"model.gender_weight": w} for w in p["gender_weights"]}
    return [("multitask", "standard", variants, results.profile_seeds(profile, "multitask"))]


def _dimensional(p, profile):
    return [("dimensional", "standard", {"masked mean": {}}, results.profile_seeds(profile, "dimensional"))]


def _keysparse(p, profile):
    sweep = results.page_sweep(profile, "keysparse")
    seeds = results.profile_seeds(profile, "ks-transformer")
    variants = {f"keep {rate}": {"model.keep_rate": rate} for rate in sweep["keep_rates"]}
    fusion = {m: {"mechanism": m} for m in sweep["fusion_mechanisms"]}
    return [("ks-transformer", "localized", variants, seeds), ("ks-transformer", "standard", variants, seeds),
            ("fusion", "localized", fusion, results.profile_seeds(profile, "fusion"))]


GRIDS = {"accuracy": _accuracy, "area": _area, "multitask": _multitask, "dimensional": _dimensional,
         "keysparse": _keysparse}


def real_budget(study: str, profile: str, overrides: dict, steps_per_epoch: int) -> tuple[int, int, dict]:
    """(optimizer steps, dev checks, settings) of the real run, from the profile's resolved settings."""
    train = {k: v for k, v in overrides.items() if "." not in k and k != "mechanism"}
    settings = resolve(profile, study, train)
    steps = settings.epochs * steps_per_epoch
    steps = steps if settings.max_steps is None else min(steps, settings.max_steps)
    checks = steps // settings.eval_every + (1 if steps % settings.eval_every else 0)
    return steps, checks, settings


def time_kind(study, corpus, profile, overrides, steps, n_boot=None) -> dict:
    """One short real run: seconds per timed step, one dev check, the evaluation, the bootstrap, features."""
    marks = []

    def mark(step, loss):
        marks.append(time.perf_counter())

    extra = {} if n_boot is None else {"n_boot": n_boot}
    with tempfile.TemporaryDirectory(prefix="book-cost-") as out_dir:
        run = train_run(study, corpus, out_dir, profile=profile, seed=0, retrain=True, callbacks=[mark],
                        **{**overrides, "max_steps": 1 + steps, "progress": False, **extra})
    timing = run["timing_s"]
    return {"s_step": (marks[-1] - marks[0]) / (len(marks) - 1), "dev_check": timing["dev_checks"],
            "evaluation": timing["evaluation"], "bootstrap": timing["bootstrap"], "features": timing["features"],
            "steps_per_epoch": run["training"]["steps_per_epoch"]}


def pack(durations, workers: int) -> float:
    """Wall seconds of run_grid with `workers` processes: the first run alone, the rest greedily."""
    if workers == 1 or len(durations) < 2:
        return sum(durations)
    lanes = [0.0] * min(workers, len(durations) - 1)
    for d in durations[1:]:
        lanes[lanes.index(min(lanes))] += d
    return durations[0] + max(lanes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--corpus", default="data/demo-default", help="standard corpus; localized: <corpus>-localized")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run kind (after one warm-up step)")
    parser.add_argument("--pages", nargs="*", default=list(GRIDS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    corpora = {"standard": args.corpus, "localized": f"{args.corpus}-localized"}
    n_boot = section(args.profile, "train").get("n_boot", 1000)
    rows, bootstrap = [], {}
    for page in args.pages:
        params = notebook_parameters(page)
        page_runs = []
        for study, role, variants, seeds in GRIDS[page](params, args.profile):
            corpus = corpora[role]
            if not Path(corpus).is_dir():
                print(f"{page}: {corpus} absent (python -m sercore generate --variant {role} ...): skipped")
                continue
            for name, overrides in variants.items():
                first = (study, corpus) not in bootstrap
                started = time.perf_counter()
                t = time_kind(study, corpus, args.profile, overrides, args.steps, None if first else 0)
                if first:
                    bootstrap[(study, corpus)] = t["bootstrap"]
                steps, checks, settings = real_budget(study, args.profile, overrides, t["steps_per_epoch"])
                vtlp = t["features"] if settings.vtlp_copies else 0.0
                per_run = steps * t["s_step"] + checks * t["dev_check"] + t["evaluation"] + \
                    bootstrap[(study, corpus)] + vtlp
                page_runs += [per_run] * len(seeds)
                rows.append((page, f"{study} {name}" + ("" if role == "standard" else f" ({role})"), steps,
                             t["s_step"], checks * t["dev_check"], t["evaluation"] + bootstrap[(study, corpus)],
                             per_run, len(seeds)))
                print(f"  timed {page} / {name} ({role}) in {time.perf_counter() - started:.0f} s: "
                      f"{t['s_step']:.3f} s/step, eval+boot {t['evaluation'] + bootstrap[(study, corpus)]:.1f} s, "
                      f"{per_run:.0f} s/run", flush=True)
        rows.append((page, "PAGE", None, None, None, None, None, len(page_runs), pack(page_runs, 1) / 3600,
                     pack(page_runs, 2) / 3600))
    print(f"\nprofile {args.profile}, corpus {args.corpus}, {args.steps} timed steps per kind, 1 torch thread")
    print(f"{'page':<12}{'run kind':<42}{'steps':>6}{'s/step':>8}{'dev s':>8}{'eval+boot s':>12}{'s/run':>8}"
          f"{'runs':>6}{'h @1':>7}{'h @2':>7}")
    total1 = total2 = 0.0
    for row in rows:
        if row[1] == "PAGE":
            total1, total2 = total1 + row[8], total2 + row[9]
            print(f"{row[0]:<12}{'= page':<42}{'':>6}{'':>8}{'':>8}{'':>12}{'':>8}{row[7]:>6}{row[8]:>7.2f}"
                  f"{row[9]:>7.2f}")
        else:
            page, kind, steps, s_step, dev, rest, per_run, runs = row
            print(f"{page:<12}{kind:<42}{steps:>6}{s_step:>8.3f}{dev:>8.1f}{rest:>12.1f}{per_run:>8.0f}{runs:>6}")
    print(f"{'all':<12}{'= book (these pages)':<42}{'':>58}{total1:>7.2f}{total2:>7.2f}")
    if not math.isfinite(total1):
        raise SystemExit("a page's estimate is not finite")


if __name__ == "__main__":
    main()
