"""The phantom's numbers, from ../shared/docs/phantom.md (sections 2, 3 and 5) and paper.md.

Every attenuation here is HU at 120 kVp. Enhancements are given as increments over the
unenhanced value so that one patient-level contrast factor (0.8-1.2, cardiac output and bolus
timing) can scale all of them together, as the specification asks.
"""

from __future__ import annotations

from dataclasses import dataclass

from livercore.vocab import Category

# --- tissues: (unenhanced range, arterial increment range, delayed increment range) ---------
# Ranges are uniform draws per patient; medians fall inside phantom.md section 2.
TISSUE_HU: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "liver": ((51, 63), (20, 30), (36, 48)),  # U 57 +/- 6; A = U + 20-30; D 90-110
    "liver_cirrhotic": ((42, 58), (26, 34), (52, 60)),  # U ~50; A 75-85; D 100-115
    "aorta": ((35, 45), (255, 315), (85, 115)),  # A 290-360; D 120-160
    "portal_vein": ((35, 45), (85, 125), (85, 115)),  # A ~145 +/- 20; D ~ aorta
    "hepatic_vein": ((35, 45), (28, 48), (82, 112)),  # A 65-90, not yet filled; D ~ aorta
    "spleen": ((40, 50), (95, 115), (58, 72)),  # A ~150 arciform; D ~110
    "kidney_cortex": ((30, 45), (185, 215), (135, 165)),  # A ~240; D 160-200
    "kidney_medulla": ((28, 40), (45, 75), (140, 170)),  # corticomedullary in A; D nephrographic
    "muscle": ((45, 55), (5, 10), (15, 25)),
    "bowel_wall": ((35, 45), (30, 50), (35, 50)),
    "gallbladder": ((0, 20), (0, 0), (0, 0)),
    "fluid": ((0, 15), (0, 0), (0, 0)),
    "bowel_content": ((5, 30), (0, 0), (0, 0)),
    "fat": ((-115, -85), (0, 0), (0, 0)),
    "vertebra": ((150, 250), (10, 20), (20, 30)),
    "cortical_bone": ((450, 800), (0, 0), (0, 0)),
    "rib_marrow": ((180, 260), (5, 10), (10, 20)),
    "csf": ((5, 15), (0, 0), (0, 0)),
    "lung": ((-880, -820), (0, 0), (0, 0)),
    "air": ((-1000, -995), (0, 0), (0, 0)),
}

CONTRAST_FACTOR = (0.8, 1.2)  # patient-level scale on every enhancement

# --- geometry and scanners ------------------------------------------------------------------
MATRIX = 512
BODY_WIDTH_MM = (330.0, 35.0, 270.0, 410.0)  # normal mean, SD, clip low, clip high
PIXEL_SPACING_MM = (0.62, 0.82)


@dataclass(frozen=True)
class Vendor:
    code: str
    manufacturer: str
    model: str
    kernel: str
    contrast_thickness_mm: float  # arterial and delayed sections
    psf_sigma_mm: float  # in-plane PSF (MTF50 0.30-0.45 cycles/mm)
    noise_factor: float  # relative noise at equal dose (T SD index 13.0, G noise index 11.36)


VENDORS: dict[str, Vendor] = {
    "T": Vendor("T", "TOSHIBA", "Aquilion ONE (phantom)", "FC03", 3.0, 0.55, 1.04),
    "G": Vendor("G", "GE MEDICAL SYSTEMS", "Discovery CT750 HD (phantom)", "STANDARD", 2.5, 0.50, 0.96),
}
UNENHANCED_THICKNESS_MM = 5.0
NOISE_SD_HU = {"thick": (8.5, 11.5), "thin": (11.5, 15.5)}  # U 5 mm 8-12; A/D 11-16
NOISE_REFERENCE_WIDTH_MM = 330.0  # a body of this width gets the nominal noise
MISREGISTRATION_MM = 5.0  # in-plane organ shift between breath-holds, 0-5 mm
SECTION_JITTER_MM = 4.0  # craniocaudal section offset per phase, +/-4 mm (0-8 mm between phases)

# --- lesions --------------------------------------------------------------------------------
# Lesion diameter (mm): log-normal with the study's mean and SD per category, clipped 5-150.
SIZE_MM: dict[Category, tuple[float, float]] = {
    Category.A: (38.9, 32.2),
    Category.B: (33.7, 16.9),
    Category.C: (16.4, 8.3),
    Category.D: (27.3, 21.0),
    Category.E: (30.2, 42.6),
}
SIZE_CLIP_MM = (5.0, 150.0)

# Share of patients with a cirrhotic background by the category of their (first) lesion:
# clinical reality (common with A and C, rare with metastases, haemangioma and cyst).
CIRRHOSIS_SHARE: dict[Category, float] = {
    Category.A: 0.85,
    Category.B: 0.15,
    Category.C: 0.65,
    Category.D: 0.15,
    Category.E: 0.15,
}

# --- cohorts (image-set counts per category and subtype) ---------------------------------
TRAIN_2013_SUBTYPES: dict[str, int] = {
    "A/histology": 50,
    "A/imaging": 190,
    "B/icc": 16,
    "B/combined_hcc_icc": 12,
    "B/colorectal_metastasis": 72,
    "B/net_metastasis": 16,
    "B/other_malignant": 5,
    "C/hypervascular": 140,
    "C/hypovascular": 168,
    "C/other_benign": 12,
    "D/typical": 145,  # ~70% typical peripheral-nodular
    "D/flash_filling": 62,  # ~30% flash-filling
    "E/simple_cyst": 180,
}
TEST_2016_SUBTYPES: dict[str, int] = {
    "A/histology": 9,
    "A/imaging": 12,
    "B/icc": 3,
    "B/colorectal_metastasis": 2,
    "B/net_metastasis": 2,
    "B/other_malignant": 2,
    "C/hypervascular": 21,
    "C/hypovascular": 14,
    "D/typical": 14,
    "D/flash_filling": 6,
    "E/simple_cyst": 15,
}
# Test-2016 scanners per category (Toshiba, GE), paper.md.
TEST_2016_VENDORS: dict[Category, tuple[int, int]] = {
    Category.A: (6, 15),
    Category.B: (3, 6),
    Category.C: (11, 24),
    Category.D: (3, 17),
    Category.E: (6, 9),
}
TRAIN_2013_PATIENTS = 460
TRAIN_SECTIONS_PER_LESION = (0.55, 0.2, 0.12, 0.08, 0.05)  # P(1..5 sections); mean ~1.9
TRAIN_MAX_LESIONS_PER_PATIENT = 7
TRAIN_TOSHIBA_SHARE = 0.29  # the study's overall share, independent of category in training
