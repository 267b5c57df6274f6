"""A teaching case's findings in a radiologist's words, per phase.

One generator for every teaching case (stored example cases, regenerated phantom cases): built
from the case's ground-truth finding flags and the lesion-to-liver attenuation measured on its
own images. The attenuation words' thresholds follow the liver's noise on those images and are
stated in the text (iso_threshold_hu); a lesion that departs from its category's textbook
pattern says why it is still in that category.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from livercore.measure import measure_case
from livercore.preprocess import LesionBox
from livercore.vocab import PHASES, Category, Phase

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
