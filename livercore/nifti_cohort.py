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

`read_case` gives a case's volumes in patient space (each file's affine, LPS mm, displayed as
CT is read) and its mask on the annotated phase's grid; livercore.cohort_import takes the
largest lesion of the mask, carries it to the other phases through patient coordinates (so
volumes of different fields of view or origins line up), refines it for breath-hold shift and
writes the cohort format. The benchmark's labels map to the paper's categories by
`LABEL_CATEGORIES` (documented in the README); a cohort without some categories is fine
downstream (the study counts what it has).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from livercore.dicom_study import MAX_VOLUME_VOXELS, SeriesVolume
from livercore.errors import InputError
from livercore.vocab import PHASES, Category, Phase

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


# (section, row, col) of the volume -> (i, j, k) of a RAS+ array of shape (I, J, K): sections
# run inferior to superior, rows anterior to posterior, columns from the patient's right to
# left, the way CT is read (DICOM's convention).
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_volume(path: Path, *, kind: str | None = None) -> SeriesVolume:
    """A NIfTI volume as a SeriesVolume in patient space (LPS mm), displayed as CT is read;
    InputError (a sentence) for a file that is not a readable 3-D volume or is too large."""
    img = _load(path)
    if len(img.shape) != 3:
        raise InputError(f"{path.name} is not a 3-D volume.")
    i, j, k = img.shape
    if i * j * k > MAX_VOLUME_VOXELS:
        raise InputError(f"{path.name} has {i} x {j} x {k} voxels, more than one import reads.")
    data = np.asarray(img.dataobj, dtype=np.float32)
    hu = data[::-1, ::-1, :].transpose(2, 1, 0)
    to_ijk = np.array(
        [[0.0, 0.0, -1.0, i - 1], [0.0, -1.0, 0.0, j - 1], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )
    affine = _RAS_TO_LPS @ img.affine @ to_ijk
    return SeriesVolume.from_affine(hu, affine, name=path.name, kind=kind)


def read_case(root: Path, case_id: str, layout: NiftiLayout) -> tuple[dict[Phase, SeriesVolume], np.ndarray]:
    """One case's three phase volumes and its lesion mask on the grid of `layout.mask_phase`
    (resampled through patient coordinates when the mask has another grid)."""
    volumes = {
        p: read_volume(
            root / layout.volume_pattern.format(case=case_id, phase=layout.phase_names.get(p, p.value)),
            kind=p.value,
        )
        for p in PHASES
    }
    mask = read_volume(root / layout.mask_pattern.format(case=case_id))
    reference = volumes[layout.mask_phase]
    same_grid = mask.hu.shape == reference.hu.shape and np.allclose(mask.affine, reference.affine, atol=1e-3)
    return volumes, (mask.hu if same_grid else mask.resample_onto(reference))
