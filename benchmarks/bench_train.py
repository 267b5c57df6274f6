"""Training and inference speed of the default recipe on this machine.

Trains a few passes of a triphasic session on random 1068-image data (the paper's cohort size;
speed does not depend on the pixels), projects the time of one paper session (55,536 images),
times single-case inference, and compares the speed-ups (autocast, channels_last) one at a time.
Writes benchmarks/results/train_<device>.json and prints it.

    python benchmarks/bench_train.py [--device cpu|cuda|mps] [--passes 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from livercore.model import LiverNet, predict_proba
from livercore.train import TrainConfig, choose_device, train_model, use_bf16
from livercore.vocab import PHASE_MODELS

PAPER_IMAGES = 1068 * 52  # one paper session: 55,536 augmented image sets
RESULTS = Path(__file__).parent / "results"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu" and Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or device.type


def training_speed(config: TrainConfig, device: torch.device, x: np.ndarray, y: np.ndarray) -> float:
    result = train_model(x, y, phase_model=PHASE_MODELS["triphasic"], config=config, seed=0,
                         device=device, progress=False)
    return result.images_per_s


def inference_ms(device: torch.device, repeats: int = 50) -> float:
    """Median time of `predict_proba` on one triphasic case (float32, eval, no grad)."""
    model = LiverNet(3).to(device).eval()
    case = np.random.default_rng(0).integers(0, 256, (1, 3, 70, 70), dtype=np.uint8)
    for _ in range(5):
        predict_proba(model, case)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predict_proba(model, case)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--passes", type=int, default=3, help="training passes per measurement")
    args = parser.parse_args()
    device = choose_device(args.device)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1068, 3, 70, 70), dtype=np.uint8)
    y = rng.integers(0, 5, 1068).astype(np.int64)
    default = replace(TrainConfig(), variants_per_image=args.passes)
    recipes = {
        "default": default,
        "autocast_bf16": replace(default, autocast="bf16"),
        "autocast_off": replace(default, autocast="off"),
        "no_channels_last": replace(default, channels_last=False),
    }
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    speeds = {name: training_speed(cfg, device, x, y) for name, cfg in recipes.items()}
    ips = speeds["default"]
    report = {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_1min_before": load_before,
        "default_uses_bf16": use_bf16(device, TrainConfig().autocast),
        "config": asdict(TrainConfig()),
        "passes_measured": args.passes,
        "train_images_per_s": round(ips, 1),
        "paper_session_images": PAPER_IMAGES,
        "projected_session_s": round(PAPER_IMAGES / ips, 1),
        "recipes_images_per_s": {k: round(v, 1) for k, v in speeds.items()},
        "single_case_inference_ms": round(inference_ms(device), 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"train_{device.type}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
