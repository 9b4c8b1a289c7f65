"""Multi-process training with torch.distributed (launched by torchrun): gloo on CPU, nccl on CUDA.

Each process takes its slice of every global batch. The retriever and the run's loss (whose own parameters, a
learnable τ or Revela's LM adapters, train too) are one module, `LossStep`, wrapped in torch's
DistributedDataParallel: it averages every trainable parameter's gradient across processes in buckets while
backward runs, and skips the exchange on all but the last micro-batch of an accumulated step. So N processes with
per-process batch B train exactly like one process with batch N·B (tests/test_distributed.py). Only rank 0 writes
files.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


class LossStep(nn.Module):
    """The retriever and the loss that trains it as one module: what DistributedDataParallel wraps, so it sees
    every trainable parameter. The loss holds the retriever as a plain attribute; here it is a submodule."""

    def __init__(self, retriever: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.retriever = retriever
        self.loss = loss

    def forward(self, *args, **kwargs):
        return self.loss(*args, **kwargs)


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def wrap(self, step: LossStep, device: str) -> nn.Module:
        """`step` in DistributedDataParallel when there are several processes (itself otherwise). Buffers are not
        re-broadcast each forward (nothing the loss reads changes them); a parameter a step leaves without a
        gradient (e.g. BERT's unused pooler) is found rather than waited for."""
        if self.world_size == 1:
            return step
        from torch.nn.parallel import DistributedDataParallel

        index = torch.device(device).index
        ids = [index if index is not None else torch.cuda.current_device()] if device.startswith("cuda") else None
        return DistributedDataParallel(step, device_ids=ids, broadcast_buffers=False, find_unused_parameters=True)

    @staticmethod
    def accumulating(step: nn.Module, more_to_come: bool) -> contextlib.AbstractContextManager:
        """Within an accumulated step, no gradient exchange until its last micro-batch."""
        no_sync = getattr(step, "no_sync", None)
        return no_sync() if more_to_come and no_sync is not None else contextlib.nullcontext()

    def average(self, value: float, device: torch.device | str = "cpu") -> float:
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world_size


def init_from_env(device: str, timeout_minutes: float | None = None) -> ProcessGroup:
    """Join the process group torchrun describes in the environment; a single process otherwise.

    `timeout_minutes` bounds how long a collective (e.g. a barrier) waits for the slowest rank."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return ProcessGroup()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        timeout = timedelta(minutes=timeout_minutes) if timeout_minutes else None
        dist.init_process_group(backend=backend, timeout=timeout)
    return ProcessGroup(rank=dist.get_rank(), world_size=dist.get_world_size())
