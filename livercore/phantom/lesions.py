"""Liver lesions by category and subtype (phantom.md section 3).

A lesion is planned once from its own random stream (`plan_lesion`) and then painted into each
phase (`paint_lesion`), so that the same lesion keeps its shape, texture and enhancement
pattern across phases and sections; only the section's chord through it (craniocaudal offset)
changes its apparent size. Every value is set relative to the liver L and aorta Ao of the same
patient in the same phase, the way the category criteria are written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import map_coordinates

from livercore.phantom import shapes
from livercore.phantom.shapes import Canvas
from livercore.vocab import Category

FLAGS = (
    "aphe",
    "washout",
    "capsule",
    "mosaic",
    "necrosis",
    "rim_enhancement",
    "peripheral_nodular",
    "fill_in",
    "flash_filling",
    "central_scar",
    "calcification",
    "fat",
    "bile_duct_dilatation",
    "progressive_central",
    "nodule_in_nodule",
    "pseudolesion",
    "multiple",
)
TEXTURE_GRID = 48  # lesion textures live on this grid over [-1.3 R, 1.3 R]


@dataclass
class LesionPlan:
    """Everything random about one lesion, drawn once."""

    category: Category
    subtype: str
    diameter_mm: float
    axis_ratio: float
    theta: float
    lobes: tuple[tuple[int, float, float], ...]
    params: dict[str, float]
    flags: dict[str, bool]
    textures: np.ndarray = field(repr=False)  # (2, G, G) unit-SD smooth fields
    spots: list[tuple[float, float, float]] = field(default_factory=list)  # (u, v, radius) in R units

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def plan_lesion(rng: np.random.Generator, category: Category, subtype: str, diameter_mm: float) -> LesionPlan:
    """Draw a lesion of `category`/`subtype` and diameter (mm) at its largest section."""
    f = dict.fromkeys(FLAGS, False)
    p: dict[str, float] = {}
    lobes: list[tuple[int, float, float]] = [(2, 0.03, _u(rng, 0, 6.3)), (3, 0.02, _u(rng, 0, 6.3))]
    textures = np.stack([shapes.smooth_field(rng, (TEXTURE_GRID, TEXTURE_GRID), 2.5) for _ in range(2)])
    spots: list[tuple[float, float, float]] = []
    big = diameter_mm > 50

    if category is Category.A:
        p.update(dU=-_u(rng, 5, 15), dA=_u(rng, 28, 52), dD=-_u(rng, 10, 25))
        if subtype == "histology" and rng.random() < 0.25:  # atypical: no objective washout
            p["dD"] = -_u(rng, 0, 6)
        f["mosaic"] = rng.random() < 0.82
        f["capsule"] = rng.random() < 0.8
        p["capsule_mm"] = _u(rng, 0.8, 2.0)
        p["capsule_dD"] = _u(rng, 10, 25)
        if big:
            f["necrosis"] = rng.random() < 0.7
            p["necrosis_rho"] = _u(rng, 0.3, 0.55)
            p["necrosis_hu"] = _u(rng, 15, 35)
            if rng.random() < 0.5:  # large tumours: gradual fill-in, often no objective washout
                p["dD"] = _u(rng, -8, 2)
        f["aphe"] = True
        f["washout"] = p["dD"] <= -8
    elif category is Category.B:
        if subtype == "colorectal_metastasis":
            lobes.append((5, 0.05, _u(rng, 0, 6.3)))
            p.update(dU=-_u(rng, 10, 25), dA=-_u(rng, 20, 45), dD=-_u(rng, 20, 40))
            f["rim_enhancement"] = rng.random() < 0.8
            p.update(
                rim_mm=_u(rng, 1.5, 3) if rng.random() < 0.5 else _u(rng, 3, 6),
                rim_dA=_u(rng, 0, 25),
                rim_dD=-_u(rng, 0, 10),
            )
            if rng.random() < 0.1:
                f["calcification"] = True
                spots = [
                    (_u(rng, -0.5, 0.5), _u(rng, -0.5, 0.5), _u(rng, 0.05, 0.12))
                    for _ in range(rng.integers(1, 4))
                ]
                p["calc_hu"] = _u(rng, 200, 500)
            f["multiple"] = rng.random() < 0.4
        elif subtype == "icc":
            lobes += [(3, 0.1, _u(rng, 0, 6.3)), (5, 0.07, _u(rng, 0, 6.3))]
            p.update(
                dU=-_u(rng, 10, 20),
                dA=-_u(rng, 15, 35),
                rim_mm=_u(rng, 2, 5),
                rim_dA=_u(rng, 5, 20),
            )
            f["rim_enhancement"] = rng.random() < 0.57
            f["progressive_central"] = rng.random() < 0.72
            p["dD"] = _u(rng, 0, 15) if f["progressive_central"] else -_u(rng, 5, 15)
            p["rim_dD"] = -_u(rng, 0, 10)
            f["bile_duct_dilatation"] = rng.random() < 0.52
            p["duct_angle"] = _u(rng, 0, 6.3)
        elif subtype == "net_metastasis":
            hyper = rng.random() < 0.7
            p["dU"] = -_u(rng, 5, 15)
            p["dA"], p["dD"] = (
                (_u(rng, 30, 65), -_u(rng, 0, 15)) if hyper else (-_u(rng, 10, 30), -_u(rng, 10, 25))
            )
            f["aphe"] = hyper
            f["multiple"] = rng.random() < 0.5
        elif subtype == "combined_hcc_icc":
            lobes.append((3, 0.08, _u(rng, 0, 6.3)))
            p.update(
                dU=-_u(rng, 8, 18),
                dA=_u(rng, 25, 45),
                dD=-_u(rng, 10, 20),
                dA2=-_u(rng, 10, 25),
                dD2=_u(rng, 0, 12),
                split=_u(rng, 0, 6.3),
            )
            f.update(aphe=True, washout=True, progressive_central=True)
        else:  # other malignant: hypovascular, heterogeneous
            p.update(
                dU=-_u(rng, 8, 20),
                dA=-_u(rng, 5, 25),
                dD=-_u(rng, 5, 20),
                rim_mm=_u(rng, 1.5, 4),
                rim_dA=_u(rng, 5, 15),
                rim_dD=-_u(rng, 0, 5),
                hetero=8.0,
            )
            f["rim_enhancement"] = rng.random() < 0.4
    elif category is Category.C:
        if subtype == "hypervascular":
            kind = rng.random()
            if kind < 0.25:
                f["pseudolesion"] = True
                p.update(dU=_u(rng, -3, 3), dA=_u(rng, 15, 35), dD=_u(rng, -5, 5))
            elif kind < 0.45:
                f["central_scar"] = True
                lobes.append((4, 0.05, _u(rng, 0, 6.3)))
                p.update(dU=-_u(rng, 0, 6), dA=_u(rng, 25, 45), dD=_u(rng, -5, 5), scar_dD=_u(rng, 5, 15))
            else:
                p.update(dU=-_u(rng, 0, 8), dA=_u(rng, 15, 40), dD=_u(rng, -8, 8))
            f["aphe"] = True
        elif subtype == "hypovascular":
            p.update(dU=-_u(rng, 0, 10), dA=-_u(rng, 0, 25), dD=-_u(rng, 0, 15))
            if rng.random() < 0.1:
                f["nodule_in_nodule"] = True
                spots = [(_u(rng, -0.3, 0.3), _u(rng, -0.3, 0.3), _u(rng, 0.25, 0.35))]
                p["nin_dA"] = _u(rng, 25, 40)
        else:  # adenoma or angiomyolipoma
            if rng.random() < 0.6:
                p.update(dU=-_u(rng, 0, 8), dA=_u(rng, 15, 40), dD=-_u(rng, 0, 10), hetero=10.0)
                f["aphe"] = True
            else:
                f["fat"] = True
                p.update(
                    dU=-_u(rng, 5, 15),
                    dA=_u(rng, 20, 40),
                    dD=_u(rng, -5, 5),
                    fat_hu=-_u(rng, 30, 100),
                )
    elif category is Category.D:
        lobes.append((4, 0.04, _u(rng, 0, 6.3)))
        p.update(blood_U=_u(rng, -4, 4), pool_A=_u(rng, 0.75, 1.0), pool_D=_u(rng, 0.9, 1.05))
        if subtype == "flash_filling":
            f.update(flash_filling=True, aphe=True)
        else:
            f.update(peripheral_nodular=True, fill_in=True)
            n = int(rng.integers(4, 10))
            spots = [
                (float(np.cos(t)) * 0.86, float(np.sin(t)) * 0.86, _u(rng, 0.1, 0.22))
                for t in np.sort(rng.uniform(0, 2 * np.pi, n))
            ]
            # By 180 s most of the lesion has filled in; large ones keep an unfilled centre.
            fill = _u(rng, 0.25, 0.5) if diameter_mm > 40 else _u(rng, 0.0, 0.3)
            p.update(core_dA=_u(rng, 3, 10), fill_rho=fill, cleft=float(diameter_mm > 40))
    else:  # cyst
        lobes = [(2, 0.02, _u(rng, 0, 6.3))]
        base = _u(rng, 2, 15)
        p.update(base=base, dA=_u(rng, 0, 4), dD=_u(rng, 0, 5))
        f["multiple"] = rng.random() < 0.3
    return LesionPlan(
        category,
        subtype,
        diameter_mm,
        _u(rng, 0.75, 1.0),
        _u(rng, 0, np.pi),
        tuple(lobes),
        p,
        f,
        textures,
        spots,
    )


def _texture(plan: LesionPlan, u: np.ndarray, v: np.ndarray, which: int) -> np.ndarray:
    g = TEXTURE_GRID
    coords = np.stack([(v + 1.3) / 2.6 * (g - 1), (u + 1.3) / 2.6 * (g - 1)])
    coords = np.broadcast_to(coords, (2, *np.broadcast_shapes(u.shape, v.shape)))
    return map_coordinates(plan.textures[which], coords, order=1, mode="nearest").astype(np.float32)


def lesion_values(
    plan: LesionPlan,
    u: np.ndarray,
    v: np.ndarray,
    rho: np.ndarray,
    phase: int,
    liver: float,
    aorta_hu: tuple[float, float, float],
    radius_mm: float,
) -> np.ndarray:
    """HU of the lesion at normalised coordinates (u, v in lesion radii; rho = 0 centre, 1 edge).

    `liver` is the liver HU in this phase, `aorta_hu` the aorta HU in the three phases.
    """
    p, f, cat = plan.params, plan.flags, plan.category
    tex = _texture(plan, u, v, 0)
    delta_key = ("dU", "dA", "dD")[phase]
    out = np.full(rho.shape, liver, np.float32)

    if cat is Category.E:
        return out * 0 + p["base"] + (0.0, p["dA"], p["dD"])[phase]
    if cat is Category.D:
        blood = aorta_hu[0] + p["blood_U"]
        if f["flash_filling"]:
            return out * 0 + (blood, aorta_hu[1] * p["pool_A"], aorta_hu[2] * p["pool_D"])[phase]
        core = blood + (0.0, p["core_dA"], 0.0)[phase]
        out[:] = core
        if phase == 1:
            for su, sv, sr in plan.spots:  # discontinuous peripheral nodules near the blood pool
                nod = np.clip(1.5 - np.hypot(u - su, v - sv) / sr, 0, 1)
                out += nod * (aorta_hu[1] * p["pool_A"] - out)
        elif phase == 2:
            filled = 0.4 + 0.6 * np.clip((rho - p["fill_rho"]) / 0.15 + 0.5, 0, 1)
            out += filled * (aorta_hu[2] * p["pool_D"] - core)
        if p["cleft"] and phase > 0:
            cleft = rho < 0.2 * (1 + 0.5 * np.cos(4 * np.arctan2(v, u))) + 0.05 * tex
            out[cleft] = blood + 3
        return out

    out += p[delta_key]
    if cat is Category.A:
        if f["mosaic"]:
            out += (2.0, 0.35 * p["dA"], 4.0)[phase] * tex
            septa = np.abs(_texture(plan, u, v, 1)) < 0.12
            if phase == 1:
                out[septa] -= 0.5 * p["dA"]
        if f["capsule"]:
            cap = rho > 1 - p["capsule_mm"] / radius_mm
            out[cap] = liver + (-3.0, 2.0, p["capsule_dD"])[phase]
        if f["necrosis"]:
            nec = rho < p["necrosis_rho"] * (1 + 0.25 * tex)
            out[nec] = p["necrosis_hu"] + (0.0, 3.0, 3.0)[phase]
    elif cat is Category.B:
        if plan.subtype == "combined_hcc_icc":
            side = (u * np.cos(p["split"]) + v * np.sin(p["split"])) > 0.1 * tex
            alt = liver + (p["dU"], p["dA2"], p["dD2"])[phase]
            out = np.where(side, out, alt).astype(np.float32)
        if "hetero" in p:
            out += p["hetero"] * tex * (phase > 0)
        if f["rim_enhancement"]:
            width = (
                p["rim_mm"]
                / radius_mm
                * (1 + (0.4 * np.cos(3 * np.arctan2(v, u)) if plan.subtype == "icc" else 0))
            )
            rim = rho > 1 - width
            out[rim] = liver + (p["dU"], p["rim_dA"], p["rim_dD"])[phase]
        if f["progressive_central"] and plan.subtype == "icc" and phase == 2:
            out += 4 * tex
        if f["calcification"]:
            for su, sv, sr in plan.spots:
                out[np.hypot(u - su, v - sv) < sr] = p["calc_hu"]
    elif cat is Category.C:
        if "hetero" in p:
            out += p["hetero"] * tex * (phase > 0)
        if f["central_scar"]:
            scar = rho < 0.22 * (1 + 0.5 * np.cos(5 * np.arctan2(v, u)))
            out[scar] = liver + (-10.0, -5.0, p["scar_dD"])[phase]
            out[~scar] = np.minimum(out[~scar], 0.5 * aorta_hu[1]) if phase == 1 else out[~scar]
        if f["fat"]:
            out[tex > 0.3] = p["fat_hu"]
        if f["nodule_in_nodule"] and phase == 1:
            su, sv, sr = plan.spots[0]
            out[np.hypot(u - su, v - sv) < sr] = liver + p["nin_dA"]
    return out


def paint_lesion(
    canvas: Canvas,
    plan: LesionPlan,
    center_mm: tuple[float, float],
    *,
    phase: int,
    chord_scale: float,
    liver_hu: tuple[float, float, float],
    aorta_hu: tuple[float, float, float],
    thickness_mm: float,
    edge_mm: float = 0.7,
) -> float:
    """Paint the lesion into one phase image; returns the in-plane diameter (mm) drawn.

    `chord_scale` (0-1] is the section's chord through the lesion relative to its largest
    section. Lesions small against the slice thickness lose contrast (partial volume).
    """
    radius = plan.radius_mm * chord_scale
    a, b = radius, radius * plan.axis_ratio
    reach = radius * 1.3 + edge_mm
    box, x, y = canvas.grid(center_mm[0], center_mm[1], reach)
    dist, boundary = shapes.polar_radius(x, y, a, b, plan.theta, plan.lobes)
    rho = dist / boundary
    ct, st = np.cos(plan.theta), np.sin(plan.theta)
    u, v = (x * ct + y * st) / radius, (-x * st + y * ct) / radius
    liver = liver_hu[phase]
    values = lesion_values(plan, u, v, rho, phase, liver, aorta_hu, radius)
    diameter = 2 * np.sqrt(a * b)
    partial = 1 - np.exp(-diameter / (0.8 * thickness_mm))
    values = liver + partial * (values - liver)
    mask = shapes.ramp(dist - boundary, edge_mm)
    region = canvas.image[phase][box]
    region += mask * (values - region)
    np.maximum(canvas.alpha[box], mask, out=canvas.alpha[box])
    return float(diameter)


def paint_ducts(
    canvas: Canvas,
    plan: LesionPlan,
    center_mm: tuple[float, float],
    phase: int,
    bile_hu: float,
    rng_seed: int,
) -> None:
    """Dilated bile ducts upstream of an ICC: non-enhancing tubes running away from the lesion."""
    rng = np.random.default_rng(rng_seed)
    r = plan.radius_mm
    for _ in range(int(rng.integers(2, 4))):
        ang = plan.params["duct_angle"] + rng.uniform(-0.7, 0.7)
        p0 = (center_mm[0] + np.cos(ang) * r * 0.9, center_mm[1] + np.sin(ang) * r * 0.9)
        length = rng.uniform(15, 35)
        p1 = (p0[0] + np.cos(ang) * length, p0[1] + np.sin(ang) * length)
        shapes.capsule(_PhaseView(canvas, phase), p0, p1, rng.uniform(1.5, 3.0), [bile_hu])


class _PhaseView(Canvas):
    """A view of one phase of a canvas, so single-phase painting reuses the shape functions."""

    def __init__(self, parent: Canvas, phase: int) -> None:
        self.size, self.spacing_mm = parent.size, parent.spacing_mm
        self.image = parent.image[phase : phase + 1]
        self.alpha = parent.alpha
