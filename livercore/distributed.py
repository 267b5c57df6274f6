"""Running the study across processes and machines with PyTorch's own launcher, torchrun.

torchrun starts one process per rank and tells each its place through the environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); `Ranks.from_environment` reads it, and a
plain `livercore study run` is rank 0 of 1. The study's sessions are independent trainings, so
they are fanned out: rank r trains sessions r, r + N, r + 2N, ... of the study's list, each
finished session written atomically to the study's `sessions/` folder, and rank 0 merges them
into the study folder once every rank is done (livercore.study.merge_sessions). A rank that
dies loses only its session in progress: the finished ones are on disk, and the same command
resumes. For a large cohort the ranks can instead train each session together
(DistributedDataParallel, livercore.train.train_model(data_parallel=True)); `choose_mode` says
which. The process group is gloo on the CPU and NCCL on GPUs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")
MODES = ("auto", "sessions", "ddp")
# From this many training image sets one session is worth several processes: at 234 images/s
# on two CPU cores a 52-pass session over 20,000 sets takes over an hour.
DDP_MIN_IMAGE_SETS = 20_000
# The ranks wait this long at the barrier before the merge: the slowest rank's sessions.
BARRIER_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Ranks:
        """This process's place, from torchrun's variables (rank 0 of 1 without them)."""
        return cls(
            int(os.environ.get("RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def label(self) -> str:
        """The prefix of this rank's progress lines ("" for a single process)."""
        return f"[rank {self.rank}/{self.world}] " if self.distributed else ""

    def share(self, jobs: Sequence[T]) -> list[T]:
        """This rank's jobs: every world-th from its rank on (round robin)."""
        return list(jobs[self.rank :: self.world])


def start(ranks: Ranks, device: str) -> None:
    """Join the process group of a distributed run (gloo on CPU, NCCL on CUDA); nothing for one
    process. On CUDA each rank takes the GPU of its local rank."""
    if not ranks.distributed:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=BARRIER_TIMEOUT)


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier()


def stop(ranks: Ranks) -> None:
    if ranks.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def choose_mode(wanted: str, ranks: Ranks, *, n_images: int, jobs: int) -> str:
    """How the ranks share a study: "sessions" (fan-out) or "ddp" (one session at a time,
    data-parallel). "auto": ddp for a large cohort (DDP_MIN_IMAGE_SETS image sets or more) or
    when fewer sessions remain than ranks (fan-out would leave ranks idle), else sessions."""
    if wanted not in MODES:
        raise ValueError(f"parallel must be one of {', '.join(MODES)}, not {wanted!r}")
    if not ranks.distributed:
        return "sessions"
    if wanted != "auto":
        return wanted
    return "ddp" if n_images >= DDP_MIN_IMAGE_SETS or 0 < jobs < ranks.world else "sessions"
