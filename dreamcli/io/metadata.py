"""The settings dreamcli writes into its pictures, and reading them back (Pillow only, no torch).

PNG keeps them as a ``dreamcli`` text chunk; JPEG, WebP and TIFF as JSON in the
EXIF ImageDescription; GIF as its comment.  The same mark lets a batch tell
dreamcli's own outputs from a user's photos.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METADATA_KEY = "dreamcli"  # PNG text chunk with the settings as JSON
EXIF_IMAGE_DESCRIPTION = 0x010E  # TIFF/EXIF tag 270, used for JPEG, WebP and TIFF


def save_options(fmt: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """Pillow ``save`` keyword arguments that store ``metadata`` in a ``fmt`` file."""
    from PIL import Image, PngImagePlugin

    text = json.dumps(metadata, sort_keys=True)
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(METADATA_KEY, text)
        info.add_text("Software", f"dreamcli {metadata.get('version', '')}".strip())
        return {"pnginfo": info}
    if fmt == "GIF":
        return {"comment": text.encode("utf-8")}
    exif = Image.Exif()
    exif[EXIF_IMAGE_DESCRIPTION] = text
    return {"exif": exif.tobytes()}


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The settings a dreamcli image was made with, or None (not ours, or unreadable)."""
    from PIL import Image

    if not os.path.isfile(path):  # a FIFO would block open() until a writer comes
        return None
    try:
        with Image.open(path) as img:
            text = img.info.get(METADATA_KEY) or img.info.get("comment")
            if not text:
                text = img.getexif().get(EXIF_IMAGE_DESCRIPTION)
    except Exception:  # any file Pillow cannot open, whatever it raises, is simply not ours
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("settings"), dict) else None


def is_dream(path: str | Path) -> bool:
    """Whether ``path`` is a picture dreamcli wrote (its metadata says so)."""
    return read_metadata(path) is not None
