"""Soft-edged shapes painted into three phase images at once.

A shape is evaluated only inside its bounding box; its mask is a partial-volume fraction in
[0, 1] (a linear ramp `edge_mm` wide across the boundary). Painting blends every phase:
``image = image * (1 - mask) + mask * value``, with one value (scalar or patch) per phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.fft

Values = Sequence[float | np.ndarray]  # one per phase: a scalar HU or an (h, w) patch


@dataclass
class Canvas:
    """Three phase images (3, H, W) float32 in HU on a square grid of `spacing_mm` pixels.

    `alpha` (H, W) records coverage, so a layer can later be composited over another.
    Coordinates are in mm from the image centre: x to the image right (patient left),
    y downwards (posterior).
    """

    size: int
    spacing_mm: float
    fill: Sequence[float] = (0.0, 0.0, 0.0)
    image: np.ndarray = field(init=False)
    alpha: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.image = np.empty((3, self.size, self.size), np.float32)
        for p in range(3):
            self.image[p] = self.fill[p]
        self.alpha = np.zeros((self.size, self.size), np.float32)

    def to_pixel(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """(row, col) pixel coordinates (continuous, centre of pixel 0 at 0.0)."""
        half = self.size / 2
        return y_mm / self.spacing_mm + half - 0.5, x_mm / self.spacing_mm + half - 0.5

    def grid(
        self, cx: float, cy: float, radius_mm: float
    ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        """The bounding box around (cx, cy) and its x, y coordinates in mm relative to it."""
        r0, c0 = self.to_pixel(cx - radius_mm, cy - radius_mm)
        r1, c1 = self.to_pixel(cx + radius_mm, cy + radius_mm)
        rs = slice(max(int(np.floor(r0)), 0), min(int(np.ceil(r1)) + 1, self.size))
        cs = slice(max(int(np.floor(c0)), 0), min(int(np.ceil(c1)) + 1, self.size))
        half = self.size / 2
        ys = ((np.arange(rs.start, rs.stop, dtype=np.float32) + 0.5 - half) * self.spacing_mm) - cy
        xs = ((np.arange(cs.start, cs.stop, dtype=np.float32) + 0.5 - half) * self.spacing_mm) - cx
        return (rs, cs), xs[None, :], ys[:, None]

    def paint(self, box: tuple[slice, slice], mask: np.ndarray, values: Values) -> None:
        if mask.size == 0:
            return
        for p, v in enumerate(values):
            region = self.image[p][box]
            region += mask * (np.asarray(v, np.float32) - region)
        a = self.alpha[box]
        a += mask * (1 - a)


def polar_radius(
    x: np.ndarray,
    y: np.ndarray,
    a: float,
    b: float,
    theta: float,
    lobes: Sequence[tuple[int, float, float]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Distance from the centre and the boundary radius (mm) of a lobulated ellipse at each point.

    The ellipse has semi-axes `a` (along angle `theta`) and `b`; `lobes` are
    (harmonic k, relative amplitude, phase) perturbations of the boundary radius.
    """
    ct, st = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    u = x * ct + y * st
    v = -x * st + y * ct
    dist = np.sqrt(u * u + v * v) + np.float32(1e-6)
    # The ellipse's radius along the ray through a point: dist / sqrt((u/a)^2 + (v/b)^2).
    boundary = dist / np.sqrt((u / np.float32(a)) ** 2 + (v / np.float32(b)) ** 2 + np.float32(1e-12))
    if lobes:
        phi = np.arctan2(v, u)
        mod = np.ones_like(phi)
        for k, amp, ph in lobes:
            mod += np.float32(amp) * np.cos(k * phi + np.float32(ph))
        boundary = boundary * mod
    return dist, boundary


def ramp(signed_distance_mm: np.ndarray, edge_mm: float) -> np.ndarray:
    """Partial-volume fraction: 1 inside, 0 outside, linear across `edge_mm` at the boundary."""
    return np.clip(0.5 - signed_distance_mm / max(edge_mm, 1e-3), 0.0, 1.0).astype(np.float32)


def ellipse(
    canvas: Canvas,
    cx: float,
    cy: float,
    a: float,
    b: float,
    values: Values,
    *,
    theta: float = 0.0,
    edge_mm: float = 0.8,
    lobes: Sequence[tuple[int, float, float]] = (),
) -> None:
    """Paint a (lobulated) ellipse centred at (cx, cy) mm with semi-axes a, b mm."""
    reach = max(a, b) * (1 + sum(abs(amp) for _, amp, _ in lobes)) + edge_mm
    box, x, y = canvas.grid(cx, cy, reach)
    dist, boundary = polar_radius(x, y, a, b, theta, lobes)
    canvas.paint(box, ramp(dist - boundary, edge_mm), values)


def ring(
    canvas: Canvas,
    cx: float,
    cy: float,
    a: float,
    b: float,
    thickness: float,
    values: Values,
    *,
    edge_mm: float = 0.8,
) -> None:
    """Paint an elliptical ring whose outer boundary has semi-axes a, b (mm)."""
    box, x, y = canvas.grid(cx, cy, max(a, b) + edge_mm)
    dist, boundary = polar_radius(x, y, a, b, 0.0)
    d = np.abs(dist - (boundary - thickness / 2)) - thickness / 2
    canvas.paint(box, ramp(d, edge_mm), values)


def capsule(
    canvas: Canvas,
    p0: tuple[float, float],
    p1: tuple[float, float],
    radius: float,
    values: Values,
    *,
    edge_mm: float = 0.8,
) -> None:
    """Paint a tube of `radius` mm between points p0 and p1 (a vessel or duct in section)."""
    cx, cy = (p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2
    half = np.hypot(p1[0] - p0[0], p1[1] - p0[1]) / 2
    box, x, y = canvas.grid(cx, cy, half + radius + edge_mm)
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    length2 = dx * dx + dy * dy + 1e-9
    t = np.clip(((x + cx - p0[0]) * dx + (y + cy - p0[1]) * dy) / length2, 0, 1)
    px = p0[0] + t * dx - (x + cx)
    py = p0[1] + t * dy - (y + cy)
    canvas.paint(box, ramp(np.sqrt(px * px + py * py) - radius, edge_mm), values)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """A zero-mean, unit-SD Gaussian random field correlated over about `scale_px` pixels."""
    white = rng.standard_normal(shape, dtype=np.float32)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    filt = np.exp(-2 * (np.pi * scale_px) ** 2 * (fx * fx + fy * fy)).astype(np.float32)
    out = scipy.fft.irfft2(scipy.fft.rfft2(white) * filt, s=shape).astype(np.float32)
    out -= out.mean()
    sd = out.std()
    return out / sd if sd > 0 else out
