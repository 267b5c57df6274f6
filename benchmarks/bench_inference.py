"""One case through the five shipped phase-models, with and without CAMs and phase
contributions, on this machine; and the phase contributions' exact Shapley values in one batch
against captum's ShapleyValues (the reference the tests hold them to), side by side.

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


def contribution_timings(model, crops: np.ndarray, repeats: int) -> dict[str, float]:
    """Median ms of the triphasic model's phase contributions: ours (2^3 inputs, one batch) and
    captum's ShapleyValues over the same three channel groups and baseline, alternated."""
    from captum.attr import ShapleyValues

    from livercore.contribution import flat_baseline, phase_contributions
    from livercore.model import as_input, probabilities
    from livercore.vocab import Category

    x = as_input(crops)
    mask = torch.arange(3).view(1, -1, 1, 1).expand_as(x).contiguous()
    reference = ShapleyValues(lambda t: probabilities(model.net(t)))
    ours, theirs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        phase_contributions(model.net, crops, model.phase_model.phases, Category.A)
        ours.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        with torch.no_grad():
            reference.attribute(x, baselines=flat_baseline(x), target=0, feature_mask=mask)
        theirs.append((time.perf_counter() - t) * 1000)
    return {
        "ours_median": round(float(np.median(ours)), 1),
        "captum_shapley_median": round(float(np.median(theirs)), 1),
        "ratio_captum_over_ours": round(float(np.median(theirs) / np.median(ours)), 1),
    }


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
        for contributions in (True, False):
            analyse_crops(crops, models, cam_method=method, contributions=contributions)  # warm-up
            times = []
            for _ in range(repeats):
                run = analyse_crops(crops, models, cam_method=method, contributions=contributions)
                times.append(run.seconds * 1000)
            name = f"five_models_{method or 'no_cam'}{'' if contributions else '_without_contributions'}_ms"
            result[name] = {
                "median": round(float(np.median(times)), 1),
                "p95": round(float(np.percentile(times, 95)), 1),
            }
    result["phase_contributions_triphasic_ms"] = contribution_timings(models["triphasic"], crops, repeats)
    out = Path(__file__).parent / "results" / "inference_cpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
