"""Importing phantom volume cohorts the way real data comes: wall time, peak memory, accuracy.

python benchmarks/bench_import.py [--cases 200]  ->  benchmarks/results/import.json

The phantom writes N cases as a PACS export (three DICOM series and a DICOM SEG per case, and a
points file) and as a NIfTI benchmark (`livercore.phantom.export_volumes`); each import then
runs in its own process (`livercore cohort import`, breath-hold refinement on), so its peak
resident memory (ru_maxrss) is its own. Then a triphasic model is trained on the phantom's
direct export of the same cases (its truth, `export_volumes(formats=("cohort",))`) and on each
imported cohort, with one seed and recipe, and tested on test-2016. Each import also runs on the first quarter of the
cases: an import that streams one study at a time has the same peak whatever the cohort's
size. The imported lesions are scored against the phantom's truth (truth.csv): the largest
section's centre in each phase (px) and the breath-hold shift (px in plane, sections in z).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results" / "import.json"
IMPORTS = {
    "dicom_seg": ["dicom", "--labels", "{labels}"],
    "dicom_points": ["dicom", "--points", "{points}"],
    "nifti": ["nifti"],
}


def run_import(name: str, source: Path, out: Path, labels: Path, points: Path) -> dict:
    """One `livercore cohort import` in a child process: wall seconds and its peak RSS (MiB)."""
    kind, *extra = IMPORTS[name]
    folder = source / ("nifti" if kind == "nifti" else "dicom")
    args = [a.format(labels=labels, points=points) for a in extra]
    code = (
        "import resource, sys; from livercore.cli import main; rc = main(sys.argv[1:]); "
        "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    argv = ["cohort", "import", str(folder), "--out", str(out), "--format", kind, *args]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    rss = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("maxrss_kib"))
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(rss / 1024, 1),
        "log": done.stdout.splitlines()[:4],
    }


def score(cohort_dir: Path, truth: pd.DataFrame, spacing: pd.Series) -> dict:
    """Largest-section centres and shifts of an imported cohort against the phantom's truth."""
    from livercore.cohort import largest_sections, read_manifest
    from livercore.vocab import PHASES, Phase

    rows = largest_sections(read_manifest(cohort_dir)).set_index("lesion_id")
    centre, shift_xy, shift_z = [], [], []
    for case_id, t in truth.set_index("case_id").iterrows():
        if case_id not in rows.index:
            continue
        r = rows.loc[case_id]
        sp = float(spacing[case_id])
        for p in PHASES:
            v = p.value
            centre.append(
                np.hypot(
                    r[f"lesion_row_{v}"] - t[f"lesion_row_{v}"], r[f"lesion_col_{v}"] - t[f"lesion_col_{v}"]
                )
            )
            if p is Phase.ARTERIAL:
                continue
            shift_xy.append(max(abs(r[f"shift_{a}_mm_{v}"] - t[f"shift_{a}_mm_{v}"]) for a in "xy") / sp)
            shift_z.append(abs(r[f"shift_z_mm_{v}"] - t[f"shift_z_mm_{v}"]) / t["section_mm_arterial"])
    centre_px, xy, z = np.array(centre), np.array(shift_xy), np.array(shift_z)
    return {
        "lesions": len(rows),
        "centre_within_1_5_px": round(float((centre_px <= 1.5).mean()), 3),
        "centre_error_px_median_max": [
            round(float(np.median(centre_px)), 2),
            round(float(centre_px.max()), 2),
        ],
        "shift_in_plane_within_1_px": round(float((xy <= 1).mean()), 3),
        "shift_z_within_1_section": round(float((z <= 1).mean()), 3),
        "flagged_for_review": int((rows.get("review", pd.Series(dtype=str)).fillna("") != "").sum()),
    }


def compare_studies(cohorts: dict[str, Path], variants: int) -> dict:
    """A triphasic model trained (same seed, same recipe) on the direct export and on each
    imported cohort, tested on test-2016: accuracy and the gap to the direct export."""
    from dataclasses import replace

    from livercore.dataset import from_manifest, from_phantom
    from livercore.model import predict_proba
    from livercore.study import study_config
    from livercore.train import train_model
    from livercore.vocab import PHASE_MODELS

    test = from_phantom("test-2016")
    config = replace(study_config(), variants_per_image=variants)
    out: dict = {"model": "triphasic", "variants_per_image": variants, "test": "test-2016 (100 cases)"}
    for name, folder in cohorts.items():
        data = from_manifest(folder)
        start = time.perf_counter()
        trained = train_model(
            data.x, data.y, phase_model=PHASE_MODELS["triphasic"], config=config, seed=1000, progress=False
        )
        accuracy = float((predict_proba(trained.model, test.x).argmax(1) == test.y).mean())
        out[name] = {
            "image_sets": len(data),
            "test_accuracy": round(accuracy, 3),
            "train_seconds": round(time.perf_counter() - start, 1),
        }
        print("study", name, out[name], flush=True)
    for name in cohorts:
        if name != "direct":
            out[name]["gap_to_direct"] = round(out[name]["test_accuracy"] - out["direct"]["test_accuracy"], 3)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--variants", type=int, default=24, help="training passes of the study comparison (0: none)"
    )
    args = parser.parse_args(argv)
    from livercore.phantom import export_volumes

    result: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": round(os.getloadavg()[0], 2),
        "cases": args.cases,
    }
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        start = time.perf_counter()
        export_volumes(
            "import-bench", src, seed=args.seed, size=args.cases, formats=("dicom", "nifti", "cohort")
        )
        result["export_seconds"] = round(time.perf_counter() - start, 1)
        truth = pd.read_csv(src / "truth.csv", dtype={"case_id": str})
        spacing = truth.set_index("case_id")["pixel_spacing_mm"]
        labels, points = src / "nifti" / "labels.csv", src / "dicom" / "points.csv"
        quarter = max(1, args.cases // 4)
        small = Path(tmp) / "small"
        small.mkdir()
        pd.read_csv(labels).head(quarter).to_csv(small / "labels.csv", index=False)
        pd.read_csv(points).head(quarter).to_csv(small / "points.csv", index=False)
        for name in IMPORTS:
            out = Path(tmp) / name
            entry = run_import(name, src, out, labels, points)
            entry["cases_per_s"] = round(args.cases / entry["seconds"], 2)
            entry.update(score(out, truth, spacing))
            if name != "nifti":  # a quarter of the cases, for the memory comparison
                few = run_import(
                    name, src, Path(tmp) / f"{name}-few", small / "labels.csv", small / "points.csv"
                )
                entry[f"peak_rss_mib_{quarter}_cases"] = few["peak_rss_mib"]
            result[name] = entry
            print(name, {k: v for k, v in entry.items() if k != "log"}, flush=True)
        if args.variants:
            result["study"] = compare_studies(
                {"direct": src / "cohort", **{name: Path(tmp) / name for name in IMPORTS}}, args.variants
            )
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    result["peak_rss_bench_process_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    RESULTS.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
