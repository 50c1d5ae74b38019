"""Transformation robustness for pictures from noise: small random changes, composable.

Each transform is a callable ``(image, generator) -> image`` on a batch
(N, 3, H, W); randomness is drawn from a CPU ``torch.Generator`` so a seed gives
the same picture on every device.  ``STANDARD`` is Lucid's standard set
(Olah et al., "Feature Visualization", Distill 2017): pad 12, jitter 8, scale
0.9-1.1, rotate -10..10 degrees, jitter 4.  ``RandomCrops`` is MACO's (Fel et
al. 2023): several random crops of the picture, resized to one view, with a
little noise.  A feature grows only when it survives them, which keeps the
picture free of the high-frequency patterns a network also answers to.
``RandomAffine`` is an objective's own transform (``Objective.transform``): it
draws from its own seeded generator, ``(image) -> image``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _choice(options: Sequence, generator: torch.Generator):
    return options[int(torch.randint(len(options), (1,), generator=generator))]


@dataclass(frozen=True)
class Pad:
    """A border of ``pixels`` of ``value`` (grey): the picture's edge is not special."""

    pixels: int
    value: float = 0.5

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.pad(image, (self.pixels,) * 4, value=self.value)


@dataclass(frozen=True)
class Jitter:
    """A random crop ``pixels`` smaller on each side: a shift of up to ``pixels``."""

    pixels: int

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        d = self.pixels
        dy, dx = (int(v) for v in torch.randint(0, d + 1, (2,), generator=generator))
        return image[..., dy : image.shape[-2] - d + dy, dx : image.shape[-1] - d + dx]


@dataclass(frozen=True)
class Scale:
    """A random zoom by one of ``factors``."""

    factors: tuple[float, ...]

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        factor = _choice(self.factors, generator)
        if factor == 1:
            return image
        return F.interpolate(image, scale_factor=factor, mode="bilinear", align_corners=False)


def _rotate(image: torch.Tensor, radians: float) -> torch.Tensor:
    cos, sin = math.cos(radians), math.sin(radians)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=image.dtype, device=image.device)
    grid = F.affine_grid(theta.expand(image.shape[0], 2, 3), list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class Rotate:
    """A random rotation by one of ``degrees``."""

    degrees: tuple[float, ...]

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        angle = _choice(self.degrees, generator)
        return image if angle == 0 else _rotate(image, math.radians(angle))


@dataclass(frozen=True)
class Compose:
    """Transforms one after another."""

    parts: tuple[Transform, ...]

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for part in self.parts:
            image = part(image, generator)
        return image


@dataclass(frozen=True)
class RandomCrops:
    """``count`` random crops of ``area`` (a share of the picture, drawn per crop) resized to ``view``
    (height, width; the picture's size when None), stacked along the batch, plus Gaussian ``noise``.

    A batch of N pictures becomes ``count * N`` views, crop-major: view ``k * N + i``
    is a crop of picture ``i``.
    """

    count: int = 4
    area: tuple[float, float] = (0.25, 0.8)
    view: tuple[int, int] | None = None
    noise: float = 0.05

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        height, width = image.shape[-2:]
        view = self.view or (height, width)
        crops = []
        for _ in range(self.count):
            share = self.area[0] + (self.area[1] - self.area[0]) * float(torch.rand((), generator=generator))
            h = max(1, round(height * math.sqrt(share)))
            w = max(1, round(width * math.sqrt(share)))
            y = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            x = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            crop = image[..., y : y + h, x : x + w]
            crops.append(F.interpolate(crop, size=view, mode="bilinear", align_corners=False))
        views = torch.cat(crops)
        if self.noise:
            noise = torch.randn(views.shape, generator=generator).to(views) * self.noise
            views = views + noise
        return views


NONE = Compose(())
# Lucid's standard set: pad 12 (grey), jitter 8, scale 0.9-1.1, rotate -10..10 degrees
# (0 more often), jitter 4.
STANDARD = Compose(
    (
        Pad(12),
        Jitter(8),
        Scale(tuple(1 + (i - 5) / 50 for i in range(11))),
        Rotate((*range(-10, 11), 0, 0, 0, 0, 0)),
        Jitter(4),
    )
)


# For pictures of a few dozen pixels (``dream explain``'s 64-px cells): STANDARD's grey border
# of 12 and shifts of 12 are a third of such a picture, and the network sees mostly border.
# Lite0, _blocks.10, 8 cells of chelsea.png, 128 steps: the cosine of a cell picture's mean
# activation with its target, median / min, 0.74 / 0.60 under STANDARD, 0.77 / 0.72 under SMALL
# (benchmarks/README.md, issue 34).
SMALL = Compose(
    (
        Jitter(4),
        Scale(tuple(1 + (i - 5) / 100 for i in range(11))),
        Rotate(tuple(range(-5, 6))),
        Jitter(2),
    )
)


class RandomAffine:
    """A small random scale and rotation, differentiable, drawn from a CPU generator."""

    def __init__(self, seed: int = 0, scale: tuple[float, float] = (0.95, 1.05), degrees: float = 5.0):
        self.generator = torch.Generator().manual_seed(seed)
        self.scale, self.degrees = scale, degrees

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        u = torch.rand(2, generator=self.generator).tolist()
        factor = self.scale[0] + (self.scale[1] - self.scale[0]) * u[0]
        angle = math.radians((2 * u[1] - 1) * self.degrees)
        cos, sin = math.cos(angle) / factor, math.sin(angle) / factor
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=image.dtype, device=image.device)
        grid = F.affine_grid(theta.expand(image.shape[0], 2, 3), list(image.shape), align_corners=False)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
