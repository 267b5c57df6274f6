"""Shared fixtures: a small phantom cohort exported once per test session."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_CT = (
    SHARED / "data" / "real-ct" / "HCC048"
)  # CC BY 4.0, HCC-TACE-Seg (TCIA), see its ATTRIBUTION.md


@pytest.fixture(scope="session")
def exported_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A 60-patient cohort with the test-2016 mix, written as DICOM by the package's exporter."""
    from livercore.phantom.export import export_cohort

    out = tmp_path_factory.mktemp("cohort")
    manifest = export_cohort("qa-check", out, seed=3, size=60, workers=2)
    return out, manifest
