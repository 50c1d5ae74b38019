"""The settings dreamcli writes into its pictures, and reading them back (Pillow only, no torch).

PNG keeps them as a ``dreamcli`` text chunk; JPEG, WebP and TIFF as JSON in the
EXIF ImageDescription; GIF as its comment.  The same mark lets a batch tell
dreamcli's own outputs from a user's photos.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

METADATA_KEY = "dreamcli"  # PNG text chunk with the settings as JSON
EXIF_IMAGE_DESCRIPTION = 0x010E  # TIFF/EXIF tag 270, used for JPEG, WebP and TIFF
MAX_TEXT = 1 << 20  # characters of metadata parsed at most: dreamcli writes a few hundred


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


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Pillow's warnings silenced: a probe of a file (is it ours?) is no reason to talk."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The settings a dreamcli image was made with, or None (not ours, or unreadable).

    Never raises: the text is anyone's (an EXIF field of any type, bytes, JSON nested a
    thousand deep, megabytes of it), and a folder walk reads every file's.
    """
    data = _recorded(path)
    return data if data is not None and isinstance(data.get("settings"), dict) else None


# What marks a picture dreamcli wrote: its settings (a dream, a sheet, a feature picture), or
# what made it where it has none (a patch, a patch test's contact sheet).
MARKS = ("settings", "patch", "patch_sheet")


def _recorded(path: str | Path) -> dict[str, Any] | None:
    """The JSON object dreamcli recorded in ``path``, or None."""
    from PIL import Image

    if not os.path.isfile(path):  # a FIFO would block open() until a writer comes
        return None
    try:
        with quiet_warnings(), Image.open(path) as img:
            text = img.info.get(METADATA_KEY) or img.info.get("comment")
            if not text:
                text = img.getexif().get(EXIF_IMAGE_DESCRIPTION)
        return _object_in(text)
    except Exception:  # whatever Pillow or json raise (RecursionError too) for a file not ours
        return None


def _object_in(text: Any) -> dict[str, Any] | None:
    """``text`` parsed as dreamcli's metadata: a JSON object with one of its ``MARKS``."""
    if isinstance(text, bytes):
        text = text[: MAX_TEXT + 1].decode("utf-8", "replace")
    if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
        return None  # an EXIF number or ratio, or more text than dreamcli ever writes
    data = json.loads(text)
    if isinstance(data, dict) and any(isinstance(data.get(mark), dict) for mark in MARKS):
        return data
    return None


def is_dream(path: str | Path) -> bool:
    """Whether ``path`` is a picture dreamcli wrote (its metadata says so): a folder of photos
    leaves these out, so that a second run does not read its own outputs."""
    return _recorded(path) is not None
