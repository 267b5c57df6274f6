"""Screen captures: a PNG or JPEG image of a viewer, read safely into grey levels.

Only PNG and JPEG are opened; oversized files and images (decompression bombs) are refused
before decoding. Everything stays in memory.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from livercore.errors import InputError
from livercore.file_kind import sniff

# A 4K monitor is 3840 x 2160; anything larger is not a screen capture.
CAPTURE_MAX_PIXELS = 4096 * 4096
CAPTURE_MAX_BYTES = 50 * 2**20


def read_capture(data: bytes) -> np.ndarray:
    """A PNG or JPEG screen capture as a (H, W) uint8 grey image (already windowed by the viewer).

    Only PNG and JPEG are opened; images over CAPTURE_MAX_PIXELS (decompression bombs) are
    refused before decoding.
    """
    if len(data) > CAPTURE_MAX_BYTES:
        raise InputError("This image file is larger than 50 MiB, too large for a screen capture.")
    if sniff(data) not in ("png", "jpeg"):
        raise InputError(
            "This file is not a PNG or JPEG image; upload screen captures saved as PNG or JPEG "
            "(or choose a DICOM option for DICOM files)."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as image:
                width, height = image.size
                if width * height > CAPTURE_MAX_PIXELS:
                    raise InputError(
                        f"This image is {width} x {height} pixels, larger than a screen capture "
                        f"(at most {CAPTURE_MAX_PIXELS} pixels)."
                    )
                grey = np.asarray(image.convert("L"), dtype=np.uint8)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(
            "This image declares far more pixels than a screen capture (a decompression bomb?), so "
            "it was not decoded."
        ) from err
    except UnidentifiedImageError as err:
        raise InputError("This image could not be opened as a PNG or JPEG screen capture.") from err
    except (OSError, ValueError, SyntaxError) as err:  # truncated or damaged streams
        raise InputError("This image is damaged or truncated and could not be decoded.") from err
    if grey.ndim != 2 or min(grey.shape) < 16:
        raise InputError("This image is too small to hold a lesion (under 16 pixels on a side).")
    grey.setflags(write=False)
    return grey
