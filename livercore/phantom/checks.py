"""Quality checks of a cohort measured from its exported DICOM files (phantom.md section 7).

Everything here reads the files a site would see (through the project's DICOM reader), not
the generator's internals: ROI statistics of lesion, liver and aorta at the manifest's
centres, and the noise SD and noise power spectrum of homogeneous liver.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from livercore.dicom_io import read_ct_slice
from livercore.vocab import PHASES

LIVER_ROI_MM = 5.0  # radius
AORTA_ROI_MM = 4.0
LESION_ROI_FRACTION = 0.35  # of the lesion radius: the core, clear of partial volume at the edge
NPS_ROI_PX = 48
NPS_BAND = (0.1, 0.7)  # cycles/mm; below 0.1 real liver carries anatomical texture, not noise


def disk_stats(hu: np.ndarray, row: float, col: float, radius_px: float) -> tuple[float, float]:
    """Mean and SD (HU) inside a disk of `radius_px` around (row, col)."""
    r = max(radius_px, 1.5)
    r0, r1 = int(max(row - r - 1, 0)), int(min(row + r + 2, hu.shape[0]))
    c0, c1 = int(max(col - r - 1, 0)), int(min(col + r + 2, hu.shape[1]))
    yy, xx = np.mgrid[r0:r1, c0:c1]
    inside = (yy - row) ** 2 + (xx - col) ** 2 <= r * r
    values = hu[r0:r1, c0:c1][inside]
    return float(values.mean()), float(values.std())


def roi_table(manifest: pd.DataFrame, root: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per case and phase: lesion, liver and aorta ROI mean (HU) and liver SD."""
    rows = []
    for _, case in manifest.iterrows():
        for phase in PHASES:
            ct = read_ct_slice(Path(root) / case[phase.value])
            sp = ct.pixel_spacing_mm[0]
            ph = phase.value
            lesion_r = LESION_ROI_FRACTION * case["lesion_diameter_mm"] / 2 / sp
            lesion, _ = disk_stats(ct.hu, case[f"lesion_row_{ph}"], case[f"lesion_col_{ph}"], lesion_r)
            liver, liver_sd = disk_stats(
                ct.hu, case[f"liver_row_{ph}"], case[f"liver_col_{ph}"], LIVER_ROI_MM / sp
            )
            aorta, _ = disk_stats(ct.hu, case[f"aorta_row_{ph}"], case[f"aorta_col_{ph}"], AORTA_ROI_MM / sp)
            rows.append(
                {
                    "case_id": case["case_id"],
                    "category": case["category"],
                    "subtype": case["subtype"],
                    "diameter_mm": case["lesion_diameter_mm"],
                    "cirrhosis": case.get("cirrhosis", 0),
                    "necrosis": case.get("necrosis", 0),
                    "phase": ph,
                    "lesion": lesion,
                    "liver": liver,
                    "liver_sd": liver_sd,
                    "aorta": aorta,
                }
            )
    return pd.DataFrame(rows)


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """ROI table with one row per case and columns like lesion_arterial, liver_delayed."""
    out = table.pivot(index="case_id", columns="phase", values=["lesion", "liver", "aorta", "liver_sd"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    meta = table.drop_duplicates("case_id").set_index("case_id")[
        ["category", "subtype", "diameter_mm", "cirrhosis", "necrosis"]
    ]
    return meta.join(out)


def homogeneous_rois(
    hu: np.ndarray, mean_range: tuple[float, float], *, roi: int = NPS_ROI_PX, max_rois: int = 20
) -> list[np.ndarray]:
    """The flattest `roi` x `roi` windows whose mean lies in `mean_range` (HU), quadratic trend removed."""
    cands = []
    lo, hi = mean_range
    for r in range(0, hu.shape[0] - roi, roi // 4):
        for c in range(0, hu.shape[1] - roi, roi // 4):
            p = hu[r : r + roi, c : c + roi]
            m = p.mean()
            if lo < m < hi and p.min() > lo - 60 and p.max() < hi + 60:
                cands.append((p.std(), r, c))
    cands.sort()
    yy, xx = np.mgrid[:roi, :roi] / roi
    basis = np.c_[
        np.ones(roi * roi),
        yy.ravel(),
        xx.ravel(),
        yy.ravel() ** 2,
        xx.ravel() ** 2,
        (yy * xx).ravel(),
    ]
    out: list[np.ndarray] = []
    taken: list[tuple[int, int]] = []
    for _, r, c in cands:
        if any(abs(r - tr) < roi // 2 and abs(c - tc) < roi // 2 for tr, tc in taken):
            continue  # keep ROIs mostly independent
        p = hu[r : r + roi, c : c + roi].astype(np.float64)
        coef, *_ = np.linalg.lstsq(basis, p.ravel(), rcond=None)
        out.append(p - (basis @ coef).reshape(roi, roi))
        taken.append((r, c))
        if len(out) == max_rois:
            break
    return out


def noise_power_spectrum(rois: list[np.ndarray], spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged 2D NPS (HU^2 mm^2) of detrended ROIs: (frequencies in cycles/mm, NPS)."""
    roi = rois[0].shape[0]
    nps = np.mean([np.abs(np.fft.fft2(r)) ** 2 for r in rois], axis=0) * spacing_mm**2 / roi**2
    f = np.fft.fftfreq(roi, d=spacing_mm)
    fr = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    edges = np.arange(0, fr.max() + 0.05, 0.05)
    idx = np.digitize(fr.ravel(), edges) - 1
    prof = np.array([nps.ravel()[idx == i].mean() for i in range(len(edges) - 1)])
    return (edges[:-1] + edges[1:]) / 2, prof


def noise_summary(hu: np.ndarray, spacing_mm: float, mean_range: tuple[float, float]) -> dict[str, float]:
    """Noise SD (HU) of homogeneous liver and the NPS peak and centroid (cycles/mm) in NPS_BAND."""
    rois = homogeneous_rois(hu, mean_range)
    if not rois:
        return {
            "sd": float("nan"),
            "nps_peak": float("nan"),
            "nps_centroid": float("nan"),
            "rois": 0,
        }
    f, nps = noise_power_spectrum(rois, spacing_mm)
    band = (f >= NPS_BAND[0]) & (f <= NPS_BAND[1])
    return {
        "sd": float(np.median([r.std() for r in rois])),
        "nps_peak": float(f[band][np.argmax(nps[band])]),
        "nps_centroid": float((f[band] * nps[band]).sum() / nps[band].sum()),
        "rois": len(rois),
    }
