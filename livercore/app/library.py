"""The teaching library: curated phantom cases, a site's own DICOM cases, and their findings.

Phantom cases are listed in ``cases/library.csv`` (written by ``python -m livercore.app.library
build``) by (cohort, seed, index, size) and regenerated on demand: a phantom case is a pure
function of those four, so no pixels are stored. Each row carries a ``findings`` sentence a
resident can learn from, built per phase from the case's ground-truth finding flags and the
lesion-to-liver attenuation measured on its own images (its words' thresholds follow the liver's
noise on those images and are stated in the text: iso_threshold_hu), and saying why a lesion that
departs from its category's textbook pattern is in that category.

A site's own teaching cases live in a server-side folder named by the environment variable
``LIVERCORE_SITE_CASES`` (never typed into a page) with a ``labels.csv``; see
:data:`SITE_LABELS_HELP` for its columns. Paths are read from that file and must stay inside
the folder; a ``?case=`` link is looked up among the listed ids, never joined into a path.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from livercore.app.cases import case_from_row
from livercore.app.inputs import Reference, ReviewCase, make_case
from livercore.app.measure import Measurements, locate_aorta, measure_case
from livercore.errors import InputError
from livercore.paths import DEFAULT_CASES_DIR
from livercore.preprocess import LesionBox, crop_square, window_to_uint8
from livercore.vocab import CATEGORIES, PHASES, SUBTYPES, Category, Phase

DEFAULT_LIBRARY = DEFAULT_CASES_DIR / "library.csv"
LIBRARY_COLUMNS = (
    "case_id",
    "cohort",
    "seed",
    "index",
    "size",
    "category",
    "subtype",
    "lesion_diameter_mm",
    "findings",
)
# The library's own cohort: the test-2016 mix, large enough to hold several clearly visible
# lesions of every subtype that mix has. Subtypes the test mix lacks (combined HCC-ICC, rare
# benign) come from train-2013, the only cohort that has them (the models were trained on it).
LIBRARY_COHORT = "library"
LIBRARY_SEED = 0
LIBRARY_SIZE = 200
FALLBACK_COHORT = "train-2013"
# Cohorts a ``?case=<cohort>-<seed>-<index>`` id may name, with the size that fixes their
# layout (None: the named cohort's own). Other names are refused: their size is unknown, and
# guessing would silently regenerate a different case.
PHANTOM_COHORTS: dict[str, int | None] = {
    "test-2016": None,
    "train-2013": None,
    LIBRARY_COHORT: LIBRARY_SIZE,
}
MAX_SEED = 9999
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
DIAMETER_MM = (12.0, 70.0)  # clearly visible, and the whole lesion fits a lesion-centred view
# Attenuation words compare the lesion's mean with the liver's in the same phase (HU). A reader
# tells them apart through the image noise: a lesion of 1.5-3 cm covers some 30-110 noise grains
# of about 2.5 mm (phantom.md section 4: noise power peaks at 0.2-0.35 cycles/mm), so a difference
# of half the liver's pixel SD gives a detectability d' of about 0.5 x sqrt(30 to 110) = 3 to 5,
# near the Rose criterion of a just visible contrast. So "iso" is a difference under half the
# liver's pixel SD in that phase, never under ISO_HU_RANGE[0] (CT numbers are accurate to about
# 5 HU: ACR accreditation asks water within +/- 5-7 HU) nor over ISO_HU_RANGE[1] (the phantom's
# washout, 10-25 HU below the liver, is never called iso). Each text states its thresholds.
ISO_NOISE_FRACTION = 0.5
ISO_HU_RANGE = (5, 10)
SLIGHT_HU = 15  # "slightly" hypo/hyper below this (phantom.md: classic HCC unenhanced L -5 to -15)
MARKED_HU = 40  # "markedly" hypo/hyper from this on
LARGE_HCC_MM = 50.0  # phantom.md: large (> 5 cm) HCC often has no objective washout
VIEW_FIELD_FACTOR = 2.5  # lesion-centred view: this many lesion diameters ...
VIEW_MIN_FIELD_MM = 60.0  # ... and never less than this (small nodules keep their surroundings)
VIEW_PX = 240  # side of the displayed view (pixels)

SITE_ENV = "LIVERCORE_SITE_CASES"
SITE_LABELS = "labels.csv"
SITE_REQUIRED = (
    "case_id",
    "category",
    *(p.value for p in PHASES),
    *(f"lesion_{axis}_{p.value}" for p in PHASES for axis in ("row", "col")),
    "lesion_diameter_mm",
)
SITE_LABELS_HELP = (
    "A site's own teaching cases: a folder on the server, named by the environment variable "
    f"`{SITE_ENV}`, holding `{SITE_LABELS}` with one row per lesion and the columns of the phantom "
    "export's manifest: `case_id`, `category` (A-E), `subtype` (optional; `hypervascular` / "
    "`hypovascular` for category C), `unenhanced`, `arterial`, `delayed` (single-slice DICOM files, "
    "paths relative to the folder), `lesion_row_<phase>` and `lesion_col_<phase>` (the lesion centre "
    "in pixels in each phase), `lesion_diameter_mm`, and optionally `findings` (one sentence), "
    "`liver_row_<phase>` / `liver_col_<phase>` and `aorta_row_<phase>` / `aorta_col_<phase>` (ROI "
    "centres for the time-attenuation chart)."
)

_PHANTOM_ID = re.compile(
    r"^(?P<cohort>[a-z0-9][a-z0-9-]{0,38}[a-z0-9])-(?P<seed>\d{1,4})-(?P<index>\d{4,5})$"
)


@dataclass(frozen=True)
class TeachingEntry:
    """One case of the teaching library (a phantom case or one of the site's own)."""

    case_id: str
    source: str  # "phantom" or "site"
    category: Category
    subtype: str
    diameter_mm: float
    findings: str
    cohort: str = ""  # phantom cases: where they come from
    seed: int = 0
    index: int = 0
    size: int | None = None

    @property
    def seen_in_training(self) -> bool:
        """True for train-2013 cases: the shipped models were trained on them."""
        return self.source == "phantom" and self.cohort == FALLBACK_COHORT


# --- findings in words -------------------------------------------------------------------------


def iso_threshold_hu(liver_sd_hu: float | None) -> int:
    """The lesion-minus-liver difference (HU, rounded) from which a lesion reads as hypo- or
    hyper-attenuating, for a liver of this pixel SD (HU): ISO_NOISE_FRACTION of the SD, rounded
    half up, within ISO_HU_RANGE; the range's floor when the SD is unknown."""
    low, high = ISO_HU_RANGE
    if liver_sd_hu is None or not np.isfinite(liver_sd_hu):
        return low
    return int(min(max(np.floor(ISO_NOISE_FRACTION * liver_sd_hu + 0.5), low), high))


def _hu(delta_hu: float) -> str:
    rounded = round(float(delta_hu))
    return f"{rounded:+d} HU" if rounded else "0 HU"


def _relative(delta_hu: float | None, iso_hu: int) -> str:
    """Lesion minus liver (HU) in words, with the number: iso under `iso_hu` (rounded HU)."""
    if delta_hu is None:
        return "of unmeasured attenuation"
    size = abs(round(float(delta_hu)))
    if size < iso_hu:
        return f"iso-attenuating to liver ({_hu(delta_hu)})"
    strength = "slightly " if size < SLIGHT_HU else "markedly " if size >= MARKED_HU else ""
    return f"{strength}{'hyper' if delta_hu > 0 else 'hypo'}-attenuating to liver ({_hu(delta_hu)})"


def attenuation_rule(iso_hu: Mapping[Phase, int]) -> str:
    """The sentence that states the thresholds of the attenuation words (iso_hu: per phase, from
    iso_threshold_hu), e.g. "Attenuation words compare lesion and liver means. Iso-attenuating:
    under 5 HU apart (unenhanced) and 7 HU (arterial, delayed), half the liver's pixel SD on
    these images kept within 5-10 HU; slightly hypo- or hyper-attenuating: under 15 HU;
    markedly: from 40 HU."."""
    groups: dict[int, list[str]] = {}
    for p in PHASES:
        groups.setdefault(iso_hu[p], []).append(p.value)
    (first, names), *rest = groups.items()
    if not rest:
        under = f"under {first} HU apart in every phase"
    else:
        under = _join(
            [f"under {first} HU apart ({', '.join(names)})", *(f"{t} HU ({', '.join(n)})" for t, n in rest)]
        )
    low, high = ISO_HU_RANGE
    return (
        f"Attenuation words compare lesion and liver means. Iso-attenuating: {under}, half the "
        f"liver's pixel SD on these images kept within {low}-{high} HU; slightly hypo- or "
        f"hyper-attenuating: under {SLIGHT_HU} HU; markedly: from {MARKED_HU} HU."
    )


def _delayed_without_washout(delta_hu: float | None, iso_hu: int, on: set[str]) -> tuple[str, bool]:
    """The delayed phase of an arterially hyperenhancing lesion drawn without washout, in words,
    and whether it still reads as washout (measured clearly hypo-attenuating, no necrosis)."""
    words = _relative(delta_hu, iso_hu)
    below = 0 if delta_hu is None else -round(float(delta_hu))  # HU below the liver
    if below < iso_hu:
        return f"{words}, no washout", False
    if below < SLIGHT_HU:
        return f"{words}, no definite washout", False
    if "necrosis" in on:
        return (
            f"{words} on the mean of the lesion, which takes in its necrotic centre; the "
            "enhancing tumour itself shows no washout",
            False,
        )
    return f"{words}: it reads as washout", True


def _why(
    category: Category, subtype: str, on: set[str], *, no_washout: bool, diameter_mm: float | None
) -> str:
    """Why a lesion that departs from its category's textbook pattern is in that category
    (paper.md 'The five categories': A is HCC by histology, or by imaging with arterial
    hyperenhancement and washout); empty for textbook cases."""
    large = diameter_mm is not None and diameter_mm > LARGE_HCC_MM
    if category is Category.A and no_washout:
        size = (
            f" Large HCCs (over {LARGE_HCC_MM / 10:.0f} cm) often lack it, filling in gradually instead."
            if large
            else ""
        )
        if subtype == "histology":
            return (
                "Why category A without washout: histology proved this HCC. About a quarter of "
                "histology-proven HCCs lack objective washout (atypical HCC); the study's category A "
                "takes HCC proven by histology whatever its pattern, and asks for the classic "
                "pattern (arterial hyperenhancement and washout) only where HCC is diagnosed on "
                "imaging alone." + size
            )
        return (
            "Why category A without washout: the phantom labels this an HCC diagnosed on imaging, "
            "but the study's imaging diagnosis needs arterial hyperenhancement with washout; on "
            "this section a reader would call it indeterminate and ask for histology." + size
        )
    if category is Category.B and subtype == "net_metastasis" and "aphe" in on:
        return (
            "Why category B, not A: a metastasis of a pancreatic neuroendocrine tumour, "
            "hypervascular like HCC; the known primary tells them apart (the study's reference "
            "standard for metastases: histology, or a known primary with a new or growing mass)."
        )
    if category is Category.B and subtype == "combined_hcc_icc":
        return (
            "Why category B: combined HCC-cholangiocarcinoma; its hepatocellular part "
            "hyperenhances and washes out like HCC, its cholangiocellular part enhances "
            "progressively like a cholangiocarcinoma."
        )
    if category is Category.C and "pseudolesion" in on:
        return (
            "Why category C: a perfusion pseudolesion (wedge-shaped, subcapsular, no mass effect), "
            "one of the arterial-phase hyperenhancing findings the study calls indeterminate."
        )
    if category is Category.C and "fat" in on:
        return (
            "Why category C: fat inside suggests an angiomyolipoma, a rare benign mass; the study "
            "puts rare benign masses other than haemangioma and cyst in category C."
        )
    if category is Category.C and "aphe" in on:
        if subtype == "other_benign":
            return (
                "Why category C, not A: a rare benign mass (hepatocellular adenoma), which can "
                "hyperenhance and wash out like HCC; the study puts rare benign masses other than haemangioma "
                "and cyst in category C."
            )
        if "central_scar" in on:
            return (
                "Why category C, not A: hyperenhancement around a central scar that enhances late, "
                "without washout or capsule, is the pattern of focal nodular hyperplasia, a benign "
                "hypervascular nodule the study calls indeterminate."
            )
        return (
            "Why category C, not A: arterial hyperenhancement without washout or capsule is not "
            "the classic HCC pattern; the study calls a nodule that hyperenhances in the arterial "
            "phase and is iso-attenuating in the delayed phase indeterminate."
        )
    return ""


def describe_findings(
    flags: Mapping[str, bool | int],
    category: Category | str,
    subtype: str,
    *,
    lesion_hu: Mapping[Phase, float | None],
    liver_hu: Mapping[Phase, float | None],
    liver_sd_hu: Mapping[Phase, float | None] | None = None,
    diameter_mm: float | None = None,
) -> str:
    """What a radiologist would say, phase by phase, about a phantom lesion: from its finding
    flags (phantom ground truth), its mean attenuation against the liver's (HU) and the liver's
    pixel SD (HU, sets the iso threshold: iso_threshold_hu), e.g. "Unenhanced: slightly
    hypo-attenuating to liver (-11 HU). Arterial: non-rim hyperenhancement with a mosaic
    pattern. Delayed: washout and an enhancing capsule. Cirrhotic liver." followed by why the
    lesion is in its category where it departs from the textbook pattern (_why), and by the
    thresholds of the attenuation words (attenuation_rule) where the text uses them.
    `diameter_mm` is the lesion's (large HCCs often lack washout).
    """
    category = Category(category)
    on = {k for k, v in flags.items() if v}
    sd = liver_sd_hu or {}
    iso = {p: iso_threshold_hu(sd.get(p)) for p in PHASES}
    delta: dict[Phase, float | None] = {}
    for p in PHASES:
        lesion, liver = lesion_hu.get(p), liver_hu.get(p)
        delta[p] = None if lesion is None or liver is None else lesion - liver
    u, a, d = (_relative(delta[p], iso[p]) for p in PHASES)
    u_hu = lesion_hu.get(Phase.UNENHANCED)
    no_washout = False

    if category is Category.E:
        water = f"water attenuation ({u_hu:.0f} HU)" if u_hu is not None else "water attenuation"
        unenhanced = f"{water}, sharp border, no wall"
        arterial = "no enhancement"
        delayed = "no enhancement, still water attenuation"
    else:
        unenhanced = u
        if "fat" in on:
            unenhanced += ", with fat (negative attenuation) inside"
        if "calcification" in on:
            unenhanced += ", with calcification"
        # arterial phase: the enhancement pattern
        if "flash_filling" in on:
            arterial = "uniform intense enhancement as bright as the aorta (flash filling)"
        elif "peripheral_nodular" in on:
            arterial = "peripheral, discontinuous nodular enhancement as bright as the aorta"
        elif subtype == "combined_hcc_icc":
            arterial = "hyperenhancement of one part of the lesion, the rest hypo-attenuating"
        elif "pseudolesion" in on:
            arterial = "wedge-shaped subcapsular hyperenhancement without mass effect"
        elif "aphe" in on:
            arterial = "non-rim hyperenhancement"
            if "mosaic" in on:
                arterial += " with a mosaic pattern"
            if "central_scar" in on:
                arterial += " around a hypo-attenuating central scar"
        elif "rim_enhancement" in on:
            arterial = "irregular rim enhancement around a hypo-attenuating centre"
        elif "nodule_in_nodule" in on:
            arterial = f"{a}, with a small hyperenhancing focus inside (nodule-in-nodule)"
        else:
            arterial = f"no hyperenhancement; {a}"
        # delayed phase: what became of it
        parts = []
        if subtype == "combined_hcc_icc":
            parts.append("washout of the hyperenhancing part, progressive enhancement of the rest")
        elif "washout" in on:
            parts.append("washout")
        if "capsule" in on:
            parts.append("an enhancing capsule")
        if "fill_in" in on:
            parts.append(f"centripetal fill-in, now {d}")
        if "progressive_central" in on and subtype != "combined_hcc_icc":
            parts.append("progressive central enhancement")
        if "central_scar" in on:
            parts.append("the central scar enhances late")
        if "flash_filling" in on:
            parts.append(f"stays as dense as the blood pool, {d}")
        # A hyperenhancing lesion without washout: say so, and what the measurement shows.
        if ("aphe" in on or "capsule" in on) and not on & {"washout", "flash_filling"}:
            verdict, reads_as_washout = _delayed_without_washout(delta[Phase.DELAYED], iso[Phase.DELAYED], on)
            no_washout = not reads_as_washout
            rest = [text for text in parts if text != "an enhancing capsule"]
            capsule = ["an enhancing capsule"] if "capsule" in on else []
            delayed = "; ".join([*capsule, *([_join(rest)] if rest else []), verdict])
        else:
            delayed = _join(parts) if parts else d
    sentences = [
        f"Unenhanced: {unenhanced}.",
        f"Arterial: {arterial}.",
        f"Delayed: {delayed}.",
    ]
    extra = [
        text
        for key, text in (
            ("necrosis", "central necrosis"),
            ("bile_duct_dilatation", "upstream bile-duct dilatation"),
            ("multiple", "other similar lesions in the liver"),
        )
        if key in on
    ]
    if extra:
        sentences.append(_join(extra)[0].upper() + _join(extra)[1:] + ".")
    sentences.append("Cirrhotic liver." if "cirrhosis" in on else "Non-cirrhotic liver.")
    why = _why(category, subtype, on, no_washout=no_washout, diameter_mm=diameter_mm)
    if why:
        sentences.append(why)
    if category is not Category.E and any(v is not None for v in delta.values()):
        sentences.append(attenuation_rule(iso))  # the text above uses attenuation words
    return " ".join(sentences)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --- phantom cases ------------------------------------------------------------------------------


def parse_phantom_id(case_id: str) -> tuple[str, int, int]:
    """(cohort, seed, index) of a phantom case id "<cohort>-<seed>-<index:04d>", read from the
    right (cohort names contain '-'); InputError when it is not one."""
    match = _PHANTOM_ID.match(case_id or "")
    if not match:
        raise InputError(f"'{str(case_id)[:40]}' is not a phantom case id (<cohort>-<seed>-<index>).")
    return match["cohort"], int(match["seed"]), int(match["index"])


def phantom_size(cohort: str, seed: int, index: int) -> int | None:
    """The cohort size that fixes the layout of a phantom case; InputError for cohorts this app
    cannot regenerate, seeds over MAX_SEED and indices outside the cohort."""
    from livercore.phantom import cohort_size

    if cohort not in PHANTOM_COHORTS:
        raise InputError(
            f"'{cohort[:40]}' is not a phantom cohort this app regenerates ({', '.join(PHANTOM_COHORTS)})."
        )
    if seed > MAX_SEED:
        raise InputError(f"Phantom seeds go up to {MAX_SEED}.")
    size = PHANTOM_COHORTS[cohort]
    if index >= cohort_size(cohort, seed, size):
        raise InputError(f"Cohort {cohort} (seed {seed}) has no case {index}.")
    return size


def can_regenerate(case_id: str) -> bool:
    """Whether `case_id` names a phantom case this app can open (see phantom_size)."""
    try:
        phantom_size(*parse_phantom_id(case_id))
    except InputError:
        return False
    return True


def phantom_findings(case: object) -> str:
    """describe_findings for a generated phantom case (livercore.phantom.Case), measured on its
    own images at its ground-truth lesion and liver positions."""
    from livercore.phantom import Case

    assert isinstance(case, Case)
    spacing = dict.fromkeys(PHASES, case.spacing_mm)
    boxes = {
        p: LesionBox.from_center(*case.lesion_center[p], case.lesion_diameter_mm, case.spacing_mm)
        for p in PHASES
    }
    m = measure_case(case.hu, spacing, boxes, case.liver_center, case.aorta_center)
    return describe_findings(
        case.flags,
        case.category,
        case.subtype,
        lesion_hu={p: s.mean_hu if (s := m.lesion[p]) else None for p in PHASES},
        liver_hu={p: s.mean_hu if (s := m.liver[p]) else None for p in PHASES},
        liver_sd_hu={p: s.sd_hu if (s := m.liver[p]) else None for p in PHASES},
        diameter_mm=float(case.lesion_diameter_mm),
    )


def phantom_review_case(case_id: str, *, size: int | None = None) -> ReviewCase:
    """Regenerate phantom case `case_id` ("<cohort>-<seed>-<index:04d>") as a ReviewCase with
    its lesion, liver ROI and aorta preselected and its reference standard (about 0.3 s).

    `size` overrides the cohort's known size (a library row records its own)."""
    from livercore.phantom import generate_case

    cohort, seed, index = parse_phantom_id(case_id)
    known = phantom_size(cohort, seed, index) if size is None else size
    case = generate_case(cohort, seed, index, known)
    sp = float(case.spacing_mm)
    return make_case(
        source="library",
        title=f"Teaching case {case_id}",
        images={p: case.hu[p].astype(np.float32) for p in PHASES},
        spacing_mm=dict.fromkeys(PHASES, sp),
        is_hu=True,
        metadata={
            p: {
                "modality": "CT",
                "manufacturer": case.manufacturer,
                "kvp": 120.0,
                "slice_thickness_mm": case.thickness_mm[p],
                "pixel_spacing_mm": (sp, sp),
                "series_description": f"{p.value} (livercore phantom)",
            }
            for p in PHASES
        },
        case_id=case_id,
        lesion_boxes={
            p: LesionBox.from_center(*case.lesion_center[p], case.lesion_diameter_mm, sp) for p in PHASES
        },
        liver_centres={p: (float(r), float(c)) for p, (r, c) in case.liver_center.items()},
        aorta_centres={p: (float(r), float(c)) for p, (r, c) in case.aorta_center.items()},
        reference=Reference(
            case.category, case.subtype, float(case.lesion_diameter_mm), phantom_findings(case)
        ),
    )


# --- the library file ---------------------------------------------------------------------------


def _size(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)  # type: ignore[call-overload]


def read_library(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """cases/library.csv as a table (empty, with the columns, when there is none)."""
    path = Path(path or DEFAULT_LIBRARY)
    if not path.exists():
        return pd.DataFrame(columns=list(LIBRARY_COLUMNS))
    return pd.read_csv(path, dtype={"case_id": str, "cohort": str, "subtype": str, "findings": str})


def library_entries(path: str | os.PathLike[str] | None = None) -> list[TeachingEntry]:
    """The phantom teaching cases, in file order (by category, then subtype)."""
    return [
        TeachingEntry(
            case_id=str(r.case_id),
            source="phantom",
            category=Category(r.category),
            subtype=str(r.subtype),
            diameter_mm=float(r.lesion_diameter_mm),
            findings=str(r.findings) if isinstance(r.findings, str) else "",
            cohort=str(r.cohort),
            seed=int(r.seed),
            index=int(r.index),
            size=_size(r.size),
        )
        for r in read_library(path).itertuples(index=False)
    ]


def choose_library(quotas: Mapping[tuple[Category, str], int] = QUOTAS) -> pd.DataFrame:
    """The curated cases, by a fixed rule so the library is reproducible.

    For each (category, subtype) of `quotas`, candidates come in cohort order from the library
    cohort, then from train-2013 (for subtypes the library cohort lacks or has too few of; one
    section per lesion, its middle one). A candidate qualifies when its lesion measures
    DIAMETER_MM. Over each cohort, a first pass takes only candidates whose set of finding flags
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
                if not DIAMETER_MM[0] <= case.lesion_diameter_mm <= DIAMETER_MM[1]:
                    continue
                signature = frozenset(k for k, v in case.flags.items() if v)
                if first_pass and signature in seen:
                    continue
                seen.add(signature)
                picked.append((cohort, size, case))
        if len(picked) < quota:
            raise RuntimeError(f"only {len(picked)} {category.value}/{subtype} cases of {DIAMETER_MM} mm")
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
    table = pd.DataFrame(rows, columns=list(LIBRARY_COLUMNS))
    return table.astype({"size": "Int64"})


def build_library(out: str | os.PathLike[str] = DEFAULT_LIBRARY) -> pd.DataFrame:
    """Choose the library and write it as CSV (no pixels: cases are regenerated on demand)."""
    table = choose_library()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


# --- a site's own teaching cases ---------------------------------------------------------------


def site_cases_dir() -> Path | None:
    """The site's teaching-case folder from $LIVERCORE_SITE_CASES (server-side), or None."""
    value = os.environ.get(SITE_ENV)
    return Path(value) if value else None


def read_site_labels(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """The site folder's labels.csv, checked: required columns, categories A-E, unique ids."""
    root = Path(folder)
    path = root / SITE_LABELS
    if not root.is_dir() or not path.is_file():
        raise InputError(f"The site's teaching-case folder has no {SITE_LABELS}.")
    try:
        labels = pd.read_csv(path, dtype={"case_id": str, "subtype": str, "findings": str})
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"{SITE_LABELS} could not be read as CSV: {err}") from err
    missing = [c for c in SITE_REQUIRED if c not in labels.columns]
    if missing:
        raise InputError(f"{SITE_LABELS} lacks the column(s): {', '.join(missing)}.")
    bad = sorted({str(c) for c in labels["category"]} - {c.value for c in CATEGORIES})
    if bad:
        raise InputError(f"{SITE_LABELS} has categories other than A-E: {', '.join(bad[:5])}.")
    if labels["case_id"].duplicated().any():
        raise InputError(f"{SITE_LABELS} lists a case_id twice.")
    return labels


def site_entries(folder: str | os.PathLike[str] | None = None) -> list[TeachingEntry]:
    """The site's teaching cases (empty when no folder is configured)."""
    root = Path(folder) if folder else site_cases_dir()
    if root is None:
        return []
    return [
        TeachingEntry(
            case_id=str(r["case_id"]),
            source="site",
            category=Category(str(r["category"])),
            subtype=str(r["subtype"]) if isinstance(r.get("subtype"), str) else "",
            diameter_mm=float(r["lesion_diameter_mm"]),
            findings=str(r["findings"]) if isinstance(r.get("findings"), str) else "",
        )
        for _, r in read_site_labels(root).iterrows()
    ]


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise InputError(f"{SITE_LABELS} names a file outside its folder.")
    return path


def site_review_case(case_id: str, folder: str | os.PathLike[str] | None = None) -> ReviewCase:
    """One of the site's teaching cases as a ReviewCase (DICOM read through dicom_io)."""
    root = Path(folder) if folder else site_cases_dir()
    if root is None:
        raise InputError("No site teaching-case folder is configured on this server.")
    labels = read_site_labels(root)
    rows = labels[labels["case_id"] == case_id]
    if rows.empty:
        raise InputError(f"There is no site teaching case '{str(case_id)[:40]}'.")
    return case_from_row(
        rows.iloc[0], lambda relative: _inside(root, relative), title=f"Site teaching case {case_id}"
    )


def library_review_case(case_id: str) -> ReviewCase:
    """Any teaching case by id: the site's own (when listed there), else a phantom case.

    The review page's fallback for ``?case=`` ids that are not example cases."""
    root = site_cases_dir()
    if root is not None and root.is_dir():
        try:
            labels = read_site_labels(root)
        except InputError:
            labels = pd.DataFrame(columns=["case_id"])
        if (labels["case_id"] == case_id).any():
            return site_review_case(case_id, root)
    entry = next((e for e in library_entries() if e.case_id == case_id), None)
    if entry is None and not _PHANTOM_ID.match(case_id or ""):
        raise InputError(
            f"There is no example case or teaching case '{str(case_id)[:40]}'; choose one from the list."
        )
    return phantom_review_case(case_id, size=entry.size if entry else None)


def review_case_for(entry: TeachingEntry, site_folder: str | os.PathLike[str] | None = None) -> ReviewCase:
    """The ReviewCase of a library entry."""
    if entry.source == "site":
        return site_review_case(entry.case_id, site_folder)
    return phantom_review_case(entry.case_id, size=entry.size)


# --- what the pages draw -------------------------------------------------------------------------


def lesion_view(case: ReviewCase, phase: Phase, *, size_px: int = VIEW_PX) -> np.ndarray:
    """(size_px, size_px) uint8: one phase in the paper's window, a lesion-centred field of
    VIEW_FIELD_FACTOR lesion diameters (at least VIEW_MIN_FIELD_MM), enlarged bicubically."""
    image = case.images[phase]
    box = case.lesion_boxes.get(phase)
    sp = case.spacing_mm.get(phase) or 1.0
    u8 = window_to_uint8(image, phase.window) if case.is_hu else np.asarray(image, np.uint8)
    if box is None:
        centre, side = (image.shape[0] / 2, image.shape[1] / 2), min(image.shape)
    else:
        centre = (box.row, box.col)
        side = round(max(VIEW_FIELD_FACTOR * max(box.height, box.width), VIEW_MIN_FIELD_MM / sp))
    crop = crop_square(u8, centre[0], centre[1], max(int(side), 2))
    return np.asarray(Image.fromarray(crop).resize((size_px, size_px), Image.Resampling.BICUBIC))


def view_field_mm(case: ReviewCase) -> float:
    """Side (mm) of the lesion-centred view of lesion_view."""
    box = case.lesion_boxes.get(Phase.ARTERIAL)
    sp = case.spacing_mm.get(Phase.ARTERIAL) or 1.0
    if box is None:
        return float(case.images[Phase.ARTERIAL].shape[0] * sp)
    return max(VIEW_FIELD_FACTOR * max(box.height, box.width) * sp, VIEW_MIN_FIELD_MM)


def time_attenuation(case: ReviewCase) -> Measurements:
    """Lesion, liver and aorta ROI means (HU) over U/A/D measured on the case's own images: the
    lesion box's central ellipse, the liver ROI (or a ring around the lesion) and the aorta
    (the case's, or found automatically)."""
    aorta = dict(case.aorta_centres)
    if not aorta:
        centre = locate_aorta(case.images, case.spacing_mm.get(Phase.ARTERIAL))
        aorta = dict.fromkeys(PHASES, centre) if centre is not None else {}
    return measure_case(case.images, case.spacing_mm, case.lesion_boxes, case.liver_centres, aorta)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_review_case(case_id: str, source: str, size: int | None, site_folder: str | None) -> ReviewCase:
    """A library entry's ReviewCase (review_case_for), cached: a phantom case is regenerated
    once, then reused. Call it as ``cached_review_case(*entry_key(entry))``."""
    if source == "site":
        return site_review_case(case_id, site_folder)
    return phantom_review_case(case_id, size=size)


def entry_key(entry: TeachingEntry) -> tuple[str, str, int | None, str | None]:
    """The arguments of cached_review_case for `entry`."""
    folder = site_cases_dir() if entry.source == "site" else None
    return entry.case_id, entry.source, entry.size, str(folder) if folder else None


def review_link(case_id: str, label: str = "Open on the Review page") -> None:
    """A link that opens `case_id` on the review page (``?case=<case_id>``): a page link inside
    the app's router; a plain relative link when a page runs on its own (tests, previews)."""
    from streamlit.errors import StreamlitAPIException

    try:
        st.page_link("pages/review.py", label=label, icon=":material/search:", query_params={"case": case_id})
    except StreamlitAPIException:
        st.markdown(f"[{label}](review?case={case_id})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the teaching library (cases/library.csv).")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="choose the phantom cases and write their list with findings")
    build.add_argument(
        "--out", default=str(DEFAULT_LIBRARY), help="CSV to write (default: cases/library.csv)"
    )
    args = parser.parse_args(argv)
    table = build_library(args.out)
    print(f"{len(table)} cases in {args.out}")
    for category in CATEGORIES:
        rows = table[table.category == category.value]
        subtypes = ", ".join(f"{s} {n}" for s, n in rows.subtype.value_counts().items())
        print(f"  {category.value}: {len(rows)} ({subtypes})")
    missing = [s for c, subs in SUBTYPES.items() for s in subs if s not in set(table.subtype)]
    if missing:
        print("  missing subtypes: " + ", ".join(missing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
