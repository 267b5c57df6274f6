"""Network-ready arrays from a phantom cohort or from a site's own DICOM manifest.

Both paths run the same preprocessing (`livercore.preprocess.preprocess_case`) with the lesion
box taken from the ground-truth centre and diameter, and give
``x`` (N, 3, 70, 70) uint8 in phase order (unenhanced, arterial, delayed), ``y`` (N,) int64
category index (A=0 ... E=4), and a metadata table (case_id, patient_id, category, subtype).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from livercore.errors import InputError
from livercore.preprocess import LesionBox, preprocess_case
from livercore.vocab import CATEGORIES, PHASES, Category

META_COLUMNS = ["case_id", "patient_id", "category", "subtype"]


@dataclass
class Dataset:
    x: np.ndarray  # (N, 3, 70, 70) uint8
    y: np.ndarray  # (N,) int64
    meta: pd.DataFrame

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the arrays under a temporary name, then rename: several ranks of a distributed
        study caching the same cohort at once leave one whole file, never a torn one."""
        target = Path(path)
        partial = target.with_name(f".{target.stem}.{os.getpid()}.partial.npz")
        np.savez_compressed(partial, x=self.x, y=self.y, meta=self.meta[META_COLUMNS].to_numpy(dtype=str))
        partial.replace(target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dataset:
        with np.load(path, allow_pickle=False) as f:
            meta = pd.DataFrame(f["meta"], columns=META_COLUMNS)
            return cls(f["x"], f["y"].astype(np.int64), meta)

    def __len__(self) -> int:
        return len(self.y)


def _phantom_chunk(args: tuple[str, int, int | None, list[int], bool]) -> list[tuple[np.ndarray, list[str]]]:
    from livercore.phantom import generate_case

    cohort, seed, size, indices, lesion = args
    out = []
    for i in indices:
        case = generate_case(cohort, seed, i, size, lesion=lesion)
        boxes = {
            p: LesionBox.from_center(*case.lesion_center[p], case.lesion_diameter_mm, case.spacing_mm)
            for p in PHASES
        }
        x = preprocess_case(case.hu, boxes, case.spacing_mm)
        out.append((x, [case.case_id, case.image_set.patient_id, case.category.value, case.subtype]))
    return out


def _collect(rows: list[tuple[np.ndarray, list[str]]]) -> Dataset:
    x = np.stack([r[0] for r in rows])
    meta = pd.DataFrame([r[1] for r in rows], columns=META_COLUMNS)
    y = np.array([CATEGORIES.index(Category(c)) for c in meta["category"]], np.int64)
    return Dataset(x, y, meta)


def from_phantom(
    cohort: str, *, seed: int = 0, size: int | None = None, lesion: bool = True, workers: int | None = None
) -> Dataset:
    """Preprocessed crops of every case of a phantom cohort (made in memory, no files)."""
    from livercore.phantom import cohort_size

    n = cohort_size(cohort, seed, size)
    workers = workers or os.cpu_count() or 1
    chunks = [list(range(i, n, workers * 4)) for i in range(workers * 4)]
    jobs = [(cohort, seed, size, c, lesion) for c in chunks if c]
    if workers == 1:
        rows = [r for j in jobs for r in _phantom_chunk(j)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            rows = [r for part in pool.map(_phantom_chunk, jobs) for r in part]
    order = np.argsort([r[1][0] for r in rows], kind="stable")
    return _collect([rows[i] for i in order])


SECTIONS = ("all", "largest")


def from_manifest(path: str | os.PathLike[str], *, sections: str = "all") -> Dataset:
    """Preprocessed crops of a cohort in the cohort format (livercore.cohort: its folder or its
    manifest.csv). ``sections="all"`` takes every image set (training: several sections per
    lesion); ``"largest"`` one per lesion, its section of largest diameter (the paper's test
    image). InputError (a sentence naming the case) for a manifest or file that cannot be used."""
    from livercore.cohort import largest_sections, manifest_path, read_manifest, resolve
    from livercore.dicom_io import read_ct_slice

    if sections not in SECTIONS:
        raise ValueError(f"sections must be one of {SECTIONS}")
    file = manifest_path(path)
    manifest = read_manifest(file)
    if sections == "largest":
        manifest = largest_sections(manifest)
    rows = []
    for rec in manifest.to_dict("records"):
        hu, boxes, spacing = {}, {}, {}
        for p in PHASES:
            try:
                ct = read_ct_slice(resolve(file.parent, rec[p.value]))
            except InputError as err:
                raise InputError(f"Case {rec['case_id']}, {p.value} phase: {err}") from err
            hu[p] = ct.hu
            spacing[p] = ct.pixel_spacing_mm[0]
            boxes[p] = LesionBox.from_center(
                float(rec[f"lesion_row_{p.value}"]),
                float(rec[f"lesion_col_{p.value}"]),
                float(rec["lesion_diameter_mm"]),
                spacing[p],
            )
        x = preprocess_case(hu, boxes, spacing)
        patient = rec.get("patient_id")
        meta = [
            str(rec["case_id"]),
            str(patient if isinstance(patient, str) and patient else rec["case_id"]),
            str(rec["category"]),
            str(rec.get("subtype") or ""),
        ]
        rows.append((x, meta))
    return _collect(rows)
