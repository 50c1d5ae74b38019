"""Pasting a patch into a batch of images at random places, sizes and rotations.

The paste is differentiable in the patch (``grid_sample``), which is what
training an adversarial patch by expectation over transformation needs (Brown
et al., "Adversarial Patch", 2017).  Placements are drawn on the CPU from a
seeded generator: the same seed gives the same placements on every device.

A placement is the patch's share of the image area, its rotation and its
centre; the rotated patch always lies wholly inside the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Placements:
    """One placement per image: the patch's area share, rotation and centre (CPU tensors)."""

    area: torch.Tensor  # (N,) the patch's share of the image's area
    angle: torch.Tensor  # (N,) degrees, counter-clockwise
    center: torch.Tensor  # (N, 2) x, y in [-1, 1] (the image's normalised coordinates)

    def __len__(self) -> int:
        return int(self.area.shape[0])

    def subset(self, index: slice | torch.Tensor) -> Placements:
        return Placements(self.area[index], self.angle[index], self.center[index])

    def to_list(self) -> list[dict[str, float]]:
        """JSON-ready: area share, angle in degrees, centre as fractions of the width and height."""
        return [
            {
                "area": round(float(a), 4),
                "angle": round(float(r), 2),
                "x": round(float(c[0] + 1) / 2, 4),
                "y": round(float(c[1] + 1) / 2, 4),
            }
            for a, r, c in zip(self.area, self.angle, self.center, strict=True)
        ]


def draw(
    count: int,
    area: tuple[float, float],
    rotate: float,
    generator: torch.Generator,
    aspect: float = 1.0,
) -> Placements:
    """``count`` placements: area share uniform in ``area``, angle uniform in ±``rotate`` degrees,
    centre uniform where the rotated patch stays inside an image of width/height ``aspect``."""
    low, high = area
    shares = low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)
    angles = (2 * torch.rand(count, generator=generator, dtype=torch.float64) - 1) * rotate
    half_w, half_h = _half_sides(shares, aspect)
    radians = angles * (math.pi / 180)
    cos, sin = radians.cos().abs(), radians.sin().abs()
    # The rotated square's half extent along each axis, in normalised units.
    reach_x = (half_w * cos + half_w * sin).clamp(max=1.0)
    reach_y = (half_h * cos + half_h * sin).clamp(max=1.0)
    u = 2 * torch.rand(count, 2, generator=generator, dtype=torch.float64) - 1
    center = torch.stack([u[:, 0] * (1 - reach_x), u[:, 1] * (1 - reach_y)], 1)
    return Placements(shares.float(), angles.float(), center.float())


def _half_sides(shares: torch.Tensor, aspect: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Half of a square patch's side, in normalised x and y units (an image is 2 units across)."""
    # side in pixels s: s^2 = share * W * H; in x units s / W * 2, in y units s / H * 2.
    # With W = aspect * H: s / W = sqrt(share / aspect), s / H = sqrt(share * aspect).
    return (shares / aspect).sqrt(), (shares * aspect).sqrt()


def paste(
    images: torch.Tensor,
    patch: torch.Tensor,
    placements: Placements,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """``images`` (N, 3, H, W) with ``patch`` (3, h, w) pasted at each placement: (N, 3, H, W).

    Bilinear, so the result's gradient reaches ``patch``; ``alpha`` (1, h, w) in [0, 1] makes
    a patch of any shape (transparent where 0).  The patch is drawn square at its area share.
    """
    n, _, height, width = images.shape
    if len(placements) != n:
        raise ValueError(f"{len(placements)} placements for {n} images")
    device, dtype = images.device, images.dtype
    half_w, half_h = _half_sides(placements.area.double(), width / height)
    radians = placements.angle.double() * (math.pi / 180)
    cos, sin = radians.cos(), radians.sin()
    # Output pixel p (normalised, y down) -> patch coordinate u in [-1, 1]: u = S^-1 R^-1 (p - c),
    # the rotation done in pixel units so that a non-square image does not shear the patch.
    aspect = width / height
    cx, cy = placements.center.double().unbind(1)
    a11, a12 = cos / half_w, sin / (half_w * aspect)
    a21, a22 = -sin * aspect / half_h, cos / half_h
    theta = torch.stack(
        [
            torch.stack([a11, a12, -(a11 * cx + a12 * cy)], 1),
            torch.stack([a21, a22, -(a21 * cx + a22 * cy)], 1),
        ],
        1,
    ).to(device=device, dtype=dtype)
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    layers = patch.to(device=device, dtype=dtype)
    cover = alpha.to(device=device, dtype=dtype) if alpha is not None else torch.ones_like(layers[:1])
    both = torch.cat([layers * cover, cover])[None].expand(n, -1, -1, -1)  # premultiplied: soft edges
    drawn = F.grid_sample(both, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = drawn[:, 3:]
    return images * (1 - mask) + drawn[:, :3]
