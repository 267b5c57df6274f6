"""Phantom export speed: test-2016 and train-2013 as DICOM with manifests, all cores.

python benchmarks/bench_phantom.py   ->  benchmarks/results/phantom_export.json
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from livercore.phantom.export import export_cohort


def main() -> dict:
    result: dict = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg()[0],
    }
    for cohort in ("test-2016", "train-2013"):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            manifest = export_cohort(cohort, tmp)
            seconds = time.perf_counter() - t
            files = sum(1 for _ in Path(tmp).rglob("*.dcm"))
        result[cohort] = {"cases": len(manifest), "dicom_files": files, "seconds": round(seconds, 1)}
        print(cohort, result[cohort], flush=True)
    out = Path(__file__).parent / "results" / "phantom_export.json"
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
