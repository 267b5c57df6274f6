"""Paper-protocol sessions (52 variants, train-2013) of two networks, paired by seed, with their
accuracy on 1000 valid-2014 image sets: can a leaner network bring the 25-session study on the
2-core CPU under an hour without losing validation accuracy?

    python benchmarks/cpu_recipes.py FILTERS OUT.jsonl MODEL:SESSION [...]
    e.g.  python benchmarks/cpu_recipes.py 8,16,32 results.jsonl triphasic:1 arterial:1

One line of JSON per session (filters, model, session, seed as run_study gives it, seconds,
training images/s, validation accuracy of the final weights). Run one process per core with
one thread each (the fan-out of livercore.distributed). benchmarks/results/cpu_recipes.json
holds the run of 2026-12-01: the lean (8, 16, 32) network against the shipped (16, 32, 64).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

CACHE = Path(__file__).resolve().parent / "results" / ".cache"


def _load(name: str, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from livercore.dataset import from_phantom

    path = CACHE / f"{name}-{size or 'all'}.npz"
    if path.exists():
        z = np.load(path)
        return z["x"], z["y"]
    data = from_phantom(name, size=size, workers=1)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=data.x, y=data.y)
    return data.x, data.y


def main(filters: str, out: str, *jobs: str) -> None:
    from livercore.model import NetConfig, predict_proba, select_channels
    from livercore.train import TrainConfig, train_model
    from livercore.vocab import MODEL_NAMES, PHASE_MODELS

    torch.set_num_threads(1)
    x, y = _load("train-2013")
    x_val, y_val = _load("valid-2014", 1000)
    net = replace(NetConfig(), filters=tuple(int(v) for v in filters.split(",")))
    config = replace(TrainConfig(), variants_per_image=52, net=net)
    for job in jobs:
        name, session = job.split(":")
        seed = 1000 * int(session) + MODEL_NAMES.index(name)  # run_study's seed of that session
        t = time.perf_counter()
        result = train_model(
            x, y, phase_model=PHASE_MODELS[name], config=config, seed=seed, device="cpu", progress=False
        )
        seconds = time.perf_counter() - t
        predicted = predict_proba(result.model, select_channels(x_val, PHASE_MODELS[name])).argmax(1)
        record = {
            "filters": list(net.filters),
            "model": name,
            "session": int(session),
            "seed": seed,
            "seconds": round(seconds, 1),
            "images_per_s": round(result.images_per_s, 1),
            "val_accuracy": float(np.mean(predicted == y_val)),
            "train_accuracy": result.history[-1]["train_accuracy"],
        }
        with Path(out).open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
