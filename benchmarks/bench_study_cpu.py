"""The paper-protocol study on the CPU: where one training step's time goes, and training
images per second with one process of all the cores' threads against one process per core
(the study's sessions fanned out under torchrun, livercore.distributed), side by side in one run.

    python benchmarks/bench_study_cpu.py [STEPS]   ->  benchmarks/results/study_cpu.json

Each measurement trains the triphasic model for STEPS minibatches of 128 (the paper's recipe:
52 variants, train-2013's 1068 image sets; 9 steps a pass) after a warm-up; the 25-session
study time is extrapolated from the images per second (25 x 55,536 images), stated as such.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
STUDY_IMAGES = 25 * 1068 * 52


def _data(n: int = 1068) -> tuple[np.ndarray, np.ndarray]:
    """Crops with the phantom's statistics are not needed for timing: the cost is the same."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 3, 70, 70), dtype=np.uint8), (np.arange(n) % 5).astype(np.int64)


def _train(steps: int, threads: int, seed: int = 0) -> float:
    """Training images per second of `steps` minibatches on `threads` threads (after 2 steps)."""
    from livercore.train import TrainConfig, train_model
    from livercore.vocab import PHASE_MODELS

    torch.set_num_threads(threads)
    x, y = _data()
    batch = 128
    warm = replace(TrainConfig(), variants_per_image=1, batch_size=batch)
    train_model(
        x[: 2 * batch],
        y[: 2 * batch],
        phase_model=PHASE_MODELS["triphasic"],
        config=warm,
        seed=seed,
        device="cpu",
        progress=False,
    )
    n = steps * batch
    reps = n // len(x) + 1
    xs, ys = np.concatenate([x] * reps)[:n], np.concatenate([y] * reps)[:n]
    config = replace(TrainConfig(), variants_per_image=1, batch_size=batch)
    t = time.perf_counter()
    train_model(
        xs, ys, phase_model=PHASE_MODELS["triphasic"], config=config, seed=seed, device="cpu", progress=False
    )
    return n / (time.perf_counter() - t)


def _worker(args: tuple[int, int, int]) -> float:
    steps, threads, seed = args
    return _train(steps, threads, seed)


def profile(steps: int = 20) -> list[dict[str, Any]]:
    """The top operators of training steps by self CPU time (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(os.cpu_count() or 1)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        _train(steps, os.cpu_count() or 1)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {"op": e.key, "self_cpu_share": round(e.self_cpu_time_total / total, 3), "calls": e.count}
        for e in events[:12]
    ]


def batched_sessions(k: int = 5, batch: int = 128, repeats: int = 3) -> dict[str, Any]:
    """Forward and backward of k triphasic networks on k minibatches, one thread: one after the
    other, against all k in one batched computation (torch.func.stack_module_state + vmap, which
    turns the convolutions into grouped ones). Milliseconds per round of k minibatches."""
    from torch.func import functional_call, stack_module_state, vmap

    from livercore.model import LiverNet

    torch.set_num_threads(1)
    nets = [LiverNet(3) for _ in range(k)]  # training mode: dropout too, each network its own masks
    xs = torch.rand(k, batch, 3, 70, 70)
    ys = torch.randint(0, 5, (k, batch))

    def sequential() -> None:
        for net, x, y in zip(nets, xs, ys, strict=True):
            torch.nn.functional.cross_entropy(net(x), y).backward()

    params, buffers = stack_module_state(nets)  # type: ignore[arg-type]
    base = LiverNet(3).to("meta")

    def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    def batched() -> None:
        logits = vmap(one, randomness="different")(params, buffers, xs)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), ys.flatten()).backward()

    out = {}
    for name, fn in (("sequential", sequential), ("vmap_batched", batched)):
        fn()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        out[f"{name}_ms_per_round"] = round((time.perf_counter() - t) / repeats * 1000)
    out["ratio_batched_to_sequential"] = round(
        out["vmap_batched_ms_per_round"] / out["sequential_ms_per_round"], 2
    )
    out["networks"] = k
    out["minibatch"] = batch
    return out


def main(steps: int = 45) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    one = _train(steps, cores)
    ctx = mp.get_context("spawn")
    with ctx.Pool(cores) as pool:
        t = time.perf_counter()
        rates = pool.map(_worker, [(steps, 1, k) for k in range(cores)])
        wall = time.perf_counter() - t
    fanned = sum(rates)
    report = {
        "machine": f"{platform.machine()}, {cores} cores ({platform.processor() or 'cpu'}), torch {torch.__version__}",
        "steps_per_measurement": steps,
        "one_process_threads": cores,
        "images_per_s_one_process": round(one, 1),
        "images_per_s_one_process_per_core": [round(r, 1) for r in rates],
        "images_per_s_fanned_out": round(fanned, 1),
        "ratio_fanned_out_to_one_process": round(fanned / one, 2),
        "study_minutes_extrapolated": {
            "one_process": round(STUDY_IMAGES / one / 60, 1),
            "one_process_per_core": round(STUDY_IMAGES / fanned / 60, 1),
        },
        "profile_top_ops_one_process": profile(),
        "batched_sessions_one_thread": batched_sessions(),
        "fan_out_wall_s": round(wall, 1),
    }
    report["load_average_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    (ROOT / "benchmarks" / "results" / "study_cpu.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
