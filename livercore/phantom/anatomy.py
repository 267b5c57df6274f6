"""A whole axial abdominal section at liver level, in three phases.

The patient is drawn once (body size, fat, slice level, cirrhosis, contrast factor, per-tissue
HU); organs are split in two layers: the *fixed* body wall, bones and aorta, and the *mobile*
organs (liver and its vessels, IVC, lungs, spleen, stomach, kidneys, bowel), which move
between breath-holds. Image orientation is radiological: patient right on the image left,
anterior at the top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import zoom

from livercore.phantom import shapes, spec
from livercore.phantom.shapes import Canvas


@dataclass
class Patient:
    """Patient-level draws shared by every image set of one patient."""

    vendor: spec.Vendor
    body_width_mm: float
    body_depth_mm: float
    spacing_mm: float
    fat_mm: float
    contrast_factor: float
    cirrhotic: bool
    ascites: bool
    hu: dict[str, tuple[float, float, float]]
    seed_sequence: list[int] = field(repr=False)
    spine: tuple[float, float] = (0.0, 0.0)  # vertebral body centre y and radius (mm), per section

    @property
    def inner(self) -> tuple[float, float]:
        """Semi-axes (mm) of the abdominal cavity inside fat and muscle wall."""
        wall = self.fat_mm + 9.0
        return self.body_width_mm / 2 - wall, self.body_depth_mm / 2 - wall


def draw_patient(
    rng: np.random.Generator, *, vendor: str, cirrhotic: bool, seed_sequence: list[int]
) -> Patient:
    mean, sd, lo, hi = spec.BODY_WIDTH_MM
    width = float(np.clip(rng.normal(mean, sd), lo, hi))
    depth = width * rng.uniform(0.68, 0.8)
    # The scanner's field of view follows body size, which sets the pixel spacing.
    spacing = float(np.clip(width * rng.uniform(1.04, 1.14) / spec.MATRIX, *spec.PIXEL_SPACING_MM))
    fat = float(np.clip(8 + (width - 290) * 0.18 + rng.normal(0, 5), 5, 40))
    k = rng.uniform(*spec.CONTRAST_FACTOR)
    hu: dict[str, tuple[float, float, float]] = {}
    for name, (u_rng, a_rng, d_rng) in spec.TISSUE_HU.items():
        u = rng.uniform(*u_rng)
        hu[name] = (u, u + k * rng.uniform(*a_rng), u + k * rng.uniform(*d_rng))
    hu["liver_parenchyma"] = hu["liver_cirrhotic"] if cirrhotic else hu["liver"]
    return Patient(
        vendor=spec.VENDORS[vendor],
        body_width_mm=width,
        body_depth_mm=depth,
        spacing_mm=spacing,
        fat_mm=fat,
        contrast_factor=k,
        cirrhotic=cirrhotic,
        ascites=cirrhotic and rng.random() < 0.25,
        hu=hu,
        seed_sequence=seed_sequence,
    )


@dataclass
class Section:
    """One table position through the patient: where the organs lie at this level."""

    level: float  # 0 = liver dome (lungs behind), 1 = lower liver (kidneys, gallbladder)
    liver_mask: np.ndarray  # (H, W) partial-volume fraction of liver, before misregistration
    aorta_center_mm: tuple[float, float]
    fixed: Canvas
    mobile: Canvas


def render_section(patient: Patient, rng: np.random.Generator, level: float) -> Section:
    """Render the fixed and mobile layers of one section (no lesion, no imaging chain)."""
    p, hu = patient, patient.hu
    size, sp = spec.MATRIX, patient.spacing_mm
    a, b = p.body_width_mm / 2, p.body_depth_mm / 2
    ai, bi = p.inner

    fixed = Canvas(size, sp, fill=hu["air"])
    shapes.ellipse(fixed, 0, 0, a, b, hu["fat"], edge_mm=1.0)
    shapes.ellipse(fixed, 0, 0, ai + 9, bi + 9, hu["muscle"], edge_mm=1.0)
    shapes.ellipse(fixed, 0, 0, ai, bi, hu["fat"], edge_mm=1.0)
    _ribs(fixed, rng, ai + 4.5, bi + 4.5, hu)
    yv = bi * 0.62
    rv = rng.uniform(15, 19)
    p.spine = (yv, rv)
    for side in (-1, 1):  # paraspinal and psoas-like muscles
        shapes.ellipse(fixed, side * (rv + 16), yv + rv * 0.9, 20, 17, hu["muscle"], theta=side * 0.3)
    shapes.ellipse(fixed, 0, yv, rv * 1.15, rv, hu["cortical_bone"], edge_mm=0.8)
    shapes.ellipse(fixed, 0, yv, rv * 1.15 - 2, rv - 2, hu["vertebra"], edge_mm=0.8)
    shapes.ellipse(fixed, 0, yv + rv + 9, 9, 11, hu["cortical_bone"])
    shapes.ellipse(fixed, 0, yv + rv + 8, 6.5, 6.5, hu["csf"])
    ao = (rng.uniform(8, 16), yv - rv - rng.uniform(11, 14))
    r_ao = rng.uniform(10, 13)
    shapes.ellipse(fixed, *ao, r_ao + 1.2, r_ao + 1.2, hu["bowel_wall"])  # aortic wall
    shapes.ellipse(fixed, *ao, r_ao, r_ao, hu["aorta"])

    mobile = Canvas(size, sp, fill=hu["fat"])
    liver_mask = _liver_mask(mobile, rng, p, level, spine=(0.0, yv, rv))
    if p.ascites:
        grown = _dilate(liver_mask, 4.0 / sp)
        mobile.paint((slice(None), slice(None)), grown, hu["fluid"])
    _paint_liver(mobile, rng, p, liver_mask)
    _liver_vessels(mobile, rng, p, liver_mask, level, ivc=(-rng.uniform(18, 26), yv - rv - 20))
    if level > 0.45 and rng.random() < 0.45:
        gb = (-ai * rng.uniform(0.05, 0.25), bi * rng.uniform(-0.05, 0.15))
        shapes.ellipse(
            mobile,
            *gb,
            rng.uniform(10, 16),
            rng.uniform(16, 26),
            hu["gallbladder"],
            theta=rng.uniform(-0.6, 0.2),
        )
    _organs(mobile, rng, p, level, liver_mask)
    if level < 0.35:  # posterior costophrenic recesses at the dome, beside the spine
        extent = (0.35 - level) / 0.35
        for side in (-1, 1):
            shapes.ellipse(
                mobile,
                side * ai * 0.52,
                bi * 0.62,
                ai * (0.16 + 0.14 * extent),
                bi * (0.12 + 0.14 * extent),
                hu["lung"],
                theta=side * 0.5,
                edge_mm=1.0,
            )
    # Where other organs, vessels or lungs were painted over the liver, it is no longer liver:
    # lesions are placed (and liver ROIs taken) only where the parenchyma is still visible.
    liver_hu = hu["liver_parenchyma"]
    visible = (np.abs(mobile.image[0] - liver_hu[0]) < 15) & (np.abs(mobile.image[1] - liver_hu[1]) < 20)
    return Section(level, liver_mask * visible, ao, fixed, mobile)


def _dilate(mask: np.ndarray, pixels: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.clip(gaussian_filter(mask, pixels / 2) * 2.2, 0, 1).astype(np.float32)


def _ribs(canvas: Canvas, rng: np.random.Generator, ra: float, rb: float, hu: dict) -> None:
    angles = np.concatenate(
        [
            np.linspace(-2.7, -0.5, 5),
            np.linspace(0.35, 1.1, 3),
            np.linspace(2.05, 2.8, 3),
        ]
    )
    for phi in angles + rng.normal(0, 0.06, angles.size):
        if rng.random() < 0.15:
            continue
        x, y = ra * np.cos(phi), rb * np.sin(phi)
        shapes.ellipse(canvas, x, y, 7, 4.5, hu["cortical_bone"], theta=phi + np.pi / 2)
        shapes.ellipse(canvas, x, y, 5.2, 2.8, hu["rib_marrow"], theta=phi + np.pi / 2)


def _liver_mask(
    canvas: Canvas,
    rng: np.random.Generator,
    p: Patient,
    level: float,
    spine: tuple[float, float, float],
) -> np.ndarray:
    """Partial-volume liver fraction (H, W): right and left lobes inside the cavity, spine excluded."""
    ai, bi = p.inner
    # Evaluated on a half-resolution grid (the boundary ramp is smooth), then upsampled.
    half = Canvas(canvas.size // 2, canvas.spacing_mm * 2)
    _, x, y = half.grid(0.0, 0.0, half.size * half.spacing_mm / 2)
    shrink = 0.85 if p.cirrhotic else 1.0
    surface = (
        tuple((int(k), 0.012, rng.uniform(0, 6.3)) for k in rng.integers(14, 30, 3)) if p.cirrhotic else ()
    )
    size_at_level = 1.0 - 0.25 * abs(level - 0.45)
    right_c = (-ai * rng.uniform(0.38, 0.48), -bi * rng.uniform(-0.02, 0.1))
    d, bnd = shapes.polar_radius(
        x - right_c[0],
        y - right_c[1],
        ai * 0.56 * shrink * size_at_level,
        bi * 0.85 * size_at_level,
        rng.uniform(-0.2, 0.2),
        ((2, 0.04, rng.uniform(0, 6.3)), *surface),
    )
    right = shapes.ramp(d - bnd, 1.0)
    left_scale = (1.2 if p.cirrhotic else 1.0) * (1.0 - 0.5 * max(level - 0.6, 0))
    left_c = (ai * rng.uniform(-0.05, 0.12), -bi * rng.uniform(0.42, 0.55))
    d, bnd = shapes.polar_radius(
        x - left_c[0],
        y - left_c[1],
        ai * 0.4 * left_scale,
        bi * 0.26 * left_scale,
        rng.uniform(-0.35, -0.05),
        surface,
    )
    left = shapes.ramp(d - bnd, 1.0)
    d, bnd = shapes.polar_radius(x, y, ai - 1.5, bi - 1.5, 0.0)
    cavity = shapes.ramp(d - bnd, 1.0)
    sx, sy, sr = spine
    d, bnd = shapes.polar_radius(x - sx - 6, y - sy + 4, sr + 24, sr + 30, 0.0)
    spine_zone = shapes.ramp(d - bnd, 2.0)
    d, bnd = shapes.polar_radius(x - ai * 0.45, y - bi * 0.2, ai * 0.42, bi * 0.6, 0.4)
    left_upper_quadrant = shapes.ramp(d - bnd, 2.0)  # spleen and stomach territory
    mask = np.maximum(right, left) * cavity * (1 - spine_zone) * (1 - left_upper_quadrant)
    return np.clip(zoom(mask, 2, order=1, grid_mode=True, mode="nearest"), 0, 1).astype(np.float32)


def _paint_liver(canvas: Canvas, rng: np.random.Generator, p: Patient, mask: np.ndarray) -> None:
    """Liver parenchyma with its texture: fine in a normal liver; regenerative nodules and
    fibrotic septa (hypo before, hyper after contrast) in a cirrhotic one."""
    hu = p.hu["liver_parenchyma"]
    shape = mask.shape
    px = 1.0 / p.spacing_mm
    texture = shapes.smooth_field(rng, shape, 2.5 * px) * 2.5
    values = [hu[i] + texture for i in range(3)]
    if p.cirrhotic:
        nodules = shapes.smooth_field(rng, shape, 2.2 * px)
        septa = np.exp(-((nodules / 0.22) ** 2)).astype(np.float32)  # thin walls between nodules
        for i, amp in enumerate((-4.0, -3.0, 7.0)):
            values[i] = values[i] + amp * septa + 2.0 * nodules
    canvas.paint((slice(None), slice(None)), mask, values)


def _liver_vessels(
    canvas: Canvas,
    rng: np.random.Generator,
    p: Patient,
    mask: np.ndarray,
    level: float,
    ivc: tuple[float, float],
) -> None:
    """Portal branches from the hilum, hepatic veins towards the IVC, small vessels in section."""
    hu = p.hu
    ai, bi = p.inner
    shapes.ellipse(canvas, *ivc, rng.uniform(11, 15), rng.uniform(8, 11), hu["hepatic_vein"])
    rows, cols = np.nonzero(mask > 0.99)
    if rows.size == 0:
        return

    def liver_point() -> tuple[float, float]:
        i = rng.integers(rows.size)
        return (cols[i] + 0.5 - canvas.size / 2) * canvas.spacing_mm, (
            rows[i] + 0.5 - canvas.size / 2
        ) * canvas.spacing_mm

    hilum = (-ai * rng.uniform(0.12, 0.22), bi * rng.uniform(0.0, 0.12))
    if level > 0.3:
        for _ in range(rng.integers(2, 5)):
            end = liver_point()
            mid = ((hilum[0] + end[0]) / 2, (hilum[1] + end[1]) / 2)
            shapes.capsule(canvas, hilum, mid, rng.uniform(3.5, 6.5), hu["portal_vein"])
            shapes.capsule(canvas, mid, end, rng.uniform(1.5, 3.0), hu["portal_vein"])
    if level < 0.7:
        for _ in range(rng.integers(2, 4)):
            end = liver_point()
            shapes.capsule(canvas, ivc, end, rng.uniform(2.0, 4.5), hu["hepatic_vein"])
    for _ in range(rng.integers(12, 25)):  # small vessels cut across
        c = liver_point()
        r = rng.uniform(0.9, 2.2)
        name = "portal_vein" if rng.random() < 0.5 else "hepatic_vein"
        shapes.ellipse(canvas, *c, r, r * rng.uniform(1, 2.5), hu[name], theta=rng.uniform(0, 3.1))


def _organs(
    canvas: Canvas, rng: np.random.Generator, p: Patient, level: float, liver_mask: np.ndarray
) -> None:
    hu = p.hu
    ai, bi = p.inner
    if level < 0.85:
        grow = 1.2 if p.cirrhotic else 1.0
        sc = (ai * rng.uniform(0.6, 0.7), bi * rng.uniform(0.18, 0.35))
        shape = (ai * 0.2 * grow, bi * 0.45 * grow)
        box, x, y = canvas.grid(sc[0], sc[1], max(shape) * 1.2)
        d, bnd = shapes.polar_radius(x, y, *shape, 0.55)
        # Arciform (zebra) enhancement in the arterial phase: bands along the long axis.
        bands = np.sin((x * np.cos(0.55) + y * np.sin(0.55)) * rng.uniform(0.12, 0.2) + rng.uniform(0, 6.3))
        spleen_values = [hu["spleen"][0], hu["spleen"][1] + 18 * bands, hu["spleen"][2]]
        canvas.paint(box, shapes.ramp(d - bnd, 1.0), spleen_values)
    if level < 0.75:
        st = (ai * rng.uniform(0.25, 0.4), -bi * rng.uniform(0.2, 0.35))
        sa, sb = ai * rng.uniform(0.18, 0.26), bi * rng.uniform(0.18, 0.26)
        shapes.ellipse(canvas, *st, sa, sb, hu["bowel_wall"], theta=0.3)
        shapes.ellipse(canvas, *st, sa - 4, sb - 4, hu["bowel_content"], theta=0.3)
        if rng.random() < 0.7:  # gas rises anteriorly in a supine patient
            shapes.ellipse(
                canvas,
                st[0],
                st[1] - sb * 0.55,
                sa * 0.6,
                sb * 0.3,
                hu["air"],
                theta=0.3,
                edge_mm=0.6,
            )
    yv, rv = p.spine
    for side, start in ((-1, 0.55), (1, 0.45)):
        if level > start:  # kidneys lie beside the spine, behind the liver and spleen
            kc = (side * (rv + rng.uniform(38, 48)), yv - rng.uniform(0, 10))
            grow = min(1.0, (level - start) * 4 + 0.5)
            ka, kb = rng.uniform(20, 26) * grow, rng.uniform(14, 19) * grow
            shapes.ellipse(canvas, *kc, ka + 4, kb + 4, hu["fat"], theta=side * 1.0)
            shapes.ellipse(canvas, *kc, ka, kb, hu["kidney_cortex"], theta=side * 1.0)
            shapes.ellipse(canvas, *kc, ka * 0.62, kb * 0.62, hu["kidney_medulla"], theta=side * 1.0)
    if level > 0.65:
        for _ in range(rng.integers(1, 4)):
            bc = (ai * rng.uniform(0.0, 0.45), -bi * rng.uniform(0.2, 0.6))  # colon, anterior left
            r = rng.uniform(9, 16)
            row, col = (int(v) for v in canvas.to_pixel(*bc))
            if liver_mask[np.clip(row, 0, canvas.size - 1), np.clip(col, 0, canvas.size - 1)] > 0.1:
                continue  # the colon lies beside the liver, not in it
            shapes.ellipse(canvas, *bc, r + 2.5, r + 2.5, hu["bowel_wall"])
            shapes.ellipse(canvas, *bc, r, r, hu["air"] if rng.random() < 0.5 else hu["bowel_content"])
