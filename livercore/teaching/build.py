"""Build the teaching catalogue: ``livercore teaching build [--out cases]``.

Stored example cases: two phantom cases per category from a dedicated cohort ("teaching",
seed 0, test-2016 mix), chosen by a fixed rule (for each category's textbook subtype and its
common alternative, the first case in cohort order whose lesion measures 15-45 mm); each is
written by the phantom exporter as three single-slice CT files, re-encoded RLE Lossless
(bit-identical HU, about half the size; pydicom decodes it without plugins).

Phantom recipes: fifty cases, ten per category and every subtype (QUOTAS), regenerated on
demand, so no pixels are stored (choose_library).

Every row gets its findings from livercore.teaching.findings; ``catalogue.csv`` lists both
with a ``source`` column (livercore.teaching.catalogue).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pydicom
from pydicom.uid import RLELossless

from livercore.paths import DEFAULT_CASES_DIR
from livercore.phantom.cohort import cohort_layout, generate_case
from livercore.phantom.export import MANIFEST_COLUMNS, write_case
from livercore.teaching.catalogue import (
    CATALOGUE,
    CATALOGUE_COLUMNS,
    FALLBACK_COHORT,
    LIBRARY_COHORT,
    LIBRARY_SEED,
    LIBRARY_SIZE,
    PHANTOM,
    STORED,
)
from livercore.teaching.findings import phantom_findings
from livercore.vocab import PHASES, Category

COHORT = "teaching"
SEED = 0
COHORT_SIZE = 100
# Two per category: the textbook pattern and its common alternative.
TEACHING_SUBTYPES: dict[Category, tuple[str, ...]] = {
    Category.A: ("imaging", "histology"),
    Category.B: ("icc", "colorectal_metastasis"),
    Category.C: ("hypervascular", "hypovascular"),
    Category.D: ("typical", "flash_filling"),
    Category.E: ("simple_cyst", "simple_cyst"),
}
STORED_DIAMETER_MM = (15.0, 45.0)

# Cases per (category, subtype): ten per category, the textbook patterns weighted up.
QUOTAS: dict[tuple[Category, str], int] = {
    (Category.A, "histology"): 5,
    (Category.A, "imaging"): 5,
    (Category.B, "icc"): 2,
    (Category.B, "combined_hcc_icc"): 2,
    (Category.B, "colorectal_metastasis"): 2,
    (Category.B, "net_metastasis"): 2,
    (Category.B, "other_malignant"): 2,
    (Category.C, "hypervascular"): 4,
    (Category.C, "hypovascular"): 4,
    (Category.C, "other_benign"): 2,
    (Category.D, "typical"): 6,
    (Category.D, "flash_filling"): 4,
    (Category.E, "simple_cyst"): 10,
}
LIBRARY_DIAMETER_MM = (12.0, 70.0)  # clearly visible, and the whole lesion fits a lesion-centred view


def choose_cases(cohort: str = COHORT, seed: int = SEED, size: int = COHORT_SIZE) -> list[int]:
    """Indices of the teaching cases: for each (category, subtype) of TEACHING_SUBTYPES, the
    first case in cohort order with a lesion of STORED_DIAMETER_MM not chosen already."""
    layout = cohort_layout(cohort, seed, size)
    chosen: list[int] = []
    for category, subtypes in TEACHING_SUBTYPES.items():
        for subtype in subtypes:
            for image_set in layout:
                if image_set.category is not category or image_set.subtype != subtype:
                    continue
                if image_set.index in chosen:
                    continue
                diameter = generate_case(cohort, seed, image_set.index, size).lesion_diameter_mm
                if STORED_DIAMETER_MM[0] <= diameter <= STORED_DIAMETER_MM[1]:
                    chosen.append(image_set.index)
                    break
            else:
                raise RuntimeError(
                    f"no {category.value}/{subtype} lesion of {STORED_DIAMETER_MM} mm in {cohort}"
                )
    return chosen


def write_stored_cases(out_dir: str | Path) -> pd.DataFrame:
    """Write the stored example cases under out_dir/<case_id>/<phase>.dcm; their catalogue rows
    (the exporter's manifest columns, source, findings), in cohort order: the categories are
    mixed, so a resident cannot guess the answer from a case's number."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in choose_cases():
        case = generate_case(COHORT, SEED, index, COHORT_SIZE)
        row = write_case(case, out)
        for phase in PHASES:
            path = out / str(row[phase.value])
            ds = pydicom.dcmread(path)
            ds.compress(RLELossless, generate_instance_uid=False)  # keep the derived UID: builds repeat
            ds.save_as(path, enforce_file_format=True)
        row |= {"source": STORED, "size": COHORT_SIZE, "findings": phantom_findings(case)}
        rows.append(row)
    return pd.DataFrame(rows).sort_values("index", kind="stable")


def choose_library(quotas: Mapping[tuple[Category, str], int] = QUOTAS) -> pd.DataFrame:
    """The curated cases, by a fixed rule so the library is reproducible.

    For each (category, subtype) of `quotas`, candidates come in cohort order from the library
    cohort, then from train-2013 (for subtypes the library cohort lacks or has too few of; one
    section per lesion, its middle one). A candidate qualifies when its lesion measures
    LIBRARY_DIAMETER_MM. Over each cohort, a first pass takes only candidates whose set of finding flags
    is new for that subtype (so the cases of a subtype show its variants: with and without
    capsule, rim, scar...), a second pass fills the quota in cohort order.
    """
    from livercore.phantom import Case, cohort_layout, generate_case

    sources: list[tuple[str, int | None]] = [(LIBRARY_COHORT, LIBRARY_SIZE), (FALLBACK_COHORT, None)]
    rows = []
    for (category, subtype), quota in quotas.items():
        candidates = [
            (cohort, size, s)
            for cohort, size in sources
            for s in cohort_layout(cohort, LIBRARY_SEED, size)
            if s.category is category and s.subtype == subtype and s.section == s.n_sections // 2
        ]
        picked: list[tuple[str, int | None, Case]] = []
        seen: set[frozenset[str]] = set()
        generated: dict[str, Case] = {}
        # library cohort before train-2013; within each, new flag sets before repeated ones
        passes = [(cohort, first) for cohort, _ in sources for first in (True, False)]
        for source, first_pass in passes:
            for cohort, size, s in candidates:
                if cohort != source:
                    continue
                if len(picked) == quota:
                    break
                if any(c.case_id == s.case_id for _, _, c in picked):
                    continue
                case = generated.get(s.case_id) or generate_case(cohort, LIBRARY_SEED, s.index, size)
                generated[s.case_id] = case
                if not LIBRARY_DIAMETER_MM[0] <= case.lesion_diameter_mm <= LIBRARY_DIAMETER_MM[1]:
                    continue
                signature = frozenset(k for k, v in case.flags.items() if v)
                if first_pass and signature in seen:
                    continue
                seen.add(signature)
                picked.append((cohort, size, case))
        if len(picked) < quota:
            raise RuntimeError(
                f"only {len(picked)} {category.value}/{subtype} cases of {LIBRARY_DIAMETER_MM} mm"
            )
        for cohort, size, case in picked:
            rows.append(
                {
                    "case_id": case.case_id,
                    "cohort": cohort,
                    "seed": LIBRARY_SEED,
                    "index": case.image_set.index,
                    "size": size,
                    "category": category.value,
                    "subtype": subtype,
                    "lesion_diameter_mm": round(case.lesion_diameter_mm, 1),
                    "findings": phantom_findings(case),
                }
            )
    table = pd.DataFrame(rows, columns=[c for c in CATALOGUE_COLUMNS if c != "source"])
    return table.astype({"size": "Int64"})


def build_catalogue(out_dir: str | Path = DEFAULT_CASES_DIR) -> pd.DataFrame:
    """Write the stored cases and ``catalogue.csv`` (stored rows, then the phantom recipes)."""
    stored = write_stored_cases(out_dir)
    phantom = choose_library().assign(source=PHANTOM)
    extra = [c for c in MANIFEST_COLUMNS if c in stored.columns and c not in CATALOGUE_COLUMNS]
    table = pd.concat([stored, phantom], ignore_index=True)[[*CATALOGUE_COLUMNS, *extra]]
    table = table.astype({"size": "Int64", "seed": "Int64", "index": "Int64"})
    table.to_csv(Path(out_dir) / CATALOGUE, index=False)
    return table
