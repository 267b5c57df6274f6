"""The imaging chain (phantom.md section 4): misregistration, partial volume, PSF, noise, quantisation."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.ndimage import gaussian_filter

HU_MIN, HU_MAX = -1024, 3071  # what int16 storage with RescaleIntercept -1024 holds in 12 bits
NPS_LOW_FREQUENCY_FLOOR = 0.04  # cycles/mm: a ramp (f + floor) like real FBP noise at low f


def composite(
    fixed: np.ndarray, mobile: np.ndarray, alpha: np.ndarray, shift_px: tuple[int, int]
) -> np.ndarray:
    """Lay the mobile organs (shifted by whole pixels, a breath-hold's misregistration) over the
    fixed body wall. fixed, mobile: (H, W) HU; alpha: (H, W) coverage of the mobile layer."""
    if shift_px != (0, 0):
        mobile = np.roll(mobile, shift_px, axis=(0, 1))
        alpha = np.roll(alpha, shift_px, axis=(0, 1))
    return fixed + alpha * (mobile - fixed)


def blur(image: np.ndarray, *, psf_sigma_mm: float, thickness_mm: float, spacing_mm: float) -> np.ndarray:
    """In-plane Gaussian PSF, widened by the slice's partial volume (thicker slices blur edges more)."""
    sigma_mm = float(np.hypot(psf_sigma_mm, 0.12 * thickness_mm))
    return gaussian_filter(image, sigma_mm / spacing_mm, mode="nearest")


@lru_cache(maxsize=16)
def _noise_filter(size: int, spacing_mm: float, cutoff: float) -> np.ndarray:
    """Amplitude filter whose square is an FBP-like NPS ~ (f + floor) * exp(-(f / cutoff)^2)."""
    fy = np.fft.fftfreq(size, d=spacing_mm)[:, None]
    fx = np.fft.rfftfreq(size, d=spacing_mm)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    nps = (f + NPS_LOW_FREQUENCY_FLOOR) * np.exp(-((f / cutoff) ** 2))
    amp = np.sqrt(nps)
    # Normalise so that filtered unit white noise has unit SD.
    amp /= np.sqrt(np.mean(np.concatenate([amp**2, amp[:, 1:-1] ** 2], axis=1)))
    return amp.astype(np.float32)


def correlated_noise(
    rng: np.random.Generator, size: int, spacing_mm: float, sd_hu: float, cutoff: float
) -> np.ndarray:
    """Stationary correlated noise (H, W) with pixel SD `sd_hu` and an FBP-shaped NPS."""
    white = rng.standard_normal((size, size), dtype=np.float32)
    spectrum = scipy.fft.rfft2(white) * _noise_filter(size, round(spacing_mm, 4), cutoff)
    return (scipy.fft.irfft2(spectrum, s=(size, size)) * np.float32(sd_hu)).astype(np.float32)


def quantise(image: np.ndarray) -> np.ndarray:
    """Round to integer HU in the storable range, int16."""
    return np.clip(np.rint(image), HU_MIN, HU_MAX).astype(np.int16)
