"""The full study on one GPU: choose hyperparameters on the validation cohort, train the 25
sessions, run the shortcut audit, and time it all.

Inputs are preprocessed cohorts (`livercore.dataset.Dataset` .npz files) in DATA_DIR, made on
the CPU machine (`from_phantom(...).save(...)`): train-2013, valid-2014 (200 patients, another
cohort: hyperparameters are never chosen on test-2016), test-2016, test-2016-seed1 (a fresh
cohort of another seed), and for the audit the lesion-free copies of train-2013 and test-2016
and a lesion-free cohort of 500 patients with the test-2016 mix (100 test cases alone give the
audit a standard error of about 0.05).

    python benchmarks/gpu_study.py prepare DATA_DIR     # on the CPU machine, about 6 min
    python benchmarks/gpu_study.py DATA_DIR OUT_DIR [CHOSEN]
    python benchmarks/gpu_study.py tune DATA_DIR OUT_DIR   # the tuning table alone

writes OUT_DIR/study (the study directory), OUT_DIR/models (what ships) and
OUT_DIR/gpu_study.json (timings, device, tuning table).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from livercore import evaluate
from livercore.dataset import Dataset
from livercore.model import NetConfig, predict_proba, select_channels
from livercore.phantom import cirrhosis_flags
from livercore.study import predictions_frame, run_study, ship, shortcut_audit, write_metrics
from livercore.train import TrainConfig, train_model
from livercore.vocab import PHASE_MODELS

# The paper leaves batch size, normalisation and training length open. Cost is the CPU time
# relative to the default, the paper's 52 variants (about 100 min for the 25-session study on the
# 2-core CPU, benchmarks/results/train_cpu.json).
CANDIDATES = {
    "default": (TrainConfig(), 1.0),
    "batch64": (replace(TrainConfig(), batch_size=64), 1.1),
    "batchnorm": (replace(TrainConfig(), net=replace(NetConfig(), batch_norm=True)), 1.2),
    "batch64-batchnorm": (
        replace(TrainConfig(), batch_size=64, net=replace(NetConfig(), batch_norm=True)),
        1.3,
    ),
    "variants208": (replace(TrainConfig(), variants_per_image=208), 4.0),
    "variants208-batchnorm": (
        replace(TrainConfig(), variants_per_image=208, net=replace(NetConfig(), batch_norm=True)),
        4.8,
    ),
}
TUNING_SEEDS = (11, 12)
TUNING_MODELS = ("triphasic", "arterial")


def main(data_dir: str, out_dir: str, chosen: str | None = None, *, tune_only: bool = False) -> None:
    data, out = Path(data_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    load = lambda name: Dataset.load(data / f"{name}.npz")  # noqa: E731
    train, valid, test = load("train-2013"), load("valid-2014"), load("test-2016")
    report: dict = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
    }
    print(report, flush=True)

    t0 = time.perf_counter()
    tuning = []
    for label, (cfg, cost) in [] if chosen else CANDIDATES.items():
        for name in TUNING_MODELS:
            for seed in TUNING_SEEDS:
                r = train_model(
                    train.x,
                    train.y,
                    phase_model=PHASE_MODELS[name],
                    config=cfg,
                    seed=seed,
                    progress=False,
                    x_val=valid.x,
                    y_val=valid.y,
                )
                tuning.append(
                    {
                        "config": label,
                        "model": name,
                        "seed": seed,
                        "cost": cost,
                        "val_accuracy": r.history[-1]["val_accuracy"],
                        "seconds": r.seconds,
                        "images_per_s": r.images_per_s,
                    }
                )
                print(tuning[-1], flush=True)
    by_config = {}
    if not chosen:  # otherwise chosen by an earlier run's tuning (benchmarks/results/gpu_tuning.json)
        for label in CANDIDATES:
            by_config[label] = float(np.mean([t["val_accuracy"] for t in tuning if t["config"] == label]))
        best = max(by_config.values())
        # Within 0.01 of the best, take the cheapest (it must also run on the CPU).
        chosen = min(
            (lab for lab, acc in by_config.items() if acc >= best - 0.01), key=lambda lab: CANDIDATES[lab][1]
        )
    config = CANDIDATES[chosen][0]
    report.update(
        tuning=tuning,
        validation_accuracy_by_config=by_config,
        chosen=chosen,
        chosen_config=asdict(config),
        tuning_seconds=time.perf_counter() - t0,
    )
    print("chosen", chosen, by_config, flush=True)
    if tune_only:
        (out / "gpu_tuning.json").write_text(json.dumps(report, indent=1))
        return

    t2 = time.perf_counter()
    audit = shortcut_audit(
        load("train-2013-nolesion"),
        load("audit-500-nolesion"),
        config=config,
        seeds=AUDIT_SEEDS,
        progress=False,
        test_note="audit cohort (seed 0): 500 patients with the test-2016 mix",
        other_tests={"test-2016": load("test-2016-nolesion")},
        cirrhosis={
            "train": cirrhosis_flags("train-2013"),
            "test": cirrhosis_flags("audit", 0, 500),
            "test-2016": cirrhosis_flags("test-2016"),
        },
    )
    report["audit_seconds"] = time.perf_counter() - t2
    print("audit", audit, round(report["audit_seconds"]), "s", flush=True)

    t1 = time.perf_counter()
    study = out / "study"
    run_study(
        train,
        test,
        study,
        sessions=5,
        config=config,
        progress=False,
        validation=valid,
        data_note="train-2013 phantom cohort (seed 0): 460 synthetic patients, 1068 image sets",
    )
    report["study_seconds"] = time.perf_counter() - t1

    # A fresh cohort of another seed, through every session's weights.
    from livercore.model import load_model

    fresh = load("test-2016-seed1")
    frames = []
    for path in sorted((study / "weights").glob("*.pt")):
        saved = load_model(path, map_location="cuda" if torch.cuda.is_available() else "cpu")
        pm = saved.phase_model
        frames.append(
            predictions_frame(
                pm.name, saved.card["session"], fresh, predict_proba(saved.net, select_channels(fresh.x, pm))
            )
        )
    import pandas as pd

    fresh_pred = pd.concat(frames, ignore_index=True)
    fresh_pred.to_csv(study / "predictions_test-2016-seed1.csv", index=False)
    report["fresh_cohort_accuracy_median"] = {
        m: float(g.groupby("session").apply(evaluate.accuracy_score).median())
        for m, g in fresh_pred.groupby("model")
    }

    write_metrics(study, audit)
    report["shipped_sessions"] = ship(study, out / "models")
    report["total_seconds"] = time.perf_counter() - t0
    (out / "gpu_study.json").write_text(json.dumps(report, indent=1))
    summary = json.loads((study / "metrics.json").read_text())["summary"]["models"]
    for m, s in summary.items():
        print(
            f"{m:12s} test acc {s['accuracy']['median']:.3f} ({s['accuracy']['low']:.2f}-{s['accuracy']['high']:.2f}) "
            f"AUC {s['auc_clinical']['median']:.3f} fresh {report['fresh_cohort_accuracy_median'][m]:.3f}"
        )
    print(
        "audit", audit, "study s", round(report["study_seconds"]), "total s", round(report["total_seconds"])
    )


DATA_SETS = {  # file name: from_phantom arguments
    "train-2013": {"cohort": "train-2013"},
    "valid-2014": {"cohort": "valid-2014", "size": 200},
    "test-2016": {"cohort": "test-2016"},
    "test-2016-seed1": {"cohort": "test-2016", "seed": 1},
    "train-2013-nolesion": {"cohort": "train-2013", "lesion": False},
    "test-2016-nolesion": {"cohort": "test-2016", "lesion": False},
    "audit-500-nolesion": {"cohort": "audit", "size": 500, "lesion": False},
}
AUDIT_SEEDS = (99, 100, 101)  # three lesion-free models: the audit's accuracy is their median


def prepare(data_dir: str) -> None:
    """Make every input of `main` from the phantom (run it on the CPU machine)."""
    from livercore.dataset import from_phantom

    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    for name, kwargs in DATA_SETS.items():
        t = time.perf_counter()
        from_phantom(**kwargs).save(data / f"{name}.npz")
        print(f"{name}: {time.perf_counter() - t:.0f} s", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    elif sys.argv[1] == "tune":  # the validation-cohort tuning alone
        main(sys.argv[2], sys.argv[3], tune_only=True)
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
