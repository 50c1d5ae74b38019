"""The mask of ``--mask``: read once, checked against every input before any work.

One mask serves every file of a run (a batch of photos from one camera shares a
frame; a mask per file would need a naming rule, and a wrong pairing would go
unseen).  Everything about it that can be wrong is said in one line, exit 2,
before the model is loaded: unreadable, nothing white, a shape unlike a photo's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from dreamcli.config import Settings
from dreamcli.engine import masking
from dreamcli.errors import DreamError, SettingsError
from dreamcli.io.formats import file_problem
from dreamcli.io.images import read_image

# EXIF orientations that turn a picture a quarter (ImageOps.exif_transpose swaps its sides).
QUARTER_TURNS = {5, 6, 7, 8}


def read_mask(path: str | Path, invert: bool = False) -> torch.Tensor:
    """The mask at ``path`` as a (H, W) tensor in [0, 1] (white = dream, transparent = black;
    ``invert`` swaps)."""
    if problem := file_problem(path):
        raise SettingsError(f"the mask {path} {problem}; give a greyscale picture (white = dream)")
    try:
        picture = read_image(path)
    except DreamError as exc:
        raise SettingsError(f"the mask: {exc}; give a greyscale picture (white = dream)") from None
    return masking.from_rgb(picture.rgb, invert, f"the mask {path}", picture.alpha)


def mask_of(settings: Settings) -> torch.Tensor | None:
    """The settings' mask, read and checked, or None when they have none."""
    return read_mask(settings.mask, settings.mask_invert) if settings.mask is not None else None


def check_inputs(mask: torch.Tensor, sources: Iterable[Path]) -> None:
    """Refuse the run (SettingsError) if any input's shape is unlike the mask's.

    Only the files' headers are read; a file that cannot be read is left to the
    batch, which fails it alone as it does without a mask.
    """
    for source in sources:
        size = _picture_size(source)
        if size is not None:
            masking.check_aspect(mask.shape, size, f"the mask (for {source.name})")


def _picture_size(path: Path) -> tuple[int, int] | None:
    """(height, width) of the picture as dreamed (EXIF turns applied), or None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            width, height = img.size
            turned = img.getexif().get(0x0112) in QUARTER_TURNS  # 0x0112: Orientation
    except Exception:  # a damaged or foreign file: the batch says what it is
        return None
    return (width, height) if turned else (height, width)
