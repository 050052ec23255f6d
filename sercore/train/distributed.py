"""Several processes (GPUs, nodes) through torchrun, and the same code in one process without it.

    torchrun --nproc_per_node=N -m sercore train --study fusion --corpus PATH --out DIR ...
    torchrun --nnodes=M --node_rank=K --master_addr=HOST --nproc_per_node=N -m sercore train ...

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; when WORLD_SIZE is unset or 1 nothing here starts a process
group. The backend is nccl when CUDA is available (one GPU per process, cuda:LOCAL_RANK) and gloo on the CPU.
The model is wrapped in DistributedDataParallel; each global batch is split across ranks (EpochSampler),
evaluation batches are dealt out round-robin and the predictions gathered on every rank, so all ranks
agree on the dev metric and the learning-rate schedule. Rank 0 alone writes files; with several nodes,
out_dir must be on a file system every node sees (checkpoints are read back by every rank on resume).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False  # this code started the process group (and so ends it)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(size=size, rank=int(os.environ.get("RANK", "0")), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def start(device: str = "auto") -> tuple[World, torch.device]:
    """Join the process group when launched by torchrun; pick this process's device."""
    world = world_from_env()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        if world.distributed:
            torch_device = torch.device("cuda", world.local_rank)
        elif torch_device.index is None:
            torch_device = torch.device("cuda", 0)
        torch.cuda.set_device(torch_device)
    if world.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch_device.type == "cuda" else "gloo")
        world.owns_group = True
    return world, torch_device


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel) \
        else model


def gather(obj: Any, world: World) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank; [obj] in a single process."""
    if not world.distributed:
        return [obj]
    out: list = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def stop(world: World) -> None:
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()
