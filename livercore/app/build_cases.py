"""Build the app's example (teaching) cases: ``python -m livercore.app.build_cases [--out cases]``.

Two phantom cases per category from a dedicated cohort ("teaching", seed 0, test-2016 mix),
chosen by a fixed rule so the library is reproducible: for each category's textbook subtype
and its common alternative (``TEACHING_SUBTYPES``), the first case in cohort order whose
lesion measures 15-45 mm (clearly visible, fits the viewer). Each case is written by the phantom exporter as three single-slice CT
files, then re-encoded RLE Lossless (bit-identical HU, about half the size; pydicom decodes it
without plugins), so the ten cases take about 8.5 MB. ``manifest.csv`` is the exporter's
manifest plus a ``findings`` column: one plain sentence per case built from its finding flags.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pydicom
from pydicom.uid import RLELossless

from livercore.paths import DEFAULT_CASES_DIR
from livercore.phantom.cohort import cohort_layout, generate_case
from livercore.phantom.export import MANIFEST_COLUMNS, write_case
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
DIAMETER_MM = (15.0, 45.0)
DEFAULT_OUT = DEFAULT_CASES_DIR

# Finding flags in reading order: arterial pattern, delayed pattern, structure, background.
_ARTERIAL = {
    "flash_filling": "uniform intense (flash) filling following the blood pool in the arterial phase",
    "peripheral_nodular": "peripheral nodular enhancement following the blood pool in the arterial phase",
    "rim_enhancement": "rim enhancement in the arterial phase",
    "aphe": "arterial-phase hyperenhancement",
}
_DELAYED = {
    "washout": "washout",
    "capsule": "an enhancing capsule",
    "fill_in": "centripetal fill-in",
    "progressive_central": "progressive central enhancement",
}
_STRUCTURE = {
    "mosaic": "a mosaic architecture",
    "nodule_in_nodule": "a nodule-in-nodule architecture",
    "necrosis": "central necrosis",
    "central_scar": "a central scar",
    "calcification": "calcification",
    "fat": "intralesional fat",
    "bile_duct_dilatation": "upstream bile duct dilatation",
    "pseudolesion": "a wedge shape suggesting a perfusion pseudolesion",
    "multiple": "other similar lesions in the liver",
}
# Said when no arterial-phase enhancement flag is set (hypovascular lesions and cysts).
_NO_ENHANCEMENT = {
    Category.E: "water attenuation without enhancement in any phase, with a sharp border and no wall",
    Category.C: "hypo-attenuation in the arterial phase without hyperenhancement",
}


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def findings_sentence(flags: Mapping[str, bool | int], category: Category | str, diameter_mm: float) -> str:
    """One plain sentence describing a phantom lesion from its finding flags, e.g.
    "A 38 mm lesion with arterial-phase hyperenhancement, then washout and an enhancing capsule
    in the delayed phase, with a mosaic architecture, in a cirrhotic liver."
    """
    category = Category(category)
    on = {k for k, v in flags.items() if v}
    arterial = next((text for k, text in _ARTERIAL.items() if k in on), None)
    pattern = arterial or _NO_ENHANCEMENT.get(category, "no arterial-phase hyperenhancement")
    delayed = [text for k, text in _DELAYED.items() if k in on]
    if delayed:
        pattern += f", then {_join(delayed)} in the delayed phase"
    structure = [text for k, text in _STRUCTURE.items() if k in on]
    sentence = f"A {diameter_mm:.0f} mm lesion with {pattern}"
    if structure:
        sentence += f", with {_join(structure)}"
    sentence += ", in a cirrhotic liver." if "cirrhosis" in on else ", in a non-cirrhotic liver."
    return sentence


def choose_cases(cohort: str = COHORT, seed: int = SEED, size: int = COHORT_SIZE) -> list[int]:
    """Indices of the teaching cases: for each (category, subtype) of TEACHING_SUBTYPES, the
    first case in cohort order with a lesion of DIAMETER_MM not chosen already."""
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
                if DIAMETER_MM[0] <= diameter <= DIAMETER_MM[1]:
                    chosen.append(image_set.index)
                    break
            else:
                raise RuntimeError(f"no {category.value}/{subtype} lesion of {DIAMETER_MM} mm in {cohort}")
    return chosen


def build_cases(out_dir: str | Path = DEFAULT_OUT) -> pd.DataFrame:
    """Write the teaching cases under out_dir/<case_id>/<phase>.dcm and out_dir/manifest.csv."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in choose_cases():
        case = generate_case(COHORT, SEED, index, COHORT_SIZE)
        row = write_case(case, out)
        for phase in PHASES:
            path = out / str(row[phase.value])
            ds = pydicom.dcmread(path)
            ds.compress(RLELossless)
            ds.save_as(path, enforce_file_format=True)
        row["findings"] = findings_sentence(case.flags, case.category, case.lesion_diameter_mm)
        rows.append(row)
    # Cohort order mixes the categories: a resident cannot guess the answer from a case's number.
    manifest = pd.DataFrame(rows).sort_values("index", kind="stable")
    columns = [c for c in MANIFEST_COLUMNS if c in manifest.columns] + ["findings"]
    manifest = manifest[columns]
    manifest.to_csv(out / "manifest.csv", index=False)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the cases (default: cases/)")
    args = parser.parse_args(argv)
    manifest = build_cases(args.out)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"{len(manifest)} cases, {size / 2**20:.1f} MiB in {args.out}")
    for _, r in manifest.iterrows():
        print(f"  {r.case_id}  {r.category} {r.subtype:<24} {r.findings}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
