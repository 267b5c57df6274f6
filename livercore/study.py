"""The paper's study: five phase-models x five sessions, evaluated, carded and shipped.

A study directory holds::

    weights/<model>_s<session>.pt      every session's network (save_model format)
    predictions_test.csv               model, session, case_id, category, subtype, predicted, p_A..p_E
    predictions_train.csv              the same on the training cohort
    metrics.json                       per-session metrics, the study summary, the shortcut audit
    cards/<model>_s<session>.json      model cards

Sessions already in the directory are kept (a stopped study resumes where it stopped).

`ship` copies each model's median session to a models folder and, given the training and the
validation cohorts, stores with it what the app needs beyond the weights (`fit_ship_statistics`):
the out-of-distribution statistics (livercore.ood, fitted on the training cohort, thresholded on
the validation cohort) and the temperature (livercore.calibration, fitted on the validation
cohort), never anything fitted on the test cohort.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from livercore import evaluate
from livercore.dataset import Dataset
from livercore.vocab import CATEGORIES, MODEL_NAMES, PHASE_MODELS, Category

PROBABILITY_COLUMNS = [f"p_{c.value}" for c in CATEGORIES]


def study_config() -> Any:
    """The training recipe of the shipped study: TrainConfig with 208 variants per image set
    (four times the paper's 52). Chosen on the validation cohort valid-2014 among six recipes
    (benchmarks/gpu_study.py; benchmarks/results/gpu_tuning.json: 0.92 mean validation accuracy
    against 0.86 for 52 variants, on the 64 mm crops), never on test-2016."""
    from dataclasses import replace

    from livercore.train import TrainConfig

    return replace(TrainConfig(), variants_per_image=208)


def code_version() -> str:
    """The git commit of the code (with '+dirty' for local changes), or the package version.

    LIVERCORE_CODE_VERSION overrides it (a copy of the tree without its git history)."""
    if os.environ.get("LIVERCORE_CODE_VERSION"):
        return os.environ["LIVERCORE_CODE_VERSION"]
    try:
        root = Path(__file__).resolve().parents[1]
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"livercore {version('livercore')}"
        except PackageNotFoundError:
            return "unknown"


def predictions_frame(model: str, session: int, data: Dataset, proba: np.ndarray) -> pd.DataFrame:
    """One row per case: the columns evaluate.py expects."""
    frame = data.meta[["case_id", "category", "subtype"]].copy()
    frame.insert(0, "session", session)
    frame.insert(0, "model", model)
    frame["predicted"] = [CATEGORIES[i].value for i in proba.argmax(axis=1)]
    for j, col in enumerate(PROBABILITY_COLUMNS):
        frame[col] = proba[:, j].round(6)
    return frame


def run_study(
    train: Dataset,
    test: Dataset,
    out_dir: str | os.PathLike[str],
    *,
    sessions: int = 5,
    models: tuple[str, ...] = MODEL_NAMES,
    config: Any = None,
    device: str | None = None,
    progress: bool = True,
    data_note: str = "",
    test_note: str = "",
    validation: Dataset | None = None,
    parallel: str = "auto",
) -> dict[str, Any]:
    """Train every model x session, predict the test and training cohorts, write everything.

    Under torchrun (livercore.distributed) each rank trains its share of the sessions still to
    do, and rank 0 merges them once all are done: the study folder is the one a single process
    writes with the same seeds. Each finished session is written to `sessions/` at once, so a
    stopped or crashed run resumes where it was.

    `parallel` chooses how the ranks share the work (distributed.choose_mode): "sessions" (each
    rank its own sessions), "ddp" (the ranks train each session together with
    DistributedDataParallel, rank 0 writing), or "auto": ddp for a cohort of
    distributed.DDP_MIN_IMAGE_SETS image sets or more, or when fewer sessions remain than ranks."""
    import torch

    from livercore import distributed
    from livercore.model import predict_proba, save_model, select_channels
    from livercore.train import choose_device, train_model

    out = Path(out_dir)
    ranks = distributed.Ranks.from_environment()
    (out / "weights").mkdir(parents=True, exist_ok=True)
    (out / "cards").mkdir(exist_ok=True)
    (out / SESSIONS_DIR).mkdir(exist_ok=True)
    config = config or study_config()
    dev = choose_device(device)
    if ranks.distributed and dev.type == "cuda":
        dev = torch.device("cuda", ranks.local_rank)
    distributed.start(ranks, str(dev))
    done = finished_sessions(out)
    jobs = [
        (name, session)
        for name in models
        for session in range(1, sessions + 1)
        if (name, session) not in done
    ]
    mode = distributed.choose_mode(parallel, ranks, n_images=len(train), jobs=len(jobs))
    mine = jobs if mode == "ddp" else ranks.share(jobs)
    writer = mode != "ddp" or ranks.rank == 0  # under ddp every rank holds the same weights: one writes
    if progress and ranks.rank == 0 and ranks.distributed:
        print(f"{ranks.label}{len(jobs)} sessions to train, {mode} over {ranks.world} ranks", flush=True)
    for name, session in mine:
        pm = PHASE_MODELS[name]
        seed = 1000 * session + MODEL_NAMES.index(name)
        result = train_model(
            train.x,
            train.y,
            phase_model=pm,
            config=config,
            seed=seed,
            device=dev,
            progress=progress and not ranks.distributed,  # ranks print one line a session, not bars
            data_parallel=mode == "ddp",
        )
        if not writer:
            continue
        result.model.know_only([CATEGORIES[k].value for k in np.unique(train.y)])
        p_test = predict_proba(result.model, select_channels(test.x, pm))
        p_train = predict_proba(result.model, select_channels(train.x, pm))
        f_test = predictions_frame(name, session, test, p_test)
        f_train = predictions_frame(name, session, train, p_train)
        metrics = evaluate.session_metrics(f_test)
        val_accuracy = None  # the final weights on the validation cohort, once (not every pass)
        if validation is not None:
            p_val = predict_proba(result.model, select_channels(validation.x, pm))
            val_accuracy = float(np.mean(p_val.argmax(1) == validation.y))
        card = {
            "model": name,
            "phases": [p.value for p in pm.phases],
            "session": session,
            "seed": seed,
            "trained_on": data_note or f"{len(train)} image sets",
            "categories": [c.value for c in result.model.known_categories],
            "training_mix": training_mix(train.y),
            "tested_on": test_note or f"{len(test)} cases",
            "config": asdict(config),
            "net": asdict(result.model.config),
            "code_version": code_version(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "device": str(result.device),
            "device_name": torch.cuda.get_device_name(result.device)
            if str(result.device).startswith("cuda")
            else platform.processor() or platform.machine(),
            "training_seconds": round(float(result.seconds), 1),
            "images_per_second": round(float(result.images_per_s), 1),
            "test_accuracy": metrics["accuracy"],
            "train_accuracy": evaluate.accuracy_score(f_train),
            "test_auc_clinical": metrics["auc_clinical"]["auc"],
            "validation_accuracy": val_accuracy,
        }
        save_model(out / "weights" / f"{name}_s{session}.pt", result.model, phase_model_name=name, card=card)
        (out / "cards" / f"{name}_s{session}.json").write_text(json.dumps(card, indent=2))
        # the session's predictions last: their presence is what marks it done
        _write_atomically(out / SESSIONS_DIR / f"{name}_s{session}_train.csv", f_train)
        _write_atomically(out / SESSIONS_DIR / f"{name}_s{session}_test.csv", f_test)
        if not ranks.distributed:
            merge_sessions(out)  # one process: the study folder is current after every session
        if progress:
            print(
                f"{ranks.label}{name} session {session}: test accuracy {card['test_accuracy']:.3f}, train "
                f"{card['train_accuracy']:.3f}, {card['training_seconds']} s on {card['device']}",
                flush=True,
            )
    distributed.barrier(ranks)
    if ranks.rank == 0:
        merge_sessions(out)
        metrics_out = write_metrics(out)
    distributed.barrier(ranks)
    distributed.stop(ranks)
    if ranks.rank != 0:
        metrics_out = json.loads((out / "metrics.json").read_text())
    return metrics_out


SESSIONS_DIR = "sessions"  # one pair of prediction files per finished session (run_study)


def _write_atomically(path: Path, frame: pd.DataFrame) -> None:
    """Write a CSV under a temporary name, then rename it: a reader (or a resumed run) sees the
    whole file or none."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    frame.to_csv(partial, index=False)
    partial.replace(path)


def finished_sessions(study_dir: str | os.PathLike[str]) -> set[tuple[str, int]]:
    """(model, session) pairs a study folder has finished: in its predictions or `sessions/`."""
    out = Path(study_dir)
    done: set[tuple[str, int]] = set()
    merged = out / "predictions_test.csv"
    if merged.exists():
        frame = pd.read_csv(merged, usecols=["model", "session"]).drop_duplicates()
        done |= {(str(m), int(s)) for m, s in frame.itertuples(index=False)}
    for path in (out / SESSIONS_DIR).glob("*_test.csv"):
        name, _, session = path.name.removesuffix("_test.csv").rpartition("_s")
        if (out / SESSIONS_DIR / f"{name}_s{session}_train.csv").exists():
            done.add((name, int(session)))
    return done


def merge_sessions(study_dir: str | os.PathLike[str]) -> None:
    """Fold the finished sessions of `sessions/` into predictions_test.csv and
    predictions_train.csv, in the paper's model order and session order (what a single process
    writes), each (model, session) once."""
    out = Path(study_dir)
    for split in ("test", "train"):
        frames = []
        merged = out / f"predictions_{split}.csv"
        if merged.exists():
            frames.append(pd.read_csv(merged))
        frames += [pd.read_csv(p) for p in sorted((out / SESSIONS_DIR).glob(f"*_{split}.csv"))]
        if not frames:
            continue
        seen: set[tuple[str, int]] = set()
        kept = []
        for frame in frames:  # each (model, session) from the first file that has it
            pairs = list(zip(frame["model"].astype(str), frame["session"].astype(int), strict=True))
            fresh = [p not in seen for p in pairs]
            kept.append(frame[fresh])
            seen |= set(pairs)
        table = pd.concat(kept, ignore_index=True)
        order = {m: i for i, m in enumerate(MODEL_NAMES)}
        table = table.sort_values(
            ["model", "session"], key=lambda c: c.map(order) if c.name == "model" else c, kind="stable"
        )
        _write_atomically(merged, table.reset_index(drop=True))


def training_mix(labels: np.ndarray) -> dict[str, int]:
    """Image sets per category of a training cohort's labels (N,) in 0..4, the absent left out."""
    counts = np.bincount(np.asarray(labels), minlength=len(CATEGORIES))
    return {c.value: int(n) for c, n in zip(CATEGORIES, counts, strict=True) if n}


def write_metrics(study_dir: str | os.PathLike[str], audit: dict[str, Any] | None = None) -> dict[str, Any]:
    """(Re)compute metrics.json from the predictions in a study directory."""
    out = Path(study_dir)
    test = pd.read_csv(out / "predictions_test.csv")
    train = pd.read_csv(out / "predictions_train.csv")
    previous = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    sessions = {}
    for (m, s), frame in test.groupby(["model", "session"], sort=False):
        entry = evaluate.session_metrics(frame)
        entry["train_accuracy"] = evaluate.accuracy_score(train[(train.model == m) & (train.session == s)])
        card_path = out / "cards" / f"{m}_s{s}.json"
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
        if card.get("validation_accuracy") is not None:
            entry["validation_accuracy"] = card["validation_accuracy"]
        sessions[f"{m}/s{s}"] = entry
    metrics = {
        "summary": evaluate.study_summary(test),
        "train_accuracy": {
            m: {"median": float(g.median()), "low": float(g.min()), "high": float(g.max())}
            for m, g in train.groupby(["model", "session"]).apply(evaluate.accuracy_score).groupby(level=0)
        },
        "sessions": sessions,
        "validation_accuracy": _validation_means(sessions),
        "shortcut_audit": audit if audit is not None else previous.get("shortcut_audit"),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def _validation_means(sessions: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Model -> mean validation accuracy over its sessions that have one (run_study's
    `validation`); empty when none has."""
    by_model: dict[str, list[float]] = {}
    for key, entry in sessions.items():
        if entry.get("validation_accuracy") is not None:
            by_model.setdefault(key.split("/")[0], []).append(float(entry["validation_accuracy"]))
    return {m: round(float(np.mean(v)), 4) for m, v in by_model.items()}


def shortcut_audit(
    train: Dataset,
    test: Dataset,
    *,
    config: Any = None,
    device: str | None = None,
    seeds: Sequence[int] = (99,),
    progress: bool = True,
    test_note: str = "",
    other_tests: Mapping[str, Dataset] | None = None,
    cirrhosis: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """phantom.md section 6: the triphasic model trained and tested with every lesion painted over
    by liver. Its accuracy must stay near the largest class share, or the phantom leaks.

    One model per seed; ``accuracy_without_lesion`` is their median on `test`. A test cohort of
    100 cases gives an accuracy with a standard error of about 0.05, so pass a larger lesion-free
    cohort as `test` and the study's own test cohort among `other_tests`.

    phantom.md lets cirrhosis follow clinical reality (common with A and C), and a cirrhotic
    liver shows around the painted-over lesion, so the background alone tells something. Given
    each image set's cirrhosis flag (`cirrhosis`: "train", "test" and the names of
    `other_tests`), the audit also scores the best rule that knows only that flag: the commonest
    training category of cirrhotic and of normal livers. A model near that rule has learnt the
    background, which is allowed, and nothing else, which is the point of the audit."""
    from livercore.model import predict_proba
    from livercore.train import choose_device, train_model

    pm = PHASE_MODELS["triphasic"]
    tests = {"test": test, **(other_tests or {})}
    accuracy: dict[str, list[float]] = {name: [] for name in tests}
    for seed in seeds:
        result = train_model(
            train.x,
            train.y,
            phase_model=pm,
            config=config or study_config(),
            seed=seed,
            device=choose_device(device),
            progress=progress,
        )
        for name, data in tests.items():
            proba = predict_proba(result.model, data.x)
            accuracy[name].append(float((proba.argmax(1) == data.y).mean()))

    def entry(name: str) -> dict[str, Any]:
        y = tests[name].y
        out = {
            "accuracy_without_lesion": float(np.median(accuracy[name])),
            "accuracy_by_seed": accuracy[name],
            "largest_class_share": float(np.bincount(y, minlength=len(CATEGORIES)).max() / len(y)),
            "n_test": len(y),
        }
        if cirrhosis is not None and name in cirrhosis:
            out["cirrhosis_rule_accuracy"] = background_rule_accuracy(
                train.y, cirrhosis["train"], y, cirrhosis[name]
            )
        return out

    return {
        "model": "triphasic",
        **entry("test"),
        "test": test_note,
        "seeds": list(seeds),
        "other_tests": {name: entry(name) for name in tests if name != "test"},
    }


def background_rule_accuracy(
    y_train: np.ndarray, flag_train: np.ndarray, y_test: np.ndarray, flag_test: np.ndarray
) -> float:
    """Accuracy on the test set of the rule that sees only a binary background flag (cirrhosis)
    and answers the commonest training category for it."""
    flag_train, flag_test = np.asarray(flag_train, bool), np.asarray(flag_test, bool)
    answer = {}
    for value in (False, True):
        counts = np.bincount(y_train[flag_train == value], minlength=len(CATEGORIES))
        answer[value] = int(counts.argmax())
    predicted = np.where(flag_test, answer[True], answer[False])
    return float((predicted == y_test).mean())


def median_session(study_dir: str | os.PathLike[str], model: str) -> int:
    """The session whose test accuracy is the median of the model's sessions (the lower middle
    for an even count; ties broken by the lowest session number)."""
    test = pd.read_csv(Path(study_dir) / "predictions_test.csv")
    acc = (
        test[test.model == model].groupby("session").apply(evaluate.accuracy_score).sort_values(kind="stable")
    )
    return int(acc.index[(len(acc) - 1) // 2])


def ship(
    study_dir: str | os.PathLike[str],
    models_dir: str | os.PathLike[str],
    *,
    train: Dataset | None = None,
    validation: Dataset | None = None,
    train_note: str = "",
    validation_note: str = "",
    in_distribution_rate: float | None = None,
) -> dict[str, int]:
    """Copy each model's median session and the complete study to `models_dir`; with `train` and
    `validation`, then fit and store each shipped model's OOD statistics and temperature
    (fit_ship_statistics). Returns model -> shipped session."""
    src, dst = Path(study_dir), Path(models_dir)
    (dst / "study").mkdir(parents=True, exist_ok=True)
    chosen = {}
    for name in MODEL_NAMES:
        if not (src / "weights" / f"{name}_s1.pt").exists():
            continue
        s = median_session(src, name)
        chosen[name] = s
        shutil.copy(src / "weights" / f"{name}_s{s}.pt", dst / f"{name}.pt")
        card = json.loads((src / "cards" / f"{name}_s{s}.json").read_text())
        card["shipped_as"] = "median-accuracy session of the study in models/study/"
        (dst / f"{name}.json").write_text(json.dumps(card, indent=2))
    for f in ("predictions_test.csv", "predictions_train.csv", "metrics.json"):
        shutil.copy(src / f, dst / "study" / f)
    (dst / "study" / "shipped.json").write_text(json.dumps(chosen, indent=2))
    if train is not None and validation is not None:
        fit_ship_statistics(
            dst,
            train,
            validation,
            train_note=train_note,
            validation_note=validation_note,
            in_distribution_rate=in_distribution_rate,
        )
    return chosen


def fit_ship_statistics(
    models_dir: str | os.PathLike[str],
    train: Dataset,
    validation: Dataset,
    *,
    train_note: str = "",
    validation_note: str = "",
    in_distribution_rate: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Fit and store, in every model file of `models_dir` (`<model>.pt`, rewritten in place with
    its weights unchanged, livercore.model.add_statistics), the class-conditional Mahalanobis
    statistics of its penultimate features on `train`, their threshold at
    `in_distribution_rate` (default ood.IN_DISTRIBUTION_RATE) of `validation`, and the
    temperature fitted on `validation`; record them in its card (`<model>.json` and the file's
    own). With a study in `models_dir/study` (predictions_test.csv and shipped.json), also write
    `study/calibration.json`: per model the temperature, the expected calibration error before
    and after on the validation and the test cohort, and the test cohort's reliability diagrams
    (the results page draws them; the test cohort is only evaluated, never fitted on).
    Returns model -> what its card records."""
    from livercore.calibration import (
        STUDY_FILE,
        TemperatureScaling,
        calibrated_probabilities,
        logits_from_probabilities,
        reliability_diagram,
    )
    from livercore.model import (
        add_statistics,
        load_model,
        predict_logits_and_features,
        select_channels,
        stored_weights_digest,
    )
    from livercore.ood import IN_DISTRIBUTION_RATE, OODStatistics

    rate = IN_DISTRIBUTION_RATE if in_distribution_rate is None else in_distribution_rate
    train_note = train_note or f"{len(train)} training image sets"
    validation_note = validation_note or f"{len(validation)} validation cases"
    root = Path(models_dir)
    out: dict[str, dict[str, Any]] = {}
    temperatures: dict[str, TemperatureScaling] = {}
    for name in MODEL_NAMES:
        path = root / f"{name}.pt"
        if not path.exists():
            continue
        saved = load_model(path)
        pm = saved.phase_model
        _, f_train = predict_logits_and_features(saved.net, select_channels(train.x, pm))
        logits_val, f_val = predict_logits_and_features(saved.net, select_channels(validation.x, pm))
        statistics = OODStatistics.fit(f_train, train.y, fitted_on=train_note, n_classes=len(CATEGORIES))
        statistics = statistics.with_thresholds(f_val, threshold_on=validation_note, rate=rate)
        calibration = TemperatureScaling.fit(logits_val, validation.y, fitted_on=validation_note)
        entry = {
            "calibration": {
                **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in calibration.to_dict().items()},
                "ece_bins": 15,
                "validation_accuracy": float((logits_val.argmax(1) == validation.y).mean()),
            },
            "ood": {
                **statistics.summary(),
                "train_share": float(statistics.within(f_train).mean()),
            },
            "weights_sha256": stored_weights_digest(path),
            "categories": [c.value for c in saved.net.known_categories],
            "training_mix": training_mix(train.y),
        }
        card = {**saved.card, **entry}
        add_statistics(path, path, calibration=calibration, ood=statistics, card=card)
        (root / f"{name}.json").write_text(json.dumps(card, indent=2))
        out[name] = entry
        temperatures[name] = calibration
    study = root / "study"
    if out and (study / "predictions_test.csv").exists() and (study / "shipped.json").exists():
        test = pd.read_csv(study / "predictions_test.csv")
        shipped = json.loads((study / "shipped.json").read_text())
        report: dict[str, Any] = {
            "about": (
                "Temperature scaling per shipped model, fitted on the validation cohort; expected "
                "calibration error (15 equal-width bins of top-label confidence) before and after, "
                "on the validation cohort and on the test cohort's stored predictions of the "
                "shipped session (evaluated only)."
            ),
            "validation_cohort": validation_note,
            "models": {},
        }
        for name, fitted in temperatures.items():
            rows = test[(test.model == name) & (test.session == shipped.get(name))]
            if rows.empty:
                continue
            logits = logits_from_probabilities(rows[PROBABILITY_COLUMNS].to_numpy())
            labels = np.array([CATEGORIES.index(c) for c in rows.category.map(Category)])
            before = reliability_diagram(calibrated_probabilities(logits, 1.0), labels)
            after = reliability_diagram(calibrated_probabilities(logits, fitted.temperature), labels)
            report["models"][name] = {
                "session": shipped[name],
                "temperature": round(fitted.temperature, 4),
                "validation": {
                    "ece_before": round(fitted.ece_before or 0.0, 4),
                    "ece_after": round(fitted.ece_after or 0.0, 4),
                    "n": fitted.n,
                },
                "test": {
                    "accuracy": evaluate.accuracy_score(rows),
                    "ece_before": round(before.ece, 4),
                    "ece_after": round(after.ece, 4),
                    "n": len(rows),
                    "reliability_before": before.to_dict(),
                    "reliability_after": after.to_dict(),
                },
            }
        (study / STUDY_FILE).write_text(json.dumps(report, indent=1))
    return out
