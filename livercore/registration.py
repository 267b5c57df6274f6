"""Refine a lesion's position between CT phases for the breath-hold shift.

The three phases are separate breath-holds: the liver moves 0-5 mm in plane and 0-8 mm
craniocaudally between them, so a lesion carried from the reference phase (usually arterial)
to another phase through patient coordinates lands off the lesion by that shift.
`refine_shift(reference, moving, centre_mm, radius_mm)` measures it: the lesion's position in
the moving phase is ``centre_mm + offset_mm`` (DICOM LPS, mm), with a score and a flag.

Method, and why:

1. A window on the reference's own grid around the lesion: in plane max(60 mm, radius + 18 mm)
   each side, craniocaudally +-10 mm (whole sections). The moving phase is resampled onto that
   grid through patient coordinates (linear: sections blended and rows/columns sliced or
   interpolated when the orientations agree, trilinear `map_coordinates` otherwise), over the
   window plus the search (max_shift_mm + 5 mm along each axis). Different section spacings,
   fields of view, pixel sizes and storage orders therefore need nothing special.
2. Masks. The body wall, ribs, spine and aorta do not move with the liver: left in, they pull
   the match towards no shift (a first try that compared a ring around the lesion found only
   32-63 % of the phantom's shifts within 1 pixel, most of the misses at or near zero). So the
   liver is found in each phase by its attenuation (the commonest soft-tissue value in a shell
   2-8 mm beyond the lesion, +-20 HU after 2-mm smoothing, the connected region holding it,
   vessels filled in, widened 3 mm to keep its outline), the moving phase's from where the
   reference's liver lies out of the lesion's reach; the comparison is weighted by both. The
   lesion and a 3 mm rim are left out: contrast changes it most.
3. Similarity: normalised gradient fields (Haber and Modersitzki 2006), the in-plane direction
   of edges as the tensor n n^T, whichever side of an edge is brighter: vessels darker than the
   liver before contrast and brighter after it, and a liver 20-50 HU brighter from phase to
   phase, match alike. Gradients are normalised against their median in the liver (its noise),
   so the faint vessels of an unenhanced phase count. The weighted NCC of the fields is
   computed for every offset at once by FFT, the masked correlation of Padfield (2012) that
   scikit-image's `phase_cross_correlation(reference_mask=...)` implements (not used: it is not
   a dependency, and the judging below needs the whole score surface over a bounded 3-D
   search with both masks, which is a few lines of scipy.fft).
4. Coarse to fine: the whole search on pixels of about 1.4 mm (block means) at every section
   offset, then the reference's own pixels +-1 coarse pixel around the best; parabolas through
   the peaks give sub-pixel offsets in plane and sub-section offsets craniocaudally.
5. Judging: `plausible` is False (and `reason` says why) when the best offset lies on the
   edge of the search, is longer than max_shift_mm (default 10 mm), scores below 0.22 (the
   coarse NCC, reported as `score`), or when another local maximum 3 mm or more away comes
   within 10 % of the best's height above the median offset's score (ambiguous). These
   thresholds were set on the phantom.

Measured on the phantom (livercore.phantom, against its known shifts; arterial reference
unless said; "good" = in-plane error <= 1 pixel and craniocaudal error <= 1 section of the
reference):

- Volumes (livercore.phantom.volume, test-2016 seed 0 cases 0-99; unenhanced 5 mm, arterial
  and delayed 2.5-3 mm, 9-15 sections): 199 of 200 phase pairs good (unenhanced 99 of 100,
  delayed 100 of 100); largest in-plane error 0.78 pixel; craniocaudal error within half a
  section in 97 %; the one miss (2.3 sections, unenhanced) is flagged; 5 flagged in all, 4 of
  them good. With the unenhanced phase as reference 198 of 200 good, the delayed one 100 of 100;
  none wrong by more than 2 pixels or 2 sections unflagged.
- Single sections (generate_case, 100 test-2016 and 60 train-2013 cases, shifts of whole
  pixels): 313 of 320 within 1 pixel (unenhanced 97.5 %, delayed 98.1 %), largest error
  1.64 pixels, none flagged.
- A volume against one section of another phase (in plane only): 87 % (one section moving)
  and 91 % (one section reference) within 1 pixel, largest error 2.0 pixels: the section's
  craniocaudal offset is not searched.
- Flags: the moving phase moved 15 mm more: 30 of 30 volumes and 60 of 60 sections flagged;
  noise: all flagged (score below 0.08); another phantom patient: 99 of 100 volume pairs and
  53 of 60 section pairs flagged (the phantom's patients share one anatomical template: the one
  volume pair passed scores 0.59 and looks alike); a phase against itself: offset below
  0.03 mm, score above 0.99.
- Time: about 0.2-0.3 s of one CPU core per pair of volumes at 0.6-0.8 mm pixels (at most
  0.4 s for a lesion of 150 mm), 30-60 ms per pair of sections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage as ndi

from livercore.dicom_study import SeriesVolume
from livercore.errors import InputError

# --- the window around the lesion ------------------------------------------------------------------
WINDOW_MM = 60.0  # in-plane half-width of the compared window, at least ...
WINDOW_BEYOND_LESION_MM = 18.0  # ... and this far beyond the lesion's edge
WINDOW_Z_MM = 10.0  # craniocaudal half-extent of the window (volumes of several sections)
LESION_MARGIN_MM = 3.0  # the lesion, and this rim around it, is left out of the comparison
# --- the liver masks: the lesion's surroundings grown by attenuation ---------------------------------
MASK_SMOOTH_MM = 2.0
MASK_SHELL_MM = (2.0, 8.0)  # beyond the lesion's edge: the shell whose commonest HU is the liver's
MASK_TOLERANCE_HU = 20.0  # the liver: within this of that value (after smoothing)
SOFT_TISSUE_HU = (-30.0, 250.0)  # where the liver's value is looked for
MASK_DILATION_MM = 3.0  # so that the liver's outline (both sides of its edge) is compared
MIN_WINDOW_VOXELS = 50  # coarse voxels of liver (lesion excluded) needed to match at all
# --- the similarity: normalised gradient fields ----------------------------------------------------
HU_CLIP = (-200.0, 300.0)  # bone, air and lung edges do not outweigh the liver's
COARSE_PIXEL_MM = 1.4  # the exhaustive search runs on pixels about this size ...
COARSE_MAX_PIXELS = 96  # ... and on at most this many across the window, then is refined
COARSE_SIGMA_MM = 1.5  # Gaussian smoothing before the gradient, coarse level
FINE_SIGMA_MM = 1.0  # ... fine level (the reference's own pixels)
FINE_WINDOW_MM = 60.0  # in-plane half-width of the window at the fine level
MIN_OVERLAP = 0.5  # a shift that compares less than this share of the window is not tried
# --- judging the match -----------------------------------------------------------------------------
DEFAULT_MAX_SHIFT_MM = 10.0  # breath-holds move the liver 0-5 mm in plane and 0-8 mm craniocaudally
SEARCH_BEYOND_MM = 5.0  # the search reaches this far beyond max_shift_mm along each axis
WEAK_SCORE = 0.22  # a best score below this is a weak match
AMBIGUITY_MARGIN = 0.1  # best minus runner-up, as a share of best minus the median offset's score
SECOND_PEAK_MM = 3.0  # a runner-up is a local maximum at least this far (and two grid steps) away


@dataclass(frozen=True)
class BreathHoldShift:
    """Where the reference phase's lesion lies in the moving phase, in patient coordinates."""

    offset_mm: tuple[
        float, float, float
    ]  # (x, y, z) LPS: moving-phase position = reference position + offset
    score: float  # match quality in [-1, 1]: NCC of normalised gradient fields at the optimum
    plausible: bool  # False: flag for review (too large for a breath-hold, weak or ambiguous, at the edge)
    reason: str  # a plain sentence


@dataclass(frozen=True)
class _Grid:
    """A volume's voxel -> patient map: point = origin + axes @ (section, row, col)."""

    origin: np.ndarray  # (3,) mm
    axes: np.ndarray  # (3, 3): columns are one step along sections, rows, columns (mm)

    @staticmethod
    def of(volume: SeriesVolume) -> _Grid:
        o = np.asarray(volume.to_patient((0, 0, 0)))
        steps = [np.asarray(volume.to_patient(e)) - o for e in ((1, 0, 0), (0, 1, 0), (0, 0, 1))]
        return _Grid(o, np.stack(steps, axis=1))


def _take(
    volume: np.ndarray, ks: np.ndarray, rs: np.ndarray, cs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """volume at sections ks, rows rs, columns cs (indices clamped, float32), and which were inside."""
    nz, h, w = volume.shape
    r_lo, r_hi = int(np.clip(rs.min(), 0, h - 1)), int(np.clip(rs.max(), 0, h - 1))
    c_lo, c_hi = int(np.clip(cs.min(), 0, w - 1)), int(np.clip(cs.max(), 0, w - 1))
    block = volume[:, r_lo : r_hi + 1, c_lo : c_hi + 1]
    out = block[np.clip(ks, 0, nz - 1)][:, np.clip(rs, 0, h - 1) - r_lo][:, :, np.clip(cs, 0, w - 1) - c_lo]
    inside = [(i >= 0) & (i < n) for i, n in zip((ks, rs, cs), (nz, h, w), strict=True)]
    mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    return out.astype(np.float32), mask


def _resample(
    moving: SeriesVolume, reference: SeriesVolume, ks: np.ndarray, rs: np.ndarray, cs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The moving volume on the reference's grid at sections ks, rows rs, columns cs (linear
    interpolation through patient coordinates, float32), and where it covers that grid. A
    moving volume of one section stands for every section."""
    ref, mov = _Grid.of(reference), _Grid.of(moving)
    matrix = np.linalg.solve(mov.axes, ref.axes)  # reference voxel -> moving voxel
    shift = np.linalg.solve(mov.axes, ref.origin - mov.origin)
    nz, h, w = moving.hu.shape
    if nz == 1:
        matrix[0], shift[0] = 0.0, 0.0
    if np.abs(matrix - np.diag(np.diag(matrix))).max() > 1e-6:  # other orientations: trilinear
        grid = np.meshgrid(ks, rs, cs, indexing="ij", sparse=True)
        coords = [
            np.broadcast_to(
                shift[a] + sum(matrix[a, b] * grid[b] for b in range(3)), (ks.size, rs.size, cs.size)
            )
            for a in range(3)
        ]
        out = ndi.map_coordinates(moving.hu, coords, order=1, mode="nearest", output=np.float32)
        valid = np.ones(out.shape, bool)
        for a, n in enumerate(moving.hu.shape):
            if n > 1:
                valid &= (coords[a] >= -0.5) & (coords[a] <= n - 0.5)
        return out, valid
    # Same orientation (the usual case): sections by linear blending, then rows and columns.
    kz, rr, cc = (matrix[a, a] * i + shift[a] for a, i in enumerate((ks, rs, cs)))
    valid = (
        ((kz >= -0.5) & (kz <= nz - 0.5))[:, None, None]
        & ((rr >= -0.5) & (rr <= h - 0.5))[None, :, None]
        & ((cc >= -0.5) & (cc <= w - 0.5))[None, None, :]
    )
    rr, cc = np.clip(rr, 0, h - 1), np.clip(cc, 0, w - 1)
    r_lo, r_hi = math.floor(rr.min()), math.ceil(rr.max())
    c_lo, c_hi = math.floor(cc.min()), math.ceil(cc.max())
    block = moving.hu[:, r_lo : r_hi + 1, c_lo : c_hi + 1]
    k = np.clip(kz, 0, nz - 1)
    k_lo = np.floor(k).astype(int)
    k_hi = np.minimum(k_lo + 1, nz - 1)
    t = (k - k_lo).astype(np.float32)[:, None, None]
    stack = (block[k_lo] * (1 - t) + block[k_hi] * t).astype(np.float32)
    rows, cols = rr - r_lo, cc - c_lo
    if np.abs(rows - np.round(rows)).max() < 1e-3 and np.abs(cols - np.round(cols)).max() < 1e-3:
        out = stack[:, np.round(rows).astype(int)][:, :, np.round(cols).astype(int)]
    else:
        r2, c2 = np.meshgrid(rows, cols, indexing="ij")
        out = np.stack(
            [ndi.map_coordinates(s, [r2, c2], order=1, mode="nearest", output=np.float32) for s in stack]
        )
    return out, valid


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Means over f x f blocks in plane (the sizes are multiples of f), float32."""
    if f == 1:
        return a.astype(np.float32)
    out = np.zeros((a.shape[0], a.shape[1] // f, a.shape[2] // f), np.float32)
    for i in range(f):
        for j in range(f):
            out += a[:, i::f, j::f]
    return out * np.float32(1 / (f * f))


def _features(image: np.ndarray, spacing_mm: float, sigma_mm: float, where: np.ndarray) -> list[np.ndarray]:
    """The in-plane normalised gradient field of each section, as its tensor n n^T (components
    nyy, sqrt2 nxy, nxx): the direction of edges whichever side is brighter. Gradients are
    normalised against their median over `where` (the liver: mostly noise), so that the faint
    vessels of an unenhanced phase count as much as the bright ones of a contrast phase."""
    smooth = ndi.gaussian_filter(image, (0, sigma_mm / spacing_mm, sigma_mm / spacing_mm), mode="nearest")
    half = np.float32(0.5 / spacing_mm)
    gy = np.empty_like(smooth)
    gx = np.empty_like(smooth)
    gy[:, 1:-1] = (smooth[:, 2:] - smooth[:, :-2]) * half
    gy[:, 0], gy[:, -1] = gy[:, 1], gy[:, -2]
    gx[:, :, 1:-1] = (smooth[:, :, 2:] - smooth[:, :, :-2]) * half
    gx[:, :, 0], gx[:, :, -1] = gx[:, :, 1], gx[:, :, -2]
    g2 = gy * gy + gx * gx
    eps2 = np.float32(max(float(np.median(g2[where])) if where.any() else float(np.median(g2)), 1e-6))
    norm = 1 / (g2 + eps2)
    return [gy * gy * norm, np.float32(math.sqrt(2)) * gy * gx * norm, gx * gx * norm]


def _masked_ncc(
    template: Sequence[np.ndarray], weight: np.ndarray, image: Sequence[np.ndarray], valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted NCC of vector fields at every shift s that keeps the template inside the image
    (masked FFT correlation after Padfield 2012): S[s] = NCC over x of template(x) and
    image(x + s), weighted by weight(x) valid(x + s). Returns (S, overlap), shape image - template + 1."""
    shape_i, shape_t = image[0].shape, template[0].shape
    fshape = [scipy.fft.next_fast_len(n, real=True) for n in shape_i]
    axes = tuple(range(len(shape_i)))
    out = tuple(slice(t - 1, i) for t, i in zip(shape_t, shape_i, strict=True))
    flip = (slice(None, None, -1),) * len(shape_t)

    def spectrum(a: np.ndarray) -> np.ndarray:
        return scipy.fft.rfftn(a.astype(np.float32, copy=False), fshape, axes=axes, workers=1)

    def back(f: np.ndarray) -> np.ndarray:
        return np.asarray(scipy.fft.irfftn(f, fshape, axes=axes, workers=1)[out], np.float64)

    w = weight.astype(np.float32)
    v = valid.astype(np.float32)
    f_w, f_v = spectrum(w[flip]), spectrum(v)
    n = np.maximum(back(f_v * f_w), 1e-6)
    wt = [w * t for t in template]
    vi = [v * i for i in image]
    f_wt = [spectrum(a[flip]) for a in wt]
    f_vi = [spectrum(a) for a in vi]
    cross = back(sum((a * b for a, b in zip(f_vi, f_wt, strict=True)), np.zeros_like(f_w)))
    t_sq = back(
        f_v * spectrum(sum((a * t for a, t in zip(wt, template, strict=True)), np.zeros_like(w))[flip])
    )
    i_sq = back(spectrum(sum((a * i for a, i in zip(vi, image, strict=True)), np.zeros_like(v))) * f_w)
    s_t = [back(f_v * f) for f in f_wt]
    s_i = [back(f * f_w) for f in f_vi]
    num = cross - sum(a * b for a, b in zip(s_t, s_i, strict=True)) / n
    var_t = t_sq - sum(a * a for a in s_t) / n
    var_i = i_sq - sum(b * b for b in s_i) / n
    score = num / np.sqrt(np.maximum(var_t * var_i, 1e-12))
    return np.clip(score, -1.0, 1.0), n


def _liver_mask(image: np.ndarray, spacing_mm: float, seed: np.ndarray) -> np.ndarray | None:
    """The liver in a window: the connected region whose smoothed attenuation is within
    MASK_TOLERANCE_HU of the commonest soft-tissue value over `seed` (voxels mostly of liver)
    and that holds most of the seed, holes (vessels) filled, widened by MASK_DILATION_MM in
    plane; None when no such region is found."""
    s = MASK_SMOOTH_MM / spacing_mm
    smooth = ndi.gaussian_filter(image, (0, s, s), mode="nearest")
    values = smooth[seed]
    values = values[(values > SOFT_TISSUE_HU[0]) & (values < SOFT_TISSUE_HU[1])]
    if values.size < 20:
        return None
    counts, edges = np.histogram(values, bins=np.arange(SOFT_TISSUE_HU[0], SOFT_TISSUE_HU[1] + 2, 2.0))
    level = float(edges[int(np.argmax(ndi.gaussian_filter1d(counts.astype(float), 2.0)))] + 1.0)
    labels, count = ndi.label(np.abs(smooth - level) < MASK_TOLERANCE_HU)
    hits = np.bincount(labels[seed], minlength=count + 1)
    hits[0] = 0
    if not hits.any():
        return None
    liver = np.stack([ndi.binary_fill_holes(section) for section in labels == int(np.argmax(hits))])
    r = max(1, round(MASK_DILATION_MM / spacing_mm))
    disk = np.hypot(*np.mgrid[-r : r + 1, -r : r + 1]) <= r
    return np.asarray(ndi.binary_dilation(liver, structure=disk[None]))


def _peak(surface: np.ndarray, at: tuple[int, ...]) -> np.ndarray:
    """The sub-voxel position of a maximum: a parabola through it and its neighbours, per axis."""
    pos = np.array(at, float)
    for axis in range(surface.ndim):
        if 0 < at[axis] < surface.shape[axis] - 1:
            lo, hi = list(at), list(at)
            lo[axis] -= 1
            hi[axis] += 1
            a, b, c = float(surface[tuple(lo)]), float(surface[at]), float(surface[tuple(hi)])
            if min(a, c) > -1.0 and a - 2 * b + c < 0:
                pos[axis] += float(np.clip(0.5 * (a - c) / (a - 2 * b + c), -0.5, 0.5))
    return pos


def refine_shift(
    reference: SeriesVolume,
    moving: SeriesVolume,
    centre_mm: Sequence[float],
    radius_mm: float,
    *,
    max_shift_mm: float = DEFAULT_MAX_SHIFT_MM,
) -> BreathHoldShift:
    """How far the lesion at `centre_mm` (patient coordinates, mm, DICOM LPS) of the reference
    phase has moved in the moving phase: the offset of the best match of the liver around it
    (module docstring). The lesion's position in the moving phase is centre_mm + offset_mm.

    radius_mm is the lesion's radius: the lesion and a LESION_MARGIN_MM rim are left out of the
    comparison. With a volume of one section the search is in plane only (offset z 0; a
    one-section reference takes the centre on its section). An offset longer than max_shift_mm
    is reported but flagged (the search reaches SEARCH_BEYOND_MM further along each axis).
    A flagged result still carries the best offset found. InputError (a sentence) when a volume
    has no patient-space geometry or the centre lies outside the reference."""
    ref_grid = _Grid.of(reference)
    _Grid.of(moving)  # its geometry is needed: InputError now rather than later
    dz, dr, dc = (float(s) for s in reference.spacing_mm)
    k0, r0, c0 = reference.to_voxel(centre_mm)
    nz_ref, h_ref, w_ref = reference.hu.shape
    if nz_ref == 1:  # one section: the centre is taken on it, wherever it lies craniocaudally
        k0 = 0.0
    if not (-0.5 <= k0 <= nz_ref - 0.5 and -0.5 <= r0 <= h_ref - 0.5 and -0.5 <= c0 <= w_ref - 0.5):
        raise InputError("The lesion's centre lies outside the reference series.")
    in_plane_only = nz_ref == 1 or moving.hu.shape[0] == 1
    radius_mm = max(float(radius_mm), 0.0)
    search_mm = float(max_shift_mm) + SEARCH_BEYOND_MM
    px = min(dr, dc)

    # The grids, in whole coarse blocks of f x f pixels so that both levels line up.
    half_mm = max(WINDOW_MM, radius_mm + WINDOW_BEYOND_LESION_MM)
    f = max(1, round(COARSE_PIXEL_MM / px), math.ceil(2 * half_mm / px / COARSE_MAX_PIXELS))

    def blocks(mm: float, step: float) -> int:
        return f * math.ceil(mm / step / f)

    hr, hc = blocks(half_mm, dr), blocks(half_mm, dc)  # the window's half-size (pixels)
    sr, sc = blocks(search_mm, dr), blocks(search_mm, dc)  # the search (pixels)
    pad = blocks(4 * max(COARSE_SIGMA_MM, MASK_SMOOTH_MM), px)  # room for the filters
    hz, sz = (0, 0) if in_plane_only else (math.ceil(WINDOW_Z_MM / dz), math.ceil(search_mm / dz))
    kc, rc, cc = round(k0), round(r0), round(c0)
    ks = np.arange(kc - hz, kc + hz + 1)
    rs = np.arange(rc - hr - pad, rc + hr + pad)
    cs = np.arange(cc - hc - pad, cc + hc + pad)
    ref_win, inside_ref = _take(reference.hu, ks, rs, cs)
    mov_win, valid = _resample(
        moving,
        reference,
        np.arange(kc - hz - sz, kc + hz + sz + 1),
        np.arange(rc - hr - sr - pad, rc + hr + sr + pad),
        np.arange(cc - hc - sc - pad, cc + hc + sc + pad),
    )
    np.clip(ref_win, *HU_CLIP, out=ref_win)
    np.clip(mov_win, *HU_CLIP, out=mov_win)

    # Coarse level: f x f block means; the liver masks; the whole search at once (FFT).
    ref_c, mov_c = _block_mean(ref_win, f), _block_mean(mov_win, f)
    inside_c, valid_c = _block_mean(inside_ref, f) > 0.5, _block_mean(valid, f) > 0.5
    step_c = px * f
    zz = ((ks - k0) * dz)[:, None, None]
    yy = ((rs[0] + np.arange(ref_c.shape[1]) * f + (f - 1) / 2 - r0) * dr)[None, :, None]
    xx = ((cs[0] + np.arange(ref_c.shape[2]) * f + (f - 1) / 2 - c0) * dc)[None, None, :]
    dist_c = np.sqrt(zz * zz + yy * yy + xx * xx)  # mm from the lesion's centre
    shell = (dist_c > radius_mm + MASK_SHELL_MM[0]) & (dist_c < radius_mm + MASK_SHELL_MM[1])
    found = _liver_mask(ref_c, step_c, shell & inside_c)
    liver_ref = (np.ones(ref_c.shape, bool) if found is None else found) & inside_c
    liver_ref |= (dist_c <= radius_mm + MASK_SHELL_MM[0]) & inside_c
    # The moving phase's liver, grown from where the reference's is, out of the lesion's reach.
    seed = np.zeros(mov_c.shape, bool)
    seed[sz : sz + ks.size, sr // f : sr // f + ref_c.shape[1], sc // f : sc // f + ref_c.shape[2]] = (
        liver_ref & (dist_c > radius_mm + search_mm)
    )
    found = _liver_mask(mov_c, step_c, seed & valid_c)
    liver_mov = (np.ones(mov_c.shape, bool) if found is None else found) & valid_c
    pc = pad // f
    crop_c = (slice(None), slice(pc, -pc), slice(pc, -pc))
    weight_c = (liver_ref & (dist_c > radius_mm + LESION_MARGIN_MM))[crop_c]
    if weight_c.sum() < MIN_WINDOW_VOXELS:
        return BreathHoldShift((0.0, 0.0, 0.0), 0.0, False, "Too little liver around the lesion to compare.")
    template_c = [a[crop_c] for a in _features(ref_c, step_c, COARSE_SIGMA_MM, liver_ref)]
    image_c = [a[crop_c] for a in _features(mov_c, step_c, COARSE_SIGMA_MM, liver_mov)]
    coarse, overlap = _masked_ncc(template_c, weight_c, image_c, liver_mov[crop_c])
    if overlap.max() < MIN_OVERLAP * weight_c.sum():  # no liver found where it should be: all of it
        liver_mov = valid_c.copy()
        coarse, overlap = _masked_ncc(template_c, weight_c, image_c, liver_mov[crop_c])
    coarse[overlap < MIN_OVERLAP * weight_c.sum()] = -1.0
    if coarse.max() <= -1.0:
        return BreathHoldShift(
            (0.0, 0.0, 0.0), 0.0, False, "The moving series does not cover the lesion's surroundings."
        )
    best = tuple(int(i) for i in np.unravel_index(int(np.argmax(coarse)), coarse.shape))
    shift_c = np.array([best[0] - sz, best[1] * f - sr, best[2] * f - sc])  # full pixels

    # Fine level: the reference's own pixels, +-f in plane around the coarse optimum, at its
    # section offset (the coarse surface's parabola gives the sub-section part).
    fr, fc = min(hr, math.ceil(FINE_WINDOW_MM / dr)), min(hc, math.ceil(FINE_WINDOW_MM / dc))
    pf = math.ceil(4 * FINE_SIGMA_MM / px)
    reach = np.array([0, f, f])
    lo = np.maximum(shift_c - reach, [-sz, -sr, -sc])
    hi = np.minimum(shift_c + reach, [sz, sr, sc])
    t_sel = (
        slice(None),
        slice(pad + hr - fr - pf, pad + hr + fr + pf),
        slice(pad + hc - fc - pf, pad + hc + fc + pf),
    )
    m_sel = (
        slice(int(sz + lo[0]), int(sz + lo[0] + ks.size)),
        slice(int(pad + hr - fr + sr + lo[1] - pf), int(pad + hr + fr + sr + hi[1] + pf)),
        slice(int(pad + hc - fc + sc + lo[2] - pf), int(pad + hc + fc + sc + hi[2] + pf)),
    )
    crop = (slice(None), slice(pf, -pf), slice(pf, -pf))

    def up(mask: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(mask, f, axis=1), f, axis=2)

    yy, xx = ((rs - r0) * dr)[None, :, None], ((cs - c0) * dc)[None, None, :]
    dist = np.sqrt(zz * zz + yy * yy + xx * xx)[t_sel]
    liver_t = (up(liver_ref) & inside_ref)[t_sel]
    liver_m = (up(liver_mov) & valid)[m_sel]
    weight = (liver_t & (dist > radius_mm + LESION_MARGIN_MM))[crop]
    template = [a[crop] for a in _features(ref_win[t_sel], px, FINE_SIGMA_MM, liver_t)]
    image = [a[crop] for a in _features(mov_win[m_sel], px, FINE_SIGMA_MM, liver_m)]
    fine, fine_overlap = _masked_ncc(template, weight, image, liver_m[crop])
    fine[fine_overlap < MIN_OVERLAP * weight.sum()] = -1.0
    shift = shift_c.astype(float)
    if fine.max() > -1.0:
        at = tuple(int(i) for i in np.unravel_index(int(np.argmax(fine)), fine.shape))
        shift[1:] = (lo + _peak(fine, at))[1:]
    else:
        shift[1:] = (_peak(coarse, best)[1:] * f) - [sr, sc]
    shift[0] = _peak(coarse, best)[0] - sz
    return _judge(ref_grid.axes @ shift, coarse, best, (dz, dr * f, dc * f), max_shift_mm, in_plane_only)


def _judge(
    offset_mm: np.ndarray,
    surface: np.ndarray,
    best: tuple[int, ...],
    step_mm: tuple[float, float, float],
    max_shift_mm: float,
    in_plane_only: bool,
) -> BreathHoldShift:
    """The offset, its score (the coarse surface at its maximum) and whether to trust it: not
    at the search's edge, no longer than max_shift_mm, not weak, and clear of the runner-up."""
    x, y, z = (float(v) for v in offset_mm)
    length = math.sqrt(x * x + y * y + z * z)
    score = float(surface[best])
    at_edge = any(n > 1 and (b == 0 or b == n - 1) for b, n in zip(best, surface.shape, strict=True))
    grid = np.meshgrid(*(np.arange(n) for n in surface.shape), indexing="ij")
    dist = np.sqrt(sum(((g - b) * s) ** 2 for g, b, s in zip(grid, best, step_mm, strict=True)))
    apart = np.max([np.abs(g - b) for g, b in zip(grid, best, strict=True)], axis=0) >= 2
    peaks = (surface == ndi.maximum_filter(surface, size=3, mode="nearest")) & (dist > SECOND_PEAK_MM) & apart
    second = float(surface[peaks].max()) if peaks.any() else -1.0
    typical = float(np.median(surface[surface > -1.0]))
    margin = (score - second) / max(score - typical, 1e-6)
    what = f"shift {length:.1f} mm{' in plane' if in_plane_only else ''}"
    if at_edge:
        return BreathHoldShift(
            (x, y, z), score, False, f"{what} reached the edge of the search: check this case"
        )
    if length > max_shift_mm:
        return BreathHoldShift(
            (x, y, z), score, False, f"{what} is more than a breath-hold moves: check this case"
        )
    if score < WEAK_SCORE:
        return BreathHoldShift(
            (x, y, z), score, False, f"{what}, weak match (score {score:.2f}): check this case"
        )
    if margin < AMBIGUITY_MARGIN:
        other = np.unravel_index(int(np.argmax(np.where(peaks, surface, -2.0))), surface.shape)
        gap = float(np.linalg.norm((np.array(other) - np.array(best)) * np.array(step_mm)))
        return BreathHoldShift(
            (x, y, z),
            score,
            False,
            f"{what}, ambiguous match (an offset {gap:.0f} mm away scores {second:.2f} against {score:.2f}): "
            "check this case",
        )
    return BreathHoldShift((x, y, z), score, True, f"{what}, clear match (score {score:.2f})")
