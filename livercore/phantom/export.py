"""Write phantom cohorts in the cohort format (livercore.cohort: DICOM and manifest.csv), and draw
the atlas montage."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from livercore import dicom_io
from livercore.phantom.cohort import Case, cohort_layout, generate_case
from livercore.phantom.lesions import FLAGS
from livercore.vocab import PHASES, SUBTYPE_LABELS, SUBTYPES, Category

MANIFEST_COLUMNS = (
    [
        "case_id",
        "lesion_id",
        "patient_id",
        "cohort",
        "category",
        "subtype",
        "vendor",
        *[p.value for p in PHASES],
    ]
    + [
        f"{what}_{axis}_{p.value}"
        for p in PHASES
        for what in ("lesion", "liver", "aorta")
        for axis in ("row", "col")
    ]
    + ["lesion_diameter_mm", *FLAGS, "cirrhosis", "pixel_spacing_mm", "seed", "index"]
)


def _study_date(cohort: str, index: int) -> str:
    year = {"train-2013": 2013, "test-2016": 2016}.get(cohort, 2020)
    day = index % 365
    month, dom = 1 + day // 31 % 12, 1 + day % 28
    return f"{year}{month:02d}{dom:02d}"


def write_case(case: Case, out_dir: Path) -> dict[str, object]:
    """Write one case as three single-slice CT files under out_dir/<case_id>/; return its manifest row."""
    iset = case.image_set
    case_dir = out_dir / case.case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    study_uid = dicom_io.derive_uid(case.case_id, "study")
    injection = 9 * 3600 + (iset.index * 37) % (8 * 3600)  # between 09:00 and 17:00
    row: dict[str, object] = {
        "case_id": case.case_id,
        "lesion_id": f"{iset.patient_id}-L{iset.lesion}",  # the cohort format: sections of one lesion share it
        "patient_id": iset.patient_id,
        "cohort": case.cohort,
        "category": case.category.value,
        "subtype": case.subtype,
        "vendor": iset.vendor,
    }
    for n, phase in enumerate(PHASES, start=1):
        ds = dicom_io.ct_slice_dataset(
            case.hu[phase],
            phase=phase,
            pixel_spacing_mm=case.spacing_mm,
            slice_thickness_mm=case.thickness_mm[phase],
            patient_id=iset.patient_id,
            study_uid=study_uid,
            series_uid=dicom_io.derive_uid(case.case_id, phase.value),
            study_date=_study_date(case.cohort, iset.index),
            injection_time_s=float(injection),
            manufacturer=case.manufacturer,
            series_number=n,
        )
        path = case_dir / f"{phase.value}.dcm"
        dicom_io.write_dataset(ds, path)
        row[phase.value] = str(path.relative_to(out_dir))
    for phase in PHASES:
        for what, rc in (
            ("lesion", case.lesion_center),
            ("liver", case.liver_center),
            ("aorta", case.aorta_center),
        ):
            row[f"{what}_row_{phase.value}"] = round(float(rc[phase][0]), 2)
            row[f"{what}_col_{phase.value}"] = round(float(rc[phase][1]), 2)
    row["lesion_diameter_mm"] = round(case.lesion_diameter_mm, 2)
    for flag, value in case.flags.items():
        row[flag] = int(value)
    row.update(pixel_spacing_mm=round(case.spacing_mm, 5), seed=case.seed, index=iset.index)
    return row


def _export_chunk(args: tuple[str, int, int | None, list[int], str]) -> list[dict[str, object]]:
    cohort, seed, size, indices, out = args
    return [write_case(generate_case(cohort, seed, i, size), Path(out)) for i in indices]


def export_cohort(
    cohort: str,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    size: int | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Write every case of a cohort as DICOM under out_dir and out_dir/manifest.csv; return the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(cohort_layout(cohort, seed, size))
    workers = workers or min(os.cpu_count() or 1, 8)
    chunks = [list(range(i, n, workers * 4)) for i in range(workers * 4)]
    jobs = [(cohort, seed, size, c, str(out)) for c in chunks if c]
    if workers == 1:
        rows = [r for job in jobs for r in _export_chunk(job)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            rows = [r for part in pool.map(_export_chunk, jobs) for r in part]
    manifest = pd.DataFrame(rows).sort_values("index").reset_index(drop=True)
    manifest = manifest[[c for c in MANIFEST_COLUMNS if c in manifest.columns]]
    manifest.to_csv(out / "manifest.csv", index=False)
    return manifest


def atlas_cases(seed: int = 0) -> Iterator[tuple[Category, str, Case]]:
    """One representative case per category and subtype: of the first few of its kind in an
    atlas cohort (or, for subtypes the test mix lacks, train-2013), the one whose lesion is
    closest to 30 mm, so that its pattern is visible in the montage."""
    sources = [
        ("atlas", cohort_layout("atlas", seed, 400), 400),
        ("train-2013", cohort_layout("train-2013", seed), None),
    ]
    for category, subtypes in SUBTYPES.items():
        for subtype in subtypes:
            for cohort, layout, size in sources:
                matches = [
                    s for s in layout if s.category is category and s.subtype == subtype and s.section == 0
                ][:4]
                if matches:
                    cases = [generate_case(cohort, seed, s.index, size) for s in matches]
                    yield (
                        category,
                        subtype,
                        min(cases, key=lambda c: abs(c.lesion_diameter_mm - 30)),
                    )
                    break


def montage(
    out_file: str | os.PathLike[str], *, seed: int = 0, field_mm: float = 110.0, tile: int = 256
) -> Path:
    """An atlas PNG: one row per category and subtype, the three phases side by side in their
    windows, each a `field_mm` field around the lesion, labelled."""
    from PIL import Image, ImageDraw

    from livercore.preprocess import crop_square, window_to_uint8

    label_w = 330
    rows = []
    for category, subtype, case in atlas_cases(seed):
        side = round(field_mm / case.spacing_mm)
        tiles = []
        for phase in PHASES:
            u8 = window_to_uint8(case.hu[phase], phase.window)
            r, c = case.lesion_center[phase]
            crop = crop_square(u8, r, c, side)
            tiles.append(np.asarray(Image.fromarray(crop).resize((tile, tile), Image.Resampling.BICUBIC)))
        label = Image.new("L", (label_w, tile), 0)
        draw = ImageDraw.Draw(label)
        draw.text((10, 10), f"{category.value}  {category.info.name}", fill=255, font_size=22)
        draw.text((10, 44), SUBTYPE_LABELS[subtype], fill=220, font_size=18)
        draw.text(
            (10, 74),
            f"{case.lesion_diameter_mm:.0f} mm, {case.manufacturer.split()[0].title()}",
            fill=180,
            font_size=16,
        )
        findings = [k.replace("_", " ") for k, v in case.flags.items() if v]
        for i in range(0, min(len(findings), 8), 2):
            draw.text((10, 104 + 13 * i), ", ".join(findings[i : i + 2]), fill=160, font_size=15)
        rows.append(np.hstack([np.asarray(label), *tiles]))
    header = Image.new("L", (label_w + 3 * tile, 40), 0)
    draw = ImageDraw.Draw(header)
    for i, phase in enumerate(PHASES):
        w = phase.window
        draw.text(
            (label_w + i * tile + 10, 10),
            f"{phase.value} (L{w.level:.0f}/W{w.width:.0f})",
            fill=255,
            font_size=20,
        )
    footer = Image.new("L", (label_w + 3 * tile, 30), 0)
    ImageDraw.Draw(footer).text(
        (10, 6),
        f"livercore phantom (synthetic CT), seed {seed}; {field_mm:.0f} mm fields "
        "centred on the lesion. For teaching and research only.",
        fill=200,
        font_size=15,
    )
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.vstack([np.asarray(header), *rows, np.asarray(footer)])).save(out)
    return out
