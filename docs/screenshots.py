"""Screenshots of the review page on the shipped models, for docs/: a phantom example case and
the real HCC048 portal-venous series uploaded as every phase.

    python docs/screenshots.py

Needs Debian's chromium and the Playwright package (as the browser tests), and
../shared/data/real-ct/HCC048 for the second picture. The real series has no lesion mask: the
box is placed in the right lobe's parenchyma, to show what the page does with real CT, not a
diagnosis.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser_harness import (  # noqa: E402  (the repository root must be on the path first)
    PREDICTION_IMAGES,
    VIEWERS_READY,
    draw_box,
    full_page_screenshot,
    launch,
    running_app,
    wait_settled,
)
from tests.conftest import REAL_CT  # noqa: E402

PHANTOM_CASE = "teaching-0-0026"  # example case 7: a 38 mm classic HCC
REAL_BOX = (210.0, 170.0, 10.0 / 0.703125)  # row, col, half side (px): 2 cm in the right lobe
WIDTH = 1280


def main() -> int:
    from playwright.sync_api import sync_playwright

    with running_app(ROOT / "models") as (url, _), sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        page.goto(f"{url}/review?case={PHANTOM_CASE}")
        page.wait_for_selector("text=Triphasic model:", timeout=120_000)
        wait_settled(page, PREDICTION_IMAGES)
        full_page_screenshot(page, ROOT / "docs" / "review-phantom.png", width=WIDTH)

        slices = sorted(REAL_CT.glob("slice_*.dcm"))
        if len(slices) == 16:
            page.goto(f"{url}/review")
            page.wait_for_selector("text=Review a lesion", timeout=60_000)
            page.get_by_text("A DICOM series per phase").click()
            inputs = page.locator("[data-testid=stFileUploaderDropzoneInput]")
            inputs.nth(2).wait_for(state="attached", timeout=60_000)
            for k in range(3):
                inputs.nth(k).set_input_files([str(f) for f in slices])
                page.wait_for_function(
                    "(k) => document.querySelectorAll('[data-testid=stFileUploader]')[k]"
                    ".innerText.includes('slice_00.dcm')",
                    arg=k,
                    timeout=60_000,
                )
                wait_settled(page)
            page.wait_for_function(VIEWERS_READY, timeout=60_000)
            wait_settled(page)
            row, col, half = REAL_BOX
            draw_box(page, 1, row, col, half)
            page.wait_for_selector("text=Triphasic model:", timeout=60_000)
            wait_settled(page, PREDICTION_IMAGES)
            full_page_screenshot(page, ROOT / "docs" / "review-real-ct.png", width=WIDTH)
        else:
            print(f"no real CT at {REAL_CT}: only the phantom screenshot was taken")
        browser.close()
    print("wrote docs/review-phantom.png" + (" and docs/review-real-ct.png" if len(slices) == 16 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
