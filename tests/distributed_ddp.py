"""One session of the triphasic model trained data-parallel over the ranks of a torchrun run
(`python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_ddp.py
OUT`), or in one process without torchrun: each rank writes its loss curve and a digest of its
final parameters to OUT/rank<r>.json. Used by tests/test_distributed.py. Not a test module."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from livercore import distributed
from livercore.train import TrainConfig, train_model
from livercore.vocab import PHASE_MODELS
from tests.test_study import _toy


def main(out: str) -> None:
    torch.set_num_threads(1)
    ranks = distributed.Ranks.from_environment()
    distributed.start(ranks, "cpu")
    data = _toy(64, 0)
    config = replace(TrainConfig(), variants_per_image=12, batch_size=32)
    result = train_model(
        data.x,
        data.y,
        phase_model=PHASE_MODELS["triphasic"],
        config=config,
        seed=5,
        device="cpu",
        progress=False,
        data_parallel=True,
    )
    digest = hashlib.sha256(
        b"".join(p.detach().numpy().tobytes() for p in result.model.parameters())
    ).hexdigest()
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"rank{ranks.rank}.json").write_text(
        json.dumps({"loss": [h["loss"] for h in result.history], "parameters": digest, "world": ranks.world})
    )
    distributed.stop(ranks)


if __name__ == "__main__":
    main(sys.argv[1])
