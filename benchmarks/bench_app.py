"""Browser timings of the app: `python benchmarks/bench_app.py [--repeats 7]`.

1. Time to first page: from `streamlit run` to the home page fully drawn in chromium
   (target <= 3 s, issue 16).
2. Lesion selection to prediction: from releasing the mouse after drawing a lesion box on the
   arterial viewer to the new crops, the five models' probabilities (the triphasic model's
   chart, the five-model agreement line) and the triphasic CAMs all on screen (target: median
   <= 0.5 s, issue 16; every selection computes all five models and their CAMs).
3. The compare page: from clicking its link to all five models' CAMs on screen.

Uses the models in $LIVERCORE_MODELS or models/ when there are any, else untrained ones (same
network, same cost). Writes benchmarks/results/app.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser_harness import (  # noqa: E402  (the repository root must be on the path first)
    COMPARE_IMAGES,
    NEW_PREDICTION,
    PREDICTION_IMAGES,
    crop_sources,
    draw_box,
    free_port,
    launch,
    start_server,
    stop_server,
    upload_dicom,
    wait_settled,
)

TARGET_FIRST_PAGE_S = 3.0
TARGET_SELECTION_S = 0.5


def models_folder(tmp: Path) -> tuple[Path, str]:
    for candidate in (os.environ.get("LIVERCORE_MODELS"), str(ROOT / "models")):
        if candidate and any(Path(candidate).glob("*.pt")):
            return Path(candidate), f"installed models ({candidate})"
    from tests.browser_harness import write_untrained_models

    return write_untrained_models(tmp / "models"), "untrained models (same network and cost as trained ones)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the app in chromium.")
    parser.add_argument("--repeats", type=int, default=7, help="lesion selections to time (default 7)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app.json"))
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server on CPU 0, chromium (and this script) on CPU 1 (taskset): the server's own figures",
    )
    args = parser.parse_args(argv)
    if args.pin:
        os.sched_setaffinity(0, {1})  # chromium, started below, inherits it

    from playwright.sync_api import sync_playwright

    from livercore.phantom.cohort import generate_case
    from livercore.phantom.export import write_case
    from livercore.vocab import Phase

    tmp = Path(tempfile.mkdtemp(prefix="livercore-bench-"))
    models, models_note = models_folder(tmp)
    case = generate_case("test-2016", 0, 3)
    row = write_case(case, tmp / "case")
    files = sorted(tmp / "case" / str(row[p.value]) for p in Phase)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        start = time.perf_counter()
        server = start_server(models, port, cores="0" if args.pin else None)
        try:
            while True:
                try:
                    page.goto(url, timeout=2000)
                    break
                except Exception:  # connection refused until the server listens
                    if time.perf_counter() - start > 60:
                        raise
                    time.sleep(0.05)
            page.wait_for_selector("text=Where to start", timeout=60_000)
            page.wait_for_selector("text=Example cases", timeout=60_000)
            wait_settled(page)
            first_page_s = time.perf_counter() - start

            page.goto(f"{url}/review")
            page.wait_for_selector("text=Review a lesion", timeout=60_000)
            upload_dicom(page, files)
            row_c, col_c = case.lesion_center[Phase.ARTERIAL]
            half = case.lesion_diameter_mm / case.spacing_mm / 2 * 1.1
            timings = []
            for i in range(args.repeats + 1):
                old = crop_sources(page) or [""]
                shift = (i % 4) * 2 - 3  # a slightly different box each time: new crops, no cache hit
                draw_box(page, 1, row_c + shift, col_c - shift, half + i % 3, release=False)
                t0 = time.perf_counter()
                page.mouse.up()
                page.wait_for_function(
                    NEW_PREDICTION, arg=[old[0], PREDICTION_IMAGES], timeout=60_000, polling=10
                )
                timings.append(time.perf_counter() - t0)
            first_selection_s, selections = timings[0], timings[1:]

            t0 = time.perf_counter()
            page.get_by_role("link", name="Compare all five phase-models on this lesion").click()
            page.wait_for_selector("text=Where each model looks", timeout=60_000)
            wait_settled(page, COMPARE_IMAGES)
            compare_s = time.perf_counter() - t0
        finally:
            stop_server(server)
            browser.close()

    import streamlit
    import torch

    result = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "streamlit": streamlit.__version__,
            "torch": torch.__version__,
        },
        "browser": "Debian chromium, headless, --disable-gpu",
        "models": models_note,
        "time_to_first_page_s": round(first_page_s, 2),
        "time_to_first_page_target_s": TARGET_FIRST_PAGE_S,
        "selection_to_prediction_s": {
            "median": round(statistics.median(selections), 3),
            "max": round(max(selections), 3),
            "all": [round(t, 3) for t in selections],
            "first_after_upload": round(first_selection_s, 3),
        },
        "selection_to_prediction_target_s": TARGET_SELECTION_S,
        "compare_page_s": round(compare_s, 2),
        "meets_targets": first_page_s <= TARGET_FIRST_PAGE_S
        and statistics.median(selections) <= TARGET_SELECTION_S,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
