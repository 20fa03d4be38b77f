"""Training under `accelerate launch` (or torchrun): one run, several processes.

Every process trains its share of the batches (the trainer does data parallelism by itself once the launcher
has set RANK / WORLD_SIZE); tunelab's own side effects happen once: rank 0 curates when no curation exists,
picks the run id, claims the run folder, writes the warehouse (run row, train_log, finish) and saves the
adapter, and the other ranks receive what rank 0 decided. Without a launcher every helper here is the
identity, and no process group is created.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

T = TypeVar("T")


def world_size() -> int:
    """Processes in this training (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    """True in the one process that writes the warehouse, the run folder and stdout."""
    return rank() == 0


def _process_group() -> Any:
    """torch.distributed with the launcher's process group (nccl on GPUs, gloo on CPU), created once; the
    trainer finds it initialised and uses it."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist


def from_main(value: T | None) -> T:
    """Rank 0's `value`, in every process (rank 0 computes it; the others pass None and wait for it)."""
    if world_size() == 1:
        assert value is not None
        return value
    box: list[Any] = [value]
    _process_group().broadcast_object_list(box, src=0)
    return box[0]


def wait_for_main() -> None:
    """A barrier: every process waits here until all (rank 0 included) arrive."""
    if world_size() == 1:
        return
    _process_group().barrier()
