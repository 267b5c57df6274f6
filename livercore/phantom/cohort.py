"""Cohorts of phantom cases; a case is a pure function of (cohort, seed, index).

The layout of a cohort (which patient, lesion, section, category, subtype and scanner each
image set is) comes from (cohort, seed) alone; each case then draws from random streams keyed
by (cohort, seed, patient), (..., lesion) and (..., section), so any case can be made on its
own, on any machine, in any order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from livercore.phantom import anatomy, imaging, lesions, spec
from livercore.vocab import PHASES, Category, Phase

NAMED_COHORTS = ("train-2013", "test-2016")


@dataclass(frozen=True)
class ImageSet:
    """One row of a cohort's layout."""

    index: int
    case_id: str
    patient_id: str
    patient: int
    lesion: int
    section: int
    n_sections: int
    category: Category
    subtype: str
    vendor: str


@dataclass
class Case:
    """One phantom case: three phase images in HU and their ground truth."""

    image_set: ImageSet
    cohort: str
    seed: int
    hu: dict[Phase, np.ndarray]  # (512, 512) int16 HU per phase
    spacing_mm: float
    thickness_mm: dict[Phase, float]
    manufacturer: str
    lesion_center: dict[Phase, tuple[float, float]]  # (row, col) pixel centre
    liver_center: dict[Phase, tuple[float, float]]  # homogeneous liver ROI away from vessels/lesion
    aorta_center: dict[Phase, tuple[float, float]]
    lesion_diameter_mm: float  # in the arterial section
    flags: dict[str, bool]
    truth_liver_hu: dict[Phase, float]  # generator's liver value, for reference only
    noise_sd: dict[Phase, float]

    @property
    def case_id(self) -> str:
        return self.image_set.case_id

    @property
    def category(self) -> Category:
        return self.image_set.category

    @property
    def subtype(self) -> str:
        return self.image_set.subtype


def _cohort_key(cohort: str) -> int:
    return zlib.crc32(cohort.encode())


def _split_subtypes(counts: dict[str, int]) -> list[tuple[Category, str]]:
    return [(Category(k.split("/")[0]), k.split("/")[1]) for k, n in counts.items() for _ in range(n)]


def _largest_remainder(weights: dict[str, int], total: int) -> dict[str, int]:
    raw = {k: w * total / sum(weights.values()) for k, w in weights.items()}
    out = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[: total - sum(out.values())]:
        out[k] += 1
    return out


@lru_cache(maxsize=8)
def cohort_layout(cohort: str, seed: int = 0, size: int | None = None) -> tuple[ImageSet, ...]:
    """The image sets of a cohort. train-2013 and test-2016 follow the study; any other name
    gives `size` patients (default 100) with the test-2016 mix, one lesion each."""
    rng = np.random.default_rng([_cohort_key(cohort), seed, 7])
    key = f"{_cohort_key(cohort) ^ seed:08x}"[:6].upper()
    if cohort == "train-2013":
        rows = _train_layout(rng)
    else:
        counts = spec.TEST_2016_SUBTYPES
        if cohort != "test-2016" or size not in (None, 100):
            counts = _largest_remainder(spec.TEST_2016_SUBTYPES, size or 100)
        items = _split_subtypes(counts)
        order = rng.permutation(len(items))
        items = [items[i] for i in order]
        vendors = _vendors_by_category(rng, items)
        rows = [(i, 0, 0, 1, cat, sub, vendors[i]) for i, (cat, sub) in enumerate(items)]
    return tuple(
        ImageSet(i, f"{cohort}-{seed}-{i:04d}", f"PH{key}{pat:04d}", pat, les, sec, nsec, cat, sub, ven)
        for i, (pat, les, sec, nsec, cat, sub, ven) in enumerate(rows)
    )


def _vendors_by_category(rng: np.random.Generator, items: list[tuple[Category, str]]) -> list[str]:
    """Scanner per case with the test-2016 Toshiba/GE share within each category."""
    out = [""] * len(items)
    for cat, (t, g) in spec.TEST_2016_VENDORS.items():
        idx = [i for i, (c, _) in enumerate(items) if c is cat]
        n_t = round(len(idx) * t / (t + g))
        chosen = set(rng.choice(idx, n_t, replace=False).tolist()) if idx else set()
        for i in idx:
            out[i] = "T" if i in chosen else "G"
    return out


def _train_layout(rng: np.random.Generator) -> list[tuple]:
    """1068 image sets: lesions of 1-5 sections, grouped into 460 patients of up to 7 lesions."""
    lesions_: list[tuple[Category, str, int]] = []
    for key, n in spec.TRAIN_2013_SUBTYPES.items():
        cat, sub = Category(key[0]), key[2:]
        left = n
        while left > 0:
            k = min(int(rng.choice(5, p=spec.TRAIN_SECTIONS_PER_LESION)) + 1, left)
            lesions_.append((cat, sub, k))
            left -= k
    order = rng.permutation(len(lesions_))
    lesions_ = [lesions_[i] for i in order]
    n_pat = spec.TRAIN_2013_PATIENTS
    owner = list(range(min(n_pat, len(lesions_))))
    counts = [1] * len(owner)
    cat_of = {p: lesions_[p][0] for p in owner}
    for les in lesions_[len(owner) :]:
        # Extra lesions go to a patient who already has one of the same kind (multiple
        # metastases, cysts, haemangiomas, multifocal HCC), at most 7 per patient.
        same = [
            p
            for p in range(len(counts))
            if cat_of[p] is les[0] and counts[p] < spec.TRAIN_MAX_LESIONS_PER_PATIENT
        ]
        pool = same or [p for p in range(len(counts)) if counts[p] < spec.TRAIN_MAX_LESIONS_PER_PATIENT]
        p = int(rng.choice(pool))
        owner.append(p)
        counts[p] += 1
    vendor_of = ["T" if rng.random() < spec.TRAIN_TOSHIBA_SHARE else "G" for _ in range(n_pat)]
    rows = []
    lesion_no = [0] * n_pat
    for (cat, sub, k), p in sorted(zip(lesions_, owner, strict=True), key=lambda t: t[1]):
        for s in range(k):
            rows.append((p, lesion_no[p], s, k, cat, sub, vendor_of[p]))
        lesion_no[p] += 1
    return rows


def cohort_size(cohort: str, seed: int = 0, size: int | None = None) -> int:
    return len(cohort_layout(cohort, seed, size))


def _lognormal_diameter(rng: np.random.Generator, category: Category) -> float:
    mean, sd = spec.SIZE_MM[category]
    s2 = np.log(1 + (sd / mean) ** 2)
    return float(np.clip(rng.lognormal(np.log(mean) - s2 / 2, np.sqrt(s2)), *spec.SIZE_CLIP_MM))


def _lesion_diameter(rng: np.random.Generator, category: Category, subtype: str) -> float:
    d = _lognormal_diameter(rng, category)
    if subtype == "hypovascular":  # early HCC and dysplastic nodules are < 20 mm
        d = min(d, rng.uniform(8, 19.5))
    if subtype == "flash_filling" and rng.random() < 0.8:  # mostly < 20 mm
        d = min(d, rng.uniform(8, 20))
    return d


@dataclass(frozen=True)
class CaseDraws:
    """The draws of one image set before its section is rendered: the patient, the lesion and
    where the section lies against it. Shared by generate_case and the volume phantom
    (livercore.phantom.volume), so both make the same patient and lesion."""

    image_set: ImageSet
    cohort_key: int
    seed: int
    patient: anatomy.Patient
    plan: lesions.LesionPlan
    lesion_seed: int
    z0_mm: float  # the section's craniocaudal offset from the lesion centre (train-2013 sections)
    section_level: float  # anatomy.render_section's level of the section

    @property
    def thickness_mm(self) -> dict[Phase, float]:
        contrast = self.patient.vendor.contrast_thickness_mm
        return {
            Phase.UNENHANCED: spec.UNENHANCED_THICKNESS_MM,
            Phase.ARTERIAL: contrast,
            Phase.DELAYED: contrast,
        }

    def section_rng(self) -> np.random.Generator:
        """A fresh copy of the section's random stream (anatomy, placement, misregistration)."""
        s = self.image_set
        return np.random.default_rng([self.cohort_key, self.seed, 3, s.patient, s.lesion, s.section])

    def noise_rng(self) -> np.random.Generator:
        return np.random.default_rng([self.cohort_key, self.seed, 4, self.image_set.index])


def draw_case(cohort: str, seed: int, index: int, size: int | None = None) -> CaseDraws:
    """The patient and lesion draws of image set `index` of a cohort (no pixels yet)."""
    layout = cohort_layout(cohort, seed, size)
    iset = layout[index]
    ck = _cohort_key(cohort)
    prng, cirrhotic = _patient_background(layout, ck, seed, iset.patient)
    patient = anatomy.draw_patient(
        prng, vendor=iset.vendor, cirrhotic=cirrhotic, seed_sequence=[ck, seed, iset.patient]
    )
    lrng = np.random.default_rng([ck, seed, 2, iset.patient, iset.lesion])
    diameter = _lesion_diameter(lrng, iset.category, iset.subtype)
    level = float(lrng.uniform(0.15, 0.95))
    plan = lesions.plan_lesion(lrng, iset.category, iset.subtype, diameter)
    lesion_seed = int(lrng.integers(2**31))
    radius = diameter / 2
    # Sections of one lesion lie 5 mm apart (U sections every 5 mm) around the largest one.
    if iset.n_sections > 1:
        step = min(5.0, 1.2 * radius / (iset.n_sections - 1))
        z0 = (iset.section - (iset.n_sections - 1) / 2) * step
    else:
        z0 = 0.0
    return CaseDraws(iset, ck, seed, patient, plan, lesion_seed, z0, float(np.clip(level + z0 / 150, 0, 1)))


def place_lesion(
    draws: CaseDraws, section: anatomy.Section, srng: np.random.Generator
) -> tuple[tuple[float, float], list[float], list[tuple[lesions.LesionPlan, tuple[float, float]]]]:
    """The draws that follow the section: the lesion centre (x, y mm), each phase's
    craniocaudal offset of its section from the lesion centre (mm; the arterial one is z0)
    and the further lesions of a 'multiple' plan."""
    center_mm = _place(section, srng, draws.plan)
    z0 = draws.z0_mm
    # The arterial section is the reference (largest for test cases); the others differ by a
    # few mm craniocaudally (separate breath-holds).
    z_offsets = [
        z0 + srng.uniform(-spec.SECTION_JITTER_MM, spec.SECTION_JITTER_MM),
        z0,
        z0 + srng.uniform(-spec.SECTION_JITTER_MM, spec.SECTION_JITTER_MM),
    ]
    return center_mm, z_offsets, _extra_lesions(section, draws.plan, center_mm, draws.lesion_seed)


def misregistration_px(srng: np.random.Generator, spacing_mm: float) -> list[tuple[int, int]]:
    """In-plane (row, col) shift of U, A, D against the arterial reference, whole pixels."""
    offsets = np.rint(srng.uniform(-1, 1, (2, 2)) * spec.MISREGISTRATION_MM / spacing_mm / np.sqrt(2)).astype(
        int
    )
    return [(int(offsets[0, 0]), int(offsets[0, 1])), (0, 0), (int(offsets[1, 0]), int(offsets[1, 1]))]


def generate_case(
    cohort: str, seed: int, index: int, size: int | None = None, *, lesion: bool = True
) -> Case:
    """Make case `index` of a cohort: three phases at 512 x 512 in HU with ground truth.

    With ``lesion=False`` the same case is drawn with the lesion painted over by liver (the
    shortcut audit of phantom.md section 6): everything else, the crop position included, is
    identical, so a model that still tells the categories apart has found a shortcut.
    """
    draws = draw_case(cohort, seed, index, size)
    iset, patient, plan = draws.image_set, draws.patient, draws.plan
    srng = draws.section_rng()
    section = anatomy.render_section(patient, srng, draws.section_level)
    sp = patient.spacing_mm
    thickness = draws.thickness_mm
    radius = plan.radius_mm
    center_mm, z_offsets, extra = place_lesion(draws, section, srng)
    liver_hu = patient.hu["liver_parenchyma"]
    aorta_hu = patient.hu["aorta"]
    diameters = []
    for p, ph in enumerate(PHASES):
        if not lesion:
            diameters.append(plan.diameter_mm)
            continue
        chord = float(np.sqrt(max(1 - (z_offsets[p] / max(radius, 1e-3)) ** 2, 0.35**2)))
        if plan.flags["bile_duct_dilatation"]:
            lesions.paint_ducts(
                section.mobile, plan, center_mm, p, patient.hu["fluid"][0] + 8, draws.lesion_seed
            )
        for ex_plan, ex_center in extra:
            lesions.paint_lesion(
                section.mobile,
                ex_plan,
                ex_center,
                phase=p,
                chord_scale=1.0,
                liver_hu=liver_hu,
                aorta_hu=aorta_hu,
                thickness_mm=thickness[ph],
            )
        diameters.append(
            lesions.paint_lesion(
                section.mobile,
                plan,
                center_mm,
                phase=p,
                chord_scale=chord,
                liver_hu=liver_hu,
                aorta_hu=aorta_hu,
                thickness_mm=thickness[ph],
            )
        )

    # In-plane misregistration of U and D against the arterial reference, whole pixels.
    shifts = misregistration_px(srng, sp)
    size_factor = (patient.body_width_mm / spec.NOISE_REFERENCE_WIDTH_MM) ** 0.9
    nrng = draws.noise_rng()
    liver_center_mm = _liver_roi(section, srng, center_mm, radius)
    hu: dict[Phase, np.ndarray] = {}
    noise_sd: dict[Phase, float] = {}
    lesion_center, liver_center, aorta_center = {}, {}, {}
    ao_rc = section.fixed.to_pixel(*section.aorta_center_mm)
    for p, ph in enumerate(PHASES):
        img = imaging.composite(
            section.fixed.image[p], section.mobile.image[p], section.mobile.alpha, shifts[p]
        )
        img = imaging.blur(
            img, psf_sigma_mm=patient.vendor.psf_sigma_mm, thickness_mm=thickness[ph], spacing_mm=sp
        )
        band = spec.NOISE_SD_HU["thick" if ph is Phase.UNENHANCED else "thin"]
        sd = float(nrng.uniform(*band) * size_factor * patient.vendor.noise_factor)
        cutoff = 0.42 if patient.vendor.code == "T" else 0.45
        img += imaging.correlated_noise(nrng, spec.MATRIX, sp, sd, cutoff)
        hu[ph] = imaging.quantise(img)
        noise_sd[ph] = sd
        r, c = section.mobile.to_pixel(*center_mm)
        lesion_center[ph] = (r + shifts[p][0], c + shifts[p][1])
        r, c = section.mobile.to_pixel(*liver_center_mm)
        liver_center[ph] = (r + shifts[p][0], c + shifts[p][1])
        aorta_center[ph] = ao_rc

    flags = dict(plan.flags)
    flags["cirrhosis"] = patient.cirrhotic
    flags["multiple"] = flags["multiple"] and bool(extra)
    return Case(
        iset,
        cohort,
        seed,
        hu,
        sp,
        thickness,
        patient.vendor.manufacturer,
        lesion_center,
        liver_center,
        aorta_center,
        diameters[1],
        flags,
        {ph: float(liver_hu[i]) for i, ph in enumerate(PHASES)},
        noise_sd,
    )


def _patient_background(
    layout: tuple[ImageSet, ...], ck: int, seed: int, patient: int
) -> tuple[np.random.Generator, bool]:
    """The patient's random stream and whether their liver is cirrhotic; the category of their
    first lesion sets the background (cirrhosis) for all their image sets."""
    first = next(s for s in layout if s.patient == patient)
    prng = np.random.default_rng([ck, seed, 1, patient])
    return prng, bool(prng.random() < spec.CIRRHOSIS_SHARE[first.category])


def cirrhosis_flags(cohort: str, seed: int = 0, size: int | None = None) -> np.ndarray:
    """(N,) bool: which image sets of a cohort have a cirrhotic liver (without drawing them)."""
    layout = cohort_layout(cohort, seed, size)
    ck = _cohort_key(cohort)
    by_patient = {p: _patient_background(layout, ck, seed, p)[1] for p in {s.patient for s in layout}}
    return np.array([by_patient[s.patient] for s in layout], bool)


def _liver_pixels(section: anatomy.Section, threshold: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(section.liver_mask >= threshold)
    return rows, cols


def _to_mm(section: anatomy.Section, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = section.mobile.size / 2
    sp = section.mobile.spacing_mm
    return (cols + 0.5 - half) * sp, (rows + 0.5 - half) * sp


def _place(
    section: anatomy.Section, rng: np.random.Generator, plan: lesions.LesionPlan
) -> tuple[float, float]:
    """A lesion centre inside the liver, with its whole radius in the liver when it fits;
    pseudolesions sit under the capsule."""
    from scipy.ndimage import distance_transform_edt

    coarse = section.liver_mask[::4, ::4] > 0.5
    depth = distance_transform_edt(coarse) * 4 * section.mobile.spacing_mm  # mm to the liver edge
    want = plan.radius_mm + 4.0
    if plan.flags["pseudolesion"]:
        ok = (depth > plan.radius_mm * 0.3) & (depth < plan.radius_mm * 0.8 + 2)
    else:
        ok = depth >= min(want, depth.max() * 0.9)
    rows, cols = np.nonzero(ok)
    i = rng.integers(rows.size)
    x, y = _to_mm(section, rows[i : i + 1] * 4 + 1.5, cols[i : i + 1] * 4 + 1.5)
    return float(x[0]), float(y[0])


def _extra_lesions(
    section: anatomy.Section,
    plan: lesions.LesionPlan,
    center: tuple[float, float],
    seed: int,
) -> list[tuple[lesions.LesionPlan, tuple[float, float]]]:
    """Further small lesions of the same kind (several metastases or cysts in one slice)."""
    if not plan.flags["multiple"]:
        return []
    out = []
    erng = np.random.default_rng([seed, 5])
    rows, cols = _liver_pixels(section)
    if rows.size == 0:
        return []
    xs, ys = _to_mm(section, rows, cols)
    for _ in range(int(erng.integers(1, 4))):
        d = float(erng.uniform(5, max(6.0, min(plan.diameter_mm, 18))))
        far = np.hypot(xs - center[0], ys - center[1]) > plan.radius_mm + d + 8
        if not far.any():
            break
        j = int(erng.choice(np.nonzero(far)[0]))
        sub_plan = lesions.plan_lesion(erng, plan.category, plan.subtype, d)
        sub_plan.flags["multiple"] = False
        out.append((sub_plan, (float(xs[j]), float(ys[j]))))
    return out


def _liver_roi(
    section: anatomy.Section,
    rng: np.random.Generator,
    lesion_mm: tuple[float, float],
    radius: float,
) -> tuple[float, float]:
    """Centre of a homogeneous liver ROI (radius 5 mm) away from vessels and the lesion."""
    from scipy.ndimage import minimum_filter

    liver_u = section.mobile.image[0]
    target = (
        float(np.median(liver_u[section.liver_mask > 0.999])) if (section.liver_mask > 0.999).any() else 0.0
    )
    clean = (section.liver_mask > 0.999) & (np.abs(liver_u - target) < 12)
    clean[::, ::] &= np.abs(section.mobile.image[1] - np.median(section.mobile.image[1][clean])) < 15
    roi_px = int(np.ceil(6.0 / section.mobile.spacing_mm))
    clean = minimum_filter(clean.astype(np.uint8), size=2 * roi_px + 1) > 0
    rows, cols = np.nonzero(clean)
    xs, ys = _to_mm(section, rows, cols)
    far = np.hypot(xs - lesion_mm[0], ys - lesion_mm[1]) > radius + 15
    pick = np.nonzero(far)[0] if far.any() else np.arange(rows.size)
    if pick.size == 0:
        return lesion_mm[0] + radius + 20, lesion_mm[1]
    j = int(rng.choice(pick))
    return float(xs[j]), float(ys[j])
