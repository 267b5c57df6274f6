"""How much a model's accuracy moves from one 100-case test cohort to another.

The study's targets compare test-2016 with one fresh cohort of another seed; with 100 cases an
accuracy near 0.7 has a standard error of about 0.05, so two cohorts can differ by 0.1 by
chance. This runs each shipped model (its median session) on test-2016 and on fresh cohorts of
seeds 1-6 (same mix, new patients) and writes the accuracies and their spread to
benchmarks/results/fresh_cohorts.json. About two minutes on the 2-core CPU.

    python benchmarks/fresh_cohorts.py [MODELS_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from livercore.analysis import default_models_dir, load_models
from livercore.dataset import from_phantom
from livercore.model import predict_proba, select_channels

SEEDS = (0, 1, 2, 3, 4, 5, 6)  # 0 is test-2016 itself
OUT = Path(__file__).parent / "results" / "fresh_cohorts.json"


def main(models_dir: Path) -> None:
    models = load_models(models_dir)
    accuracy: dict[str, dict[int, float]] = {name: {} for name in models}
    for seed in SEEDS:
        data = from_phantom("test-2016", seed=seed)
        for name, m in models.items():
            proba = predict_proba(m.net, select_channels(data.x, m.phase_model))
            accuracy[name][seed] = float((proba.argmax(1) == data.y).mean())
        print(seed, {n: a[seed] for n, a in accuracy.items()}, flush=True)
    report = {
        "what": "accuracy of each shipped model (median session) on test-2016 (seed 0) and fresh cohorts",
        "models_dir": str(models_dir),
        "accuracy_by_seed": accuracy,
        "summary": {
            name: {
                "test_2016": acc[0],
                "fresh_median": float(np.median([acc[s] for s in SEEDS[1:]])),
                "fresh_min": min(acc[s] for s in SEEDS[1:]),
                "fresh_max": max(acc[s] for s in SEEDS[1:]),
                "sd_across_cohorts": float(np.std(list(acc.values()), ddof=1)),
            }
            for name, acc in accuracy.items()
        },
    }
    OUT.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default_models_dir())
