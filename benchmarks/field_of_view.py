"""How much a crop's field of view tells about the lesion when the lesion is painted over.

phantom.md section 6: a model that sees the slice with the lesion painted over by liver must
stay near the prior. The crop's field of view can break that on its own: a field proportional
to the lesion shows a small lesion's surroundings magnified (coarse noise grain, thick vessels)
and a large one's shrunk, so the crop tells the lesion's size, and size tells the category.

For several fields this makes every train-2013 case without its lesion, crops it, and measures
how well a gradient-boosted classifier on simple crop statistics (grey levels, noise texture,
edges, per phase) names the category, cross-validated by patient (5 folds), against the
largest-class share. It also gives the share of test-2016 crops that show fat or air (tissue
around the liver; the paper: 90 of 100 crops showed surrounding tissue or organs).
``--cnn`` also trains the triphasic network briefly (26 variants, one seed, CPU) on each
field's lesion-free crops and tests it on test-2016 without lesions.

    python benchmarks/field_of_view.py [--cnn]   # writes benchmarks/results/field_of_view.json

The full audit (208 variants, GPU) of the shipped field is in models/study/metrics.json.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold, cross_val_predict

from livercore import preprocess
from livercore.phantom import cohort_layout, cohort_size, generate_case
from livercore.vocab import CATEGORIES, PHASES

# name: (factor of the lesion's diameter, smallest field in mm)
FIELDS = {
    "2x lesion, at least 32 mm (first recipe)": (2.0, 32.0),
    "2x lesion, at least 64 mm": (2.0, 64.0),
    "fixed 64 mm": (0.0, 64.0),
    "fixed 96 mm": (0.0, 96.0),
    "1.25x lesion, at least 64 mm (shipped)": (preprocess.FIELD_FACTOR, preprocess.FIELD_MM),
    "1.25x lesion, at least 96 mm": (1.25, 96.0),
}
OUT = Path(__file__).parent / "results" / "field_of_view.json"


def _crops(args: tuple[str, list[int]]) -> list[tuple[int, dict[str, np.ndarray], int]]:
    cohort, indices = args
    rows = []
    for i in indices:
        case = generate_case(cohort, 0, i, lesion=False)
        per_field = {}
        for name, (factor, min_mm) in FIELDS.items():
            side_mm = max(factor * case.lesion_diameter_mm, min_mm)
            side = max(round(side_mm / case.spacing_mm), 2)
            per_field[name] = np.stack(
                [
                    preprocess.resize_crop(
                        preprocess.crop_square(
                            preprocess.window_to_uint8(case.hu[p], p.window), *case.lesion_center[p], side
                        )
                    )
                    for p in PHASES
                ]
            )
        rows.append((i, per_field, CATEGORIES.index(case.category)))
    return rows


def lesion_free_crops(cohort: str, workers: int = 2) -> tuple[dict[str, np.ndarray], np.ndarray]:
    n = cohort_size(cohort, 0)
    chunks = [list(range(k, n, 8 * workers)) for k in range(8 * workers)]
    with ProcessPoolExecutor(workers) as pool:
        rows = sorted(
            (r for part in pool.map(_crops, [(cohort, c) for c in chunks]) for r in part), key=lambda r: r[0]
        )
    return {name: np.stack([r[1][name] for r in rows]) for name in FIELDS}, np.array([r[2] for r in rows])


def crop_statistics(x: np.ndarray) -> np.ndarray:
    """(N, 3, 70, 70) uint8 -> (N, 36): per phase grey levels, noise texture and edges."""
    x = x.astype(np.float32)
    out = []
    for c in range(x.shape[1]):
        ch = x[:, c]
        fine = ch - gaussian_filter(ch, (0, 0.7, 0.7))
        coarse = ch - gaussian_filter(ch, (0, 2, 2))
        gy, gx = np.gradient(ch, axis=(1, 2))
        centre = ch[:, 25:45, 25:45]
        out += [
            ch.mean((1, 2)),
            ch.std((1, 2)),
            *np.percentile(ch, [5, 50, 95], axis=(1, 2)),
            fine.std((1, 2)),
            coarse.std((1, 2)),
            np.hypot(gx, gy).mean((1, 2)),
            (ch < 5).mean((1, 2)),
            (ch > 250).mean((1, 2)),
            centre.mean((1, 2)),
            centre.std((1, 2)),
        ]
    return np.stack(out, 1)


def quick_cnn_accuracy(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> float:
    import torch

    from livercore.model import predict_proba
    from livercore.train import TrainConfig, train_model
    from livercore.vocab import PHASE_MODELS

    result = train_model(
        x_train,
        y_train.astype(np.int64),
        phase_model=PHASE_MODELS["triphasic"],
        config=replace(TrainConfig(), variants_per_image=26),
        seed=1,
        progress=False,
        device=torch.device("cpu"),
    )
    return float((predict_proba(result.model, x_test).argmax(1) == y_test).mean())


def main(cnn: bool) -> None:
    t0 = time.perf_counter()
    train, y = lesion_free_crops("train-2013")
    test, y_test = lesion_free_crops("test-2016")
    groups = np.array([s.patient for s in cohort_layout("train-2013", 0)])
    report: dict = {
        "what": "lesion-free crops: category accuracy of a classifier on crop statistics (5-fold by patient)",
        "train_largest_class_share": float(np.bincount(y).max() / len(y)),
        "test_largest_class_share": float(np.bincount(y_test).max() / len(y_test)),
        "fields": {},
    }
    for name in FIELDS:
        pred = cross_val_predict(
            HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, random_state=0),
            crop_statistics(train[name]),
            y,
            groups=groups,
            cv=GroupKFold(5),
        )
        row = {
            "statistics_classifier_cv_accuracy": float(np.mean(pred == y)),
            "test_crops_showing_fat_or_air": float(((test[name] < 20).mean((1, 2, 3)) > 0.02).mean()),
        }
        if cnn:
            row["quick_cnn_test_accuracy_without_lesion"] = quick_cnn_accuracy(
                train[name], y, test[name], y_test
            )
        report["fields"][name] = row
        print(name, row, flush=True)
    report["seconds"] = time.perf_counter() - t0
    OUT.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main("--cnn" in sys.argv)
