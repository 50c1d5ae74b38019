"""Shaping the gradient before each step: smoothing, Laplacian normalisation, luminance only.

All off by default, which is Google's 2015 recipe.  Each is a knob of the
settings (``smooth``, ``lapnorm``, ``keep_colors``):

* smoothing blurs the gradient with three Gaussians (sigma/2, sigma, 2 sigma,
  averaged), sigma growing over an octave's steps, as pytorch-deepdream's
  cascade smoothing does: the high-frequency noise of deep layers goes, the
  shapes stay;
* Laplacian normalisation splits the gradient into a Laplacian pyramid (four
  bands of a 5-tap binomial filter) and scales each band to unit standard
  deviation before merging them back, as TensorFlow's DeepDream tutorial
  (``lap_normalize``) does: low frequencies get as much say as high ones;
* luminance only averages the gradient over R, G and B, so every step moves the
  three alike: in YCbCr, Cb and Cr do not change, and the photo keeps its colours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# TF's DeepDream tutorial: lap_normalize(scale_n=4) with the 5-tap binomial k = [1, 4, 6, 4, 1] / 16.
LAPLACIAN_LEVELS = 4
BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)
# A band whose standard deviation is below this is left as it is (tutorial: 1e-10).
STD_EPS = 1e-10


@dataclass(frozen=True)
class Shaping:
    smooth: float = 0.0  # sigma in pixels at an octave's last step; 0 = off
    lapnorm: bool = False
    luminance: bool = False

    @classmethod
    def of(cls, settings) -> Shaping | None:
        """The shaping ``settings`` ask for, or None for the plain 2015 step."""
        shaping = cls(settings.smooth, settings.lapnorm, settings.keep_colors)
        return shaping if (shaping.smooth or shaping.lapnorm or shaping.luminance) else None

    def __call__(self, grad: torch.Tensor, iteration: int, iterations: int) -> torch.Tensor:
        """``grad`` shaped for step ``iteration`` (0-based) of ``iterations`` in an octave.

        Always in float32, whatever autocast is open around it: under bf16 on an
        Intel CPU with AMX, oneDNN's JIT hung on the blur's depthwise kernel (issue 23).
        """
        with torch.autocast(grad.device.type, enabled=False):
            return self._shaped(grad.float(), iteration, iterations)

    def _shaped(self, grad: torch.Tensor, iteration: int, iterations: int) -> torch.Tensor:
        if self.smooth:
            grad = cascade_smooth(grad, self.smooth * (iteration + 1) / iterations)
        if self.lapnorm:
            grad = lap_normalize(grad)
        if self.luminance:
            grad = grad.mean(1, keepdim=True).expand_as(grad)
        return grad


def cascade_smooth(grad: torch.Tensor, sigma: float) -> torch.Tensor:
    """The mean of three Gaussian blurs of ``grad``: sigma / 2, sigma and 2 sigma."""
    blurs = [gaussian_blur(grad, s) for s in (0.5 * sigma, sigma, 2.0 * sigma)]
    return (blurs[0] + blurs[1] + blurs[2]) / 3.0


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur, reflect-padded, three sigmas each side.

    Two 1-D passes, not torchvision's one 2-D kernel: at 2 sigma = 8 px that is 25x25
    taps per pixel, and --smooth 2 made a 384 px dream 4.5x slower on our CPU (99 s
    against 22 s, benchmarks/quality.py); separable, a tap count of 2 x 25.
    """
    radius = min(math.ceil(3 * sigma), (min(x.shape[-2:]) - 1) // 2)  # reflect needs less than the side
    if radius < 1:
        return x
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def _binomial(like: torch.Tensor) -> torch.Tensor:
    k = torch.tensor(BINOMIAL, dtype=like.dtype, device=like.device)
    k = torch.outer(k, k) / k.sum() ** 2
    return k.expand(like.shape[1], 1, 5, 5)


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Laplacian level: (low, high) with x = upsampled(low) + high."""
    k = _binomial(x)
    low = F.conv2d(x, k, stride=2, padding=2, groups=x.shape[1])
    extra = [size - 2 * smaller + 1 for size, smaller in zip(x.shape[-2:], low.shape[-2:], strict=True)]
    back = F.conv_transpose2d(low, 4 * k, stride=2, padding=2, output_padding=extra, groups=x.shape[1])
    return low, x - back


def _merge(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    k = _binomial(low)
    extra = [size - 2 * smaller + 1 for size, smaller in zip(high.shape[-2:], low.shape[-2:], strict=True)]
    return (
        F.conv_transpose2d(low, 4 * k, stride=2, padding=2, output_padding=extra, groups=low.shape[1]) + high
    )


def lap_normalize(grad: torch.Tensor, levels: int = LAPLACIAN_LEVELS) -> torch.Tensor:
    """Each band of ``grad``'s Laplacian pyramid scaled to unit standard deviation, per image."""
    bands, low = [], grad
    for _ in range(levels - 1):
        if min(low.shape[-2:]) < 4:  # too small to split again
            break
        low, high = _split(low)
        bands.append(high)
    bands.append(low)
    bands = [band / band.flatten(1).std(1).clamp_min(STD_EPS).view(-1, 1, 1, 1) for band in bands]
    merged = bands[-1]
    for high in reversed(bands[:-1]):
        merged = _merge(merged, high)
    return merged
