"""Region masks: dream only where a greyscale mask is white (``--mask``).

The mask is a weight per pixel in [0, 1] (white = dream, black = keep the
photo, grey = partly; transparent counts as black).  At each octave it is resized to the octave's size and
softened by two box blurs (a tent ``2 * radius`` wide: soft edges, and a
support that ends, so that far enough from any white the weight is exactly 0);
after the octave the dream is blended back toward that octave's photo,
``base + weight * (dream - base)``.  Where the weight is 0 at the last octave
the result *is* the photo, bit for bit: the "hard zone".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dreamcli.errors import SettingsError

# The feathering radius as a share of the octave's long side: 1 % softens the edge over
# ~2 % of the picture (10 px each side at 512 px), wide enough to hide the seam between
# dream and photo in looks, narrow enough to keep a face's outline.
FEATHER = 0.01
# How far a mask's width/height ratio may stray from the photo's: 1 % (a 1000x750 mask on a
# 1024x771 photo); beyond it the mask would be stretched, and its edges land off the subject.
ASPECT_TOLERANCE = 0.01
# Rec. 601 luma, as Pillow's convert("L"): a colour mask counts by its brightness.
LUMA = (0.299, 0.587, 0.114)
# A mask whose whitest pixel is under this (0-1) asks for no dream at all: refused.
LEAST_WHITE = 1.0 / 255.0


def check_mask(mask: torch.Tensor, where: str = "the mask", dreamed: str = "white") -> torch.Tensor:
    """``mask`` as a (1, 1, H, W) float tensor in [0, 1], refused if it has nothing white."""
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[None]
    if mask.dim() != 4 or mask.shape[:2] != (1, 1):
        raise SettingsError(
            f"{where}: expected one greyscale channel, got a tensor of shape {tuple(mask.shape)}"
        )
    mask = mask.float().clamp(0.0, 1.0)
    if float(mask.max()) < LEAST_WHITE:
        raise SettingsError(
            f"{where} has nothing {dreamed}, so nothing would be dreamed; {dreamed} marks where to dream"
        )
    return mask


def from_rgb(
    rgb: torch.Tensor,
    invert: bool = False,
    where: str = "the mask",
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """A (3, H, W) picture in [0, 1] as a (H, W) mask by its brightness; ``invert``: black = dream.

    With an ``alpha`` (1, H, W), transparent counts as black: the weight is brightness x alpha,
    so white painted on a transparent layer dreams only where it was painted (``invert`` then
    inverts that weight: the transparent part is dreamed)."""
    grey = LUMA[0] * rgb[0] + LUMA[1] * rgb[1] + LUMA[2] * rgb[2]
    if alpha is not None:
        grey = grey * alpha.reshape(grey.shape)
    if invert:
        return check_mask(1.0 - grey, where + " (inverted)", dreamed="black")[0, 0]
    return check_mask(grey, where)[0, 0]


def check_aspect(mask_size: Sequence[int], image_size: Sequence[int], where: str = "the mask") -> None:
    """Refuse a mask (height, width) whose shape differs from the picture's (height, width)."""
    (mh, mw), (ih, iw) = tuple(mask_size)[-2:], tuple(image_size)[-2:]
    ratio, wanted = mw / mh, iw / ih
    if abs(ratio / wanted - 1.0) > ASPECT_TOLERANCE:
        raise SettingsError(
            f"{where} is {mw}x{mh} px, the picture {iw}x{ih}: their shapes differ "
            f"(width/height {ratio:.3f} against {wanted:.3f}); make the mask from the picture itself"
        )


def weight_at(mask: torch.Tensor, size: tuple[int, int], feather: float = FEATHER) -> torch.Tensor:
    """The mask resized to ``size`` (H, W) with soft edges: (1, 1, H, W), exactly 0 far from white."""
    resized = F.interpolate(mask, size=size, mode="bilinear", align_corners=False, antialias=True)
    radius = max(1, round(feather * max(size)))
    soft = resized.clamp(0.0, 1.0)
    for _ in range(2):  # box twice = a tent: smooth, and its support ends (no Gaussian tails)
        padded = F.pad(soft, (radius, radius, radius, radius), mode="replicate")
        soft = F.avg_pool2d(padded, 2 * radius + 1, stride=1)
    # avg_pool of zeros is exactly 0; a sum of tiny products might not be: snap them.
    return torch.where(soft < 1e-6, torch.zeros_like(soft), soft.clamp(0.0, 1.0))


def hard_zone(mask: torch.Tensor, size: tuple[int, int], feather: float = FEATHER) -> torch.Tensor:
    """Where the result is the photo itself (the weight is 0 at ``size``): a (H, W) bool tensor."""
    return weight_at(check_mask(mask), size, feather)[0, 0] == 0


def blend(base: torch.Tensor, dreamed: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``dreamed`` where the weight is 1, ``base`` where it is 0, between them in between."""
    weight = weight.to(device=dreamed.device, dtype=dreamed.dtype)
    return torch.where(weight == 0, base, base + weight * (dreamed - base))
