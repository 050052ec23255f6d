"""Fit a model, selecting on the dev split; checkpoints that make an interrupted run end exactly as an
uninterrupted one.

The loop: optimizer step after optimizer step over EpochSampler batches; every `eval_every` steps (and at
the last step) a dev check: the selection metric (macro-F1 of the classes, or the mean CCC of arousal,
valence and dominance for regression), the best-dev weights kept in best.pt, the learning rate multiplied
by lr_factor after `patience` checks in a row without a gain ("plateau"), and a checkpoint last.pt.
schedule="cosine" anneals from lr to cosine_eta_min_ratio x lr over the run's steps (cosine_per="step"), or
over its epochs with one scheduler step at the end of each epoch (cosine_per="epoch", the Key-Sparse
Transformer code's CosineAnnealingLR(T_max=epochs, eta_min=lr / 1000), train.py).

A checkpoint holds everything that decides what happens next: model, optimizer and scheduler state, the
step (which fixes the sampler position: batches are a pure function of seed and step), the RNG states of
python, numpy and torch (CPU and CUDA) of every process (dropout), the best metric and the history. It is
written atomically (temp file + rename), so a run killed while writing leaves the previous checkpoint, and
stray temp files are never read.

A last.pt that cannot be resumed is moved aside and training starts over from step 0, with one warning
naming the file: one whose fingerprint (a hash of the run's parameters, data and code) differs from the
run's goes to last.pt.stale, one that torch cannot read (truncated, not a checkpoint) or that lacks a field
goes to last.pt.corrupt. Starting over, rather than from best.pt, because best.pt holds only weights: no
optimizer, scheduler or RNG state, so a run continued from it could not end as an uninterrupted one.

Class weights (inverse frequency, the "balanced" rule): w_c = n / (K * n_c), with n training items, n_c of
them in class c, and K the number of classes present; absent classes get 0. Items are utterances, or
segments for segment models. The weights go to model.loss(batch, outputs, class_weights=w).
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from sercore.metrics import ccc_mean, macro_f1
from sercore.progress import bar_disabled
from sercore.provenance import atomic_write
from sercore.train.datasets import EpochSampler, EvalItems
from sercore.train.distributed import World, gather, unwrap
from sercore.train.settings import TrainSettings

TASKS = ("classification", "regression")


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """w_c = n / (K * n_c) over the labels >= 0 (see the module docstring); 0 for classes with no items."""
    labels = np.asarray(labels)
    labels = labels[labels >= 0]
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Plateau:
    """Multiply the learning rate by `factor` once `patience` dev checks in a row brought no gain."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float, patience: int):
        self.optimizer, self.factor, self.patience, self.bad_checks = optimizer, factor, patience, 0

    def check(self, improved: bool) -> None:
        self.bad_checks = 0 if improved else self.bad_checks + 1
        if self.bad_checks >= self.patience:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.factor
            self.bad_checks = 0

    def state_dict(self) -> dict:
        return {"bad_checks": self.bad_checks}

    def load_state_dict(self, state: dict) -> None:
        self.bad_checks = state["bad_checks"]


def make_optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    raise ValueError(f"optimizer must be adamw, adam or sgd, got {settings.optimizer!r}")


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict(model: torch.nn.Module, items: EvalItems, device: torch.device, world: World = World(),
            amp: str | None = None) -> dict[str, np.ndarray]:
    """Per-utterance outputs over `items`: probs [N, C] (softmax of logits), gender_probs [N, 2], avd [N, 3],
    whichever the model returns; several segments of one utterance are averaged (mean of softmax).
    Batches are dealt round-robin to the processes and the results gathered on every one."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    chunks = []
    for b, batch in enumerate(items.batches()):
        if b % world.size != world.rank:
            continue
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            out = net(_to(batch, device))
        row = {}
        if "logits" in out:
            row["probs"] = torch.softmax(out["logits"].float(), dim=-1).cpu().numpy()
        if "gender_logits" in out:
            row["gender_probs"] = torch.softmax(out["gender_logits"].float(), dim=-1).cpu().numpy()
        if "avd" in out:
            row["avd"] = out["avd"].float().cpu().numpy()
        chunks.append((batch["utt_index"].numpy(), row))
    net.train(was_training)
    chunks = [c for part in gather(chunks, world) for c in part]
    n = len(items)
    counts = np.zeros(n)
    sums: dict[str, np.ndarray] = {}
    for index, row in chunks:
        np.add.at(counts, index, 1)
        for key, value in row.items():
            sums.setdefault(key, np.zeros((n,) + value.shape[1:]))
            np.add.at(sums[key], index, value)
    if n and counts.min() == 0:
        raise RuntimeError("predict: some utterances got no prediction (evaluation batches lost)")
    return {key: value / counts[:, None] for key, value in sums.items()}


def dev_metric(task: str, outputs: dict, items: EvalItems) -> float:
    rows = items.rows
    if task == "classification":
        return macro_f1(items.data.label[rows], outputs["probs"].argmax(axis=1))
    return ccc_mean(items.data.avd[rows], outputs["avd"])


class Trainer:
    """fit() trains `model` on `train_items` (CropItems / SegmentItems) and selects on `dev_items`.

    callbacks: functions called as callback(step, loss) after every optimizer step; one that raises stops
    the run there (the tests interrupt runs this way)."""

    def __init__(self, model: torch.nn.Module, train_items, dev_items: EvalItems, settings: TrainSettings, *,
                 task: str, checkpoint_dir: str | Path, seed: int, fingerprint: str = "", world: World = World(),
                 device: torch.device = torch.device("cpu"), resume: bool = True,
                 callbacks: Sequence[Callable[[int, float], None]] = ()):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.model, self.train_items, self.dev_items, self.settings = model, train_items, dev_items, settings
        self.task, self.seed, self.fingerprint, self.world, self.device = task, seed, fingerprint, world, device
        self.resume, self.callbacks = resume, list(callbacks)
        self.dir = Path(checkpoint_dir)
        self.last_path, self.best_path = self.dir / "last.pt", self.dir / "best.pt"
        self.sampler = EpochSampler(len(train_items), settings.batch_size, seed, world.size, world.rank)
        epochs_steps = settings.epochs * self.sampler.steps_per_epoch
        self.total_steps = epochs_steps if settings.max_steps is None else min(epochs_steps, settings.max_steps)
        if settings.eval_every <= 0:
            raise ValueError(f"eval_every must be positive, got {settings.eval_every}")
        self.optimizer = make_optimizer(unwrap(model), settings)
        self.plateau = Plateau(self.optimizer, settings.lr_factor, settings.patience)
        if settings.schedule == "cosine":
            # per step: T_max = the run's steps; per epoch (the KS code): T_max = its epochs, one step at each
            # epoch's end; the floor eta_min = cosine_eta_min_ratio x lr (the KS code: lr / 1000)
            periods = self.total_steps if settings.cosine_per == "step" else \
                math.ceil(self.total_steps / self.sampler.steps_per_epoch)
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=max(periods, 1), eta_min=settings.cosine_eta_min_ratio * settings.lr)
        elif settings.schedule in ("plateau", "constant"):
            self.scheduler = None
        else:
            raise ValueError(f"schedule must be plateau, cosine or constant, got {settings.schedule!r}")
        self.weights = None
        if task == "classification" and settings.class_weights:
            self.weights = class_weights(train_items.item_labels(), len(train_items.data.classes)).to(device)
        self.step, self.best_metric, self.best_step, self.history, self.elapsed = 0, -math.inf, None, [], 0.0
        self.dev_elapsed = 0.0  # seconds of the dev checks, part of elapsed (the build-time table splits them)

    # -- checkpoints -------------------------------------------------------------------------------------
    def _save(self) -> None:
        rng = gather(_rng_state(), self.world)
        if not self.world.is_main:
            return
        epoch, batch = self.sampler.position(self.step)
        state = {"format": 1, "fingerprint": self.fingerprint, "step": self.step, "total_steps": self.total_steps,
                 "model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                 "plateau": self.plateau.state_dict(), "best_metric": self.best_metric, "best_step": self.best_step,
                 "history": self.history, "rng": rng, "world_size": self.world.size, "elapsed_s": self.elapsed,
                 "dev_elapsed_s": self.dev_elapsed,
                 "sampler": {"seed": self.seed, "epoch": epoch, "batch_in_epoch": batch,
                             "steps_per_epoch": self.sampler.steps_per_epoch}}
        atomic_write(self.last_path, lambda tmp: torch.save(state, tmp))

    def _set_aside(self, suffix: str, why: str) -> None:
        """Move last.pt to last.pt<suffix> (rank 0) and warn once; training then starts over."""
        target = self.last_path.with_name(self.last_path.name + suffix)
        if self.world.distributed:  # every rank has read the file (and decided the same) before it moves
            torch.distributed.barrier()
        if self.world.is_main:
            self.last_path.replace(target)
            warnings.warn(f"{self.last_path}: {why}; not resumed, moved to {target.name}, training starts over "
                          "from step 0", stacklevel=3)
        if self.world.distributed:
            torch.distributed.barrier()

    def _load(self) -> bool:
        if not (self.resume and self.last_path.is_file()):
            return False
        try:
            # Our own file (pickled RNG states need weights_only=False): never point this at untrusted data.
            state = torch.load(self.last_path, map_location="cpu", weights_only=False)
            fingerprint = state["fingerprint"]
        except Exception as error:  # truncated or foreign file: torch raises many kinds
            self._set_aside(".corrupt", f"unreadable checkpoint ({type(error).__name__}: "
                                        f"{str(error).splitlines()[0] if str(error) else 'no detail'})")
            return False
        if fingerprint != self.fingerprint:
            self._set_aside(".stale", "checkpoint of a run with other parameters, data or code")
            return False
        fresh = copy.deepcopy({"model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                               "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                               "rng": _rng_state()})
        try:
            return self._restore(state)
        except (KeyError, TypeError, RuntimeError, ValueError) as error:  # a field missing or of the wrong shape
            unwrap(self.model).load_state_dict(fresh["model"])  # undo what was loaded before the failure
            self.optimizer.load_state_dict(fresh["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(fresh["scheduler"])
            _set_rng_state(fresh["rng"])
            self.plateau.bad_checks = 0
            self.step, self.best_metric, self.best_step, self.history, self.elapsed = 0, -math.inf, None, [], 0.0
            self.dev_elapsed = 0.0
            self._set_aside(".corrupt", f"checkpoint does not fit this run ({type(error).__name__}: "
                                        f"{str(error).splitlines()[0] if str(error) else 'no detail'})")
            return False

    def _restore(self, state: dict) -> bool:
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.plateau.load_state_dict(state["plateau"])
        self.step, self.best_metric, self.best_step = state["step"], state["best_metric"], state["best_step"]
        self.history, self.elapsed = state["history"], state["elapsed_s"]
        self.dev_elapsed = state.get("dev_elapsed_s", 0.0)  # checkpoints written before it was kept: unknown, 0
        rng = state["rng"]
        if len(rng) != self.world.size:
            warnings.warn(f"{self.last_path}: written by {len(rng)} process(es), resumed by {self.world.size}: the "
                          "data order is the same but dropout draws differ from an uninterrupted run")
        _set_rng_state(rng[self.world.rank % len(rng)])
        return True

    def _save_best(self) -> None:
        if self.world.is_main:
            state = {"model": unwrap(self.model).state_dict(), "step": self.step, "fingerprint": self.fingerprint}
            atomic_write(self.best_path, lambda tmp: torch.save(state, tmp))

    def load_best(self) -> None:
        """Put the best-dev weights into the model (kept as they are when no dev check ran)."""
        if self.best_step is None:
            return
        state = torch.load(self.best_path, map_location="cpu", weights_only=True)
        if state["step"] != self.best_step or state["fingerprint"] != self.fingerprint:
            raise RuntimeError(f"{self.best_path} holds step {state['step']} but the run's best dev step is "
                               f"{self.best_step}: the folder was changed by another run")
        unwrap(self.model).load_state_dict(state["model"])

    # -- training ----------------------------------------------------------------------------------------
    def _dev_check(self, train_loss: float) -> float:
        started = time.perf_counter()
        outputs = predict(self.model, self.dev_items, self.device, self.world, self.settings.amp)
        metric = dev_metric(self.task, outputs, self.dev_items)
        self.dev_elapsed += time.perf_counter() - started
        improved = self.best_step is None or metric > self.best_metric
        if improved:
            self.best_metric, self.best_step = metric, self.step
            self._save_best()
        if self.settings.schedule == "plateau":
            self.plateau.check(improved)
        epoch, _ = self.sampler.position(self.step - 1)
        self.history.append({"step": self.step, "epoch": epoch, "train_loss": train_loss, "dev": metric,
                             "lr": self.optimizer.param_groups[0]["lr"], "improved": improved})
        return metric

    def _train_step(self, batch: dict) -> float:
        settings = self.settings
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=settings.amp == "bf16"):
            outputs = self.model(batch)
            loss = unwrap(self.model).loss(batch, outputs, class_weights=self.weights)
        finite = torch.isfinite(loss.detach()).float()
        if self.world.distributed:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() < 1:
            epoch, b = self.sampler.position(self.step)
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at step {self.step + 1} (epoch {epoch}, batch {b} of "
                f"the epoch, both counted from 0); last checkpoint: {self.last_path if self.last_path.is_file() else 'none'}. "
                "Try a lower lr, grad_clip, or check the features for NaN/inf.")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), settings.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None and (settings.cosine_per == "step"
                                           or (self.step + 1) % self.sampler.steps_per_epoch == 0):
            self.scheduler.step()
        return float(loss.detach())

    def fit(self) -> dict:
        """Train to the end (resuming from last.pt when there is one), then load the best-dev weights."""
        if self.dir.exists() and self.world.is_main:
            for stale in self.dir.glob(".*.tmp"):  # left by a run killed mid-write; never read
                stale.unlink(missing_ok=True)
        resumed_at = self.step if self._load() else None
        started = time.perf_counter()
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step",
                   disable=bar_disabled(self.settings.progress and self.world.is_main), dynamic_ncols=True)
        loss_sum, loss_n = 0.0, 0
        last_dev = self.history[-1]["dev"] if self.history else None
        while self.step < self.total_steps:
            epoch, _ = self.sampler.position(self.step)
            batch = _to(self.train_items.batch(self.sampler.batch(self.step), epoch), self.device)
            loss = self._train_step(batch)
            self.step += 1
            loss_sum, loss_n = loss_sum + loss, loss_n + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}", dev="-" if last_dev is None else f"{last_dev:.4f}")
            for callback in self.callbacks:
                callback(self.step, loss)
            if self.step % self.settings.eval_every == 0 or self.step == self.total_steps:
                last_dev = self._dev_check(loss_sum / loss_n)
                loss_sum, loss_n = 0.0, 0
                self.elapsed += time.perf_counter() - started
                started = time.perf_counter()
                self._save()
                self.model.train()
        bar.close()
        self.elapsed += time.perf_counter() - started
        self.load_best()
        return {"steps": self.step, "total_steps": self.total_steps, "steps_per_epoch": self.sampler.steps_per_epoch,
                "best_step": self.best_step, "best_dev": self.best_metric, "resumed_at_step": resumed_at,
                "history": self.history, "train_time_s": self.elapsed,
                "dev_time_s": self.dev_elapsed}
