"""One case through the five shipped phase-models, with and without CAMs, on this machine.

python benchmarks/bench_inference.py   ->  benchmarks/results/inference_<device>.json
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from livercore.analysis import analyse_crops, load_models
from livercore.phantom import generate_case
from livercore.preprocess import LesionBox, preprocess_case
from livercore.vocab import PHASES


def main(repeats: int = 20) -> dict:
    torch.set_num_threads(os.cpu_count() or 1)
    models = load_models()
    case = generate_case("test-2016", 0, 3)
    boxes = {
        p: LesionBox.from_center(*case.lesion_center[p], case.lesion_diameter_mm, case.spacing_mm)
        for p in PHASES
    }
    t = time.perf_counter()
    crops = preprocess_case(case.hu, boxes, case.spacing_mm)
    preprocess_ms = (time.perf_counter() - t) * 1000
    result = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg()[0],
        "preprocess_ms": round(preprocess_ms, 1),
        "repeats": repeats,
    }
    for method in (None, "GradCAM", "GradCAM++", "EigenCAM"):
        analyse_crops(crops, models, cam_method=method)  # warm-up
        times = []
        for _ in range(repeats):
            times.append(analyse_crops(crops, models, cam_method=method).seconds * 1000)
        result[f"five_models_{method or 'no_cam'}_ms"] = {
            "median": round(float(np.median(times)), 1),
            "p95": round(float(np.percentile(times, 95)), 1),
        }
    out = Path(__file__).parent / "results" / "inference_cpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
