"""Real CT on the Review page in a real browser: Debian's chromium driven by Playwright.

The 16 portal-venous HCC048 slices (HCC-TACE-Seg, The Cancer Imaging Archive, CC BY 4.0; see
ATTRIBUTION.md beside them) go in as the series of every phase: the aorta must be found on them
and the phase check say that the three are one phase; a lesion box in the liver must give a
liver ring of portal-venous parenchyma. Skipped cleanly when /usr/bin/chromium, the playwright
package or the slices are missing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser_harness import (
    _CONTRIBUTION_BARS,
    PREDICTION_IMAGES,
    crop_sources,
    draw_box,
    full_page_screenshot,
    upload_series_as_every_phase,
    wait_settled,
)
from tests.conftest import REAL_CT

REAL_SLICES = sorted(REAL_CT.glob("slice_*.dcm"))
SPACING_MM = 0.703125
# The series' middle slice (8 of 16: slice_07.dcm, the page's first view): a 2 cm lesion box in
# the right lobe's parenchyma, (row, col) read by eye off the slice rendered as PNG.
LIVER_BOX = (210.0, 170.0)


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(len(REAL_SLICES) != 16, reason="real CT slices not available"),
]


def table_row(page: Any, label: str) -> list[str]:
    """The cells of the attenuation table's row whose first cell is `label`."""
    row = page.locator("[data-testid=stTable] tr", has_text=label).first
    return [c.strip() for c in row.locator("th, td").all_inner_texts()]


def mean_hu(cell: str) -> float:
    """The mean of a 'mean ± SD' cell."""
    found = re.fullmatch(r"(-?\d+) ± (\d+)", cell)
    assert found is not None, cell
    return float(found.group(1))


def test_real_series_as_every_phase_finds_the_aorta_and_measures_the_liver_ring(
    app_url: str, page: Any, tmp_path: Path
) -> None:
    page.goto(f"{app_url}/review")
    page.wait_for_selector("text=Review a lesion", timeout=60_000)
    upload_series_as_every_phase(page, REAL_SLICES)
    page.wait_for_selector("text=Uploaded DICOM series", timeout=90_000)
    assert page.get_by_text("slice 8 of 16").count() == 3  # the same slice in every phase

    # The phase check ran on the aorta it found: one attenuation in all three images.
    assert page.get_by_text("not found automatically").count() == 0
    check = page.get_by_text("Phase check. Aorta:").first.inner_text()
    said = re.search(r"same aortic attenuation \(about (\d+) HU\), so they look like one phase", check)
    assert said is not None, check
    assert 150 < int(said.group(1)) < 300  # the portal-venous aorta, about 230 HU
    assert page.get_by_role("button", name="Use the order the aorta suggests").count() == 0

    row, col = LIVER_BOX
    draw_box(page, 1, row, col, 10.0 / SPACING_MM)
    page.wait_for_selector("text=Liver (ring around the lesion)", timeout=60_000)
    wait_settled(page)
    liver = table_row(page, "Liver (ring around the lesion)")
    aorta = table_row(page, "Aorta")
    assert all(90 <= mean_hu(c) <= 115 for c in liver[-3:]), liver  # one cell per phase
    assert all(150 < mean_hu(c) < 300 for c in aorta[-3:]), aorta
    # the prediction on real CT: one CAM, and the triphasic model's bars, one per phase
    page.wait_for_selector("text=Triphasic model:", timeout=60_000)
    wait_settled(page, PREDICTION_IMAGES)
    assert len(crop_sources(page)) == PREDICTION_IMAGES
    assert page.evaluate(_CONTRIBUTION_BARS) == ["unenhanced", "arterial", "delayed"]
    full_page_screenshot(page, tmp_path / "review-real-ct.png")
