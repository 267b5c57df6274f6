"""Multiphase liver CT benchmarks held as NIfTI volumes with a lesion mask (nibabel), to lesions.

The folder layout (`NiftiLayout`, every name configurable; the defaults shown)::

    COHORT/
      labels.csv                  case_id, label (the benchmark's own, e.g. "HCC"), optional
                                  category (A-E) and subtype, which override the mapping
      <case_id>/
        unenhanced.nii.gz         one volume per phase, in HU ("{phase}" in the pattern)
        arterial.nii.gz
        delayed.nii.gz            (a portal-venous file may play the delayed phase: name it so)
        mask.nii.gz               the lesion label mask (> 0), in the space of `mask_phase`

Each lesion's largest section in the mask (its area, the paper's choice for testing) gives
the lesion's centre and diameter (the equivalent diameter of that section's area, mm); the
centre is carried to the other phases through patient coordinates (each volume's affine), so
volumes of different fields of view or origins line up. The benchmark's labels map to the
paper's categories by `LABEL_CATEGORIES` (documented in the README); a cohort without some
categories is fine downstream (the study counts what it has).

`import_cohort` writes the lesions as the cohort format livercore already trains on: three
single-slice CT files per lesion and a manifest (livercore.dataset.from_manifest), without the
source's identifiers (synthetic ids, the cohort's own case ids, no dates of birth or names).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from livercore import dicom_io
from livercore.errors import InputError
from livercore.vocab import CATEGORIES, PHASES, Category, Phase

# The benchmarks' own diagnoses -> the paper's categories and subtypes (lower-case, trimmed).
# MCT-LTDiag: HCC, intrahepatic cholangiocarcinoma, colorectal and breast metastases,
# haemangioma; AMPLIFAI and TriALS: HCC and other focal liver lesions. A label not listed
# here needs an explicit category in labels.csv.
LABEL_CATEGORIES: dict[str, tuple[Category, str]] = {
    "hcc": (Category.A, "histology"),
    "hepatocellular carcinoma": (Category.A, "histology"),
    "icc": (Category.B, "icc"),
    "cholangiocarcinoma": (Category.B, "icc"),
    "intrahepatic cholangiocarcinoma": (Category.B, "icc"),
    "combined hcc-icc": (Category.B, "combined_hcc_icc"),
    "colorectal metastasis": (Category.B, "colorectal_metastasis"),
    "crlm": (Category.B, "colorectal_metastasis"),
    "breast metastasis": (Category.B, "other_malignant"),
    "metastasis": (Category.B, "other_malignant"),
    "dysplastic nodule": (Category.C, "hypovascular"),
    "fnh": (Category.C, "other_benign"),
    "adenoma": (Category.C, "other_benign"),
    "haemangioma": (Category.D, "typical"),
    "hemangioma": (Category.D, "typical"),
    "cyst": (Category.E, "simple_cyst"),
}
LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class NiftiLayout:
    """Where a case's files are: ``{case}`` and ``{phase}`` are filled in (the phase's file name
    in `phase_names`)."""

    volume_pattern: str = "{case}/{phase}.nii.gz"
    mask_pattern: str = "{case}/mask.nii.gz"
    mask_phase: Phase = Phase.ARTERIAL  # the phase the mask was drawn on
    phase_names: Mapping[Phase, str] = field(
        default_factory=lambda: {p: p.value for p in PHASES}
    )  # e.g. {DELAYED: "portal"} when the portal-venous phase plays "delayed"


@dataclass(frozen=True, eq=False)
class ImportedLesion:
    """One lesion of a benchmark case at its largest section, in every phase."""

    case_id: str
    category: Category
    subtype: str
    label: str  # the benchmark's own diagnosis
    sections: dict[Phase, np.ndarray]  # (H, W) float32 HU: the lesion's section in each phase
    spacing_mm: dict[Phase, float]  # in-plane pixel spacing
    centre: dict[Phase, tuple[float, float]]  # (row, col) in each phase's section
    diameter_mm: float


def category_of(label: str, category: object = None, subtype: object = None) -> tuple[Category, str]:
    """The paper's category and subtype for a benchmark label (an explicit category wins)."""
    if isinstance(category, str) and category.strip():
        try:
            chosen = Category(category.strip().upper())
        except ValueError:
            raise InputError(f"labels.csv has category {category!r}; expected A, B, C, D or E.") from None
        return chosen, subtype.strip() if isinstance(subtype, str) else ""
    key = str(label).strip().lower()
    if key not in LABEL_CATEGORIES:
        raise InputError(
            f"The label {str(label)[:40]!r} has no category: add it to LABEL_CATEGORIES or give a "
            "category (A-E) in labels.csv."
        )
    return LABEL_CATEGORIES[key]


def _load(path: Path):  # -> nibabel image, reoriented to RAS+ (nibabel.as_closest_canonical)
    import nibabel as nib

    if not path.is_file():
        raise InputError(f"{path.name} is missing for this case.")
    try:
        return nib.as_closest_canonical(nib.load(str(path)))
    except Exception as err:  # nibabel raises ImageFileError, OSError, EOFError, ...
        raise InputError(f"{path.name} could not be read as NIfTI.") from err


def _axial(data: np.ndarray, k: int) -> np.ndarray:
    """Section k of a RAS+ (X, Y, Z) array as an (H, W) image the way CT is read (DICOM's
    convention): rows from anterior to posterior, columns from the patient's right to left."""
    return np.ascontiguousarray(data[::-1, ::-1, k].T)


def _display_rc(ijk: np.ndarray, shape: tuple[int, ...]) -> tuple[float, float]:
    """(row, col) in _axial's image of the RAS+ voxel (i, j, k)."""
    return float(shape[1] - 1 - ijk[1]), float(shape[0] - 1 - ijk[0])


def read_lesion(
    root: Path, case_id: str, label: str, category: Category, subtype: str, layout: NiftiLayout
) -> ImportedLesion:
    """The lesion of one case: its largest mask section, centre and diameter, in every phase."""
    mask_img = _load(root / layout.mask_pattern.format(case=case_id))
    mask = np.asarray(mask_img.dataobj) > 0
    if mask.ndim != 3 or not mask.any():
        raise InputError(f"Case {case_id}: the mask marks no lesion.")
    areas = mask.sum(axis=(0, 1))
    k = int(np.argmax(areas))
    i, j = np.nonzero(mask[:, :, k])
    voxel = np.array([i.mean(), j.mean(), k, 1.0])
    world = mask_img.affine @ voxel
    zooms = mask_img.header.get_zooms()
    diameter = float(2 * np.sqrt(areas[k] * zooms[0] * zooms[1] / np.pi))
    sections, spacing, centre = {}, {}, {}
    for phase in PHASES:
        name = layout.phase_names.get(phase, phase.value)
        img = _load(root / layout.volume_pattern.format(case=case_id, phase=name))
        if img.ndim != 3:
            raise InputError(f"Case {case_id}: the {name} volume is not 3-D.")
        there = np.linalg.inv(img.affine) @ world
        kk = round(float(there[2]))
        if not 0 <= kk < img.shape[2]:
            raise InputError(f"Case {case_id}: the lesion lies outside the {name} volume.")
        data = np.asarray(img.dataobj, dtype=np.float32)
        sections[phase] = _axial(data, kk)
        spacing[phase] = float(img.header.get_zooms()[1])
        centre[phase] = _display_rc(there, img.shape)
    return ImportedLesion(case_id, category, subtype, label, sections, spacing, centre, diameter)


def read_cohort(folder: str | os.PathLike[str], layout: NiftiLayout | None = None) -> list[ImportedLesion]:
    """Every case of labels.csv as an ImportedLesion (InputError, a sentence, on the first
    case that cannot be read, naming it)."""
    root = Path(folder)
    layout = layout or NiftiLayout()
    path = root / LABELS_FILE
    if not path.is_file():
        raise InputError(f"{root} has no {LABELS_FILE} (case_id, label[, category, subtype]).")
    labels = pd.read_csv(path, dtype=str)
    missing = [c for c in ("case_id", "label") if c not in labels.columns]
    if missing:
        raise InputError(f"{LABELS_FILE} lacks the column(s): {', '.join(missing)}.")
    out = []
    for r in labels.itertuples(index=False):
        row = r._asdict()
        category, subtype = category_of(row["label"], row.get("category"), row.get("subtype"))
        out.append(read_lesion(root, str(row["case_id"]), str(row["label"]), category, subtype, layout))
    return out


def import_cohort(
    folder: str | os.PathLike[str], out: str | os.PathLike[str], layout: NiftiLayout | None = None
) -> pd.DataFrame:
    """Write a benchmark as livercore's cohort format (three single-slice CT files per lesion and
    out/manifest.csv, as the phantom export writes), read back by `livercore study run --train`."""
    lesions = read_cohort(folder, layout)
    root = Path(out)
    rows = []
    for n, lesion in enumerate(lesions, start=1):
        case_dir = root / lesion.case_id
        case_dir.mkdir(parents=True, exist_ok=True)
        row: dict[str, object] = {
            "case_id": lesion.case_id,
            "patient_id": f"IMPORT{n:05d}",
            "cohort": Path(folder).name,
            "category": lesion.category.value,
            "subtype": lesion.subtype,
            "label": lesion.label,
        }
        for s, phase in enumerate(PHASES, start=1):
            ds = dicom_io.ct_slice_dataset(
                lesion.sections[phase],
                phase=phase,
                pixel_spacing_mm=lesion.spacing_mm[phase],
                slice_thickness_mm=lesion.spacing_mm[phase],
                patient_id=str(row["patient_id"]),
                study_uid=dicom_io.derive_uid(str(row["cohort"]), lesion.case_id),
                series_uid=dicom_io.derive_uid(str(row["cohort"]), lesion.case_id, phase.value),
                study_date="20000101",
                injection_time_s=36_000.0,
                manufacturer="",
                series_number=s,
            )
            dicom_io.write_dataset(ds, case_dir / f"{phase.value}.dcm")
            row[phase.value] = f"{lesion.case_id}/{phase.value}.dcm"
            row[f"lesion_row_{phase.value}"], row[f"lesion_col_{phase.value}"] = (
                round(lesion.centre[phase][0], 2),
                round(lesion.centre[phase][1], 2),
            )
        row["lesion_diameter_mm"] = round(lesion.diameter_mm, 2)
        rows.append(row)
    manifest = pd.DataFrame(rows)
    manifest.to_csv(root / "manifest.csv", index=False)
    return manifest


def absent_categories(manifest: pd.DataFrame) -> list[Category]:
    """The paper's categories an imported cohort has no lesion of."""
    present = set(manifest["category"].astype(str))
    return [c for c in CATEGORIES if c.value not in present]
