"""What the out-of-distribution check adds to the five-model analysis of one case, on the CPU.

Side by side in one run, case by case, alternating the order, as the review page runs them:
the five models with GradCAM and phase contributions on a phantom case's crops with the shipped
models' OOD statistics, then the image checks from the page's measurements (the attenuation
table it draws anyway, with the aorta its phase check found), against the same analysis on the
same models with their statistics removed and no image checks. Also timed alone: the feature
distances (livercore.ood.assess), the image checks from the page's measurements, and the image
checks with their own aorta search (livercore.analysis.analyse_case without an aorta, the API
and CLI path; in the app that search is the phase check's, made once per case and cached).

    python benchmarks/ood_overhead.py [CASES]   ->  benchmarks/results/ood_overhead.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from livercore import ood
from livercore.analysis import analyse_crops, load_models
from livercore.measure import measure_case
from livercore.model import predict_logits_and_features, select_channels
from livercore.ood import find_aorta
from livercore.phantom import generate_case
from livercore.preprocess import LesionBox, preprocess_case
from livercore.vocab import PHASES

ROOT = Path(__file__).resolve().parents[1]


def _ms(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
        "min_ms": round(ms[0], 2),
    }


def main(n_cases: int = 40) -> dict[str, Any]:
    torch.set_num_threads(1)  # as the app runs (livercore.app.state.TORCH_THREADS)
    models = load_models()
    bare = {n: replace(m, ood=None) for n, m in models.items()}
    cases = []
    for i in range(n_cases):
        case = generate_case("valid-2014", 0, i, 200)
        boxes = {
            p: LesionBox.from_center(*case.lesion_center[p], case.lesion_diameter_mm, case.spacing_mm)
            for p in PHASES
        }
        spacing = dict.fromkeys(PHASES, case.spacing_mm)
        aorta = find_aorta(case.hu, case.spacing_mm)  # the page's phase check, once per case
        table = measure_case(case.hu, spacing, boxes, {}, dict.fromkeys(PHASES, aorta) if aorta else {})
        cases.append(
            (case.hu, boxes, case.spacing_mm, preprocess_case(case.hu, boxes, case.spacing_mm), table)
        )
    for _hu, _boxes, _spacing, crops, _table in cases[:3]:  # warm-up: grad-cam hooks, allocator
        analyse_crops(crops, models)
    with_check, without, differences, distances, images, searching = [], [], [], [], [], []
    for i, (hu, boxes, spacing, crops, table) in enumerate(cases):
        runs = {}
        for label in ("with", "without") if i % 2 == 0 else ("without", "with"):
            t = time.perf_counter()
            if label == "with":
                analysis = analyse_crops(crops, models)
                analysis.with_findings(ood.check_images(hu, boxes, spacing, measurements=table))
            else:
                analyse_crops(crops, bare)
            runs[label] = time.perf_counter() - t
        with_check.append(runs["with"])
        without.append(runs["without"])
        differences.append(runs["with"] - runs["without"])
        t = time.perf_counter()
        ood.check_images(hu, boxes, spacing, measurements=table)
        images.append(time.perf_counter() - t)
        t = time.perf_counter()
        ood.check_images(hu, boxes, spacing)
        searching.append(time.perf_counter() - t)
        features = {}
        for n, m in models.items():
            features[n] = predict_logits_and_features(m.net, select_channels(crops, m.phase_model)[None])[1]
        t = time.perf_counter()
        for n, m in models.items():
            ood.assess(n, m.ood, features[n], phases=m.phase_model.phases)
        distances.append(time.perf_counter() - t)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 torch thread",
        "load_average_before_after": None,
        "cases": n_cases,
        "analysis_with_ood": _ms(with_check),
        "analysis_without_ood": _ms(without),
        "added_per_case_paired": _ms(differences),
        "feature_distances_five_models": _ms(distances),
        "image_checks_from_the_pages_measurements": _ms(images),
        "image_checks_with_their_own_aorta_search": _ms(searching),
    }
    return report


if __name__ == "__main__":
    load_before = os.getloadavg()
    result = main(*(int(a) for a in sys.argv[1:]))
    result["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    out = ROOT / "benchmarks" / "results" / "ood_overhead.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
