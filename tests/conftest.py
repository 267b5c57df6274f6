"""Shared fixtures: a small phantom cohort exported once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.browser_harness import CHROMIUM, launch, running_app, write_untrained_models

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_CT = SHARED / "data" / "real-ct" / "HCC048"  # CC BY 4.0, HCC-TACE-Seg (TCIA), see its ATTRIBUTION.md


@pytest.fixture(scope="session")
def exported_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A 60-patient cohort with the test-2016 mix, written as DICOM by the package's exporter."""
    from livercore.phantom.export import export_cohort

    out = tmp_path_factory.mktemp("cohort")
    manifest = export_cohort("qa-check", out, seed=3, size=60, workers=2)
    return out, manifest


@pytest.fixture(scope="module")
def playwright_api() -> Iterator[Any]:
    """Playwright's sync API over Debian's chromium; the test is skipped when either is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, playwright_api: Any) -> Iterator[str]:
    """`streamlit run streamlit_app.py` on untrained models (same network and cost), per module."""
    with running_app(write_untrained_models(tmp_path_factory.mktemp("models"))) as (url, _):
        yield url


@pytest.fixture()
def page(playwright_api: Any) -> Iterator[Any]:
    """A fresh chromium page of 1500 x 1100."""
    browser = launch(playwright_api)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    yield page
    browser.close()
