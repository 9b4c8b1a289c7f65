"""Multi-process training with torch.distributed (launched by torchrun): gloo on CPU, nccl on CUDA.

Each process takes its slice of every global batch; gradients are averaged with all_reduce before the
optimiser step, so N processes with per-process batch B train exactly like one process with batch N·B
(tests/test_distributed.py). Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


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

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        if self.world_size == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= self.world_size

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
