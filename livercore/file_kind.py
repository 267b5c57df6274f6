"""What a file is, by its content (never its name or extension)."""

from __future__ import annotations


def sniff(data: bytes) -> str:
    """What a file is by its content: 'dicom', 'zip', 'png', 'jpeg', 'empty' or 'unknown'."""
    if not data:
        return "empty"
    if data[128:132] == b"DICM":
        return "dicom"
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "zip"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    return "unknown"
