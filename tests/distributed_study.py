"""A tiny study, run by tests/test_distributed.py once in one process and once under torchrun
(`python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_study.py
OUT`): the same toy cohorts, seeds and one torch thread per process. Not a test module."""

from __future__ import annotations

import sys
from dataclasses import replace

import torch

from livercore.study import run_study
from livercore.train import TrainConfig
from tests.test_study import _toy

MODELS = ("triphasic", "arterial")
SESSIONS = 2


def main(out: str, parallel: str = "auto") -> None:
    torch.set_num_threads(1)
    config = replace(TrainConfig(), variants_per_image=2, batch_size=32)
    run_study(
        _toy(40, 0),
        _toy(15, 1),
        out,
        sessions=SESSIONS,
        models=MODELS,
        config=config,
        device="cpu",
        progress=True,
        parallel=parallel,
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
