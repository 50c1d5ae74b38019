"""Feature pictures from noise: a decorrelated Fourier parameterisation, optimised through
random transformations (Olah, Mordvintsev and Schubert, "Feature Visualization",
Distill 2017; the defaults of its library, Lucid).

DeepDream's pixel steps, started from noise, climb toward grey high-frequency
texture: every pixel is free, and the network responds to noise.  Here the
picture is a spectrum instead, scaled by 1/frequency so that all frequencies
start equally likely, in a colour space whose channels are uncorrelated as
natural images' are; a sigmoid keeps it in [0, 1].  Each step shows the
network the picture padded, jittered, scaled and rotated a little, so only
features that survive those changes grow (``engine.transforms``).  Adam does the ascent.

``maco`` (Fel et al. 2023) fixes the spectrum's magnitude and optimises only its
phase, through random crops: the picture keeps a photo's spectrum whatever the
network asks, which is what lets it work on large modern networks.  The
gradient that reached each pixel over the run is its transparency map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dreamcli.config import STEADY_SEED, Settings
from dreamcli.engine import transforms as tf
from dreamcli.engine.capture import LayerCapture, model_device
from dreamcli.engine.objectives import Activations, Objective
from dreamcli.events import Report, Step, ignore

# Lucid's defaults: the spectrum starts as noise of this size, the image is scaled
# down by 4 after the inverse FFT, and Adam steps at 0.05 (for step_size 1.5).
SPECTRUM_SD = 0.01
IMAGE_SCALE = 4.0
LEARNING_RATE = 0.05
# Each of the octave loop's steps is this many Adam steps: 4 octaves x 10 iterations
# gives 320, near Lucid's 512 at a third less time.
STEPS_PER_ITERATION = 8
# The square root of the colour covariance of ImageNet photos (Lucid's
# color_correlation_svd_sqrt), scaled so its largest column has norm 1.
COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_SQRT = COLOR_SQRT / COLOR_SQRT.norm(dim=0).max()
# MACO (Fel et al., "Unlocking Feature Visualization for Deeper Networks with MAgnitude
# Constrained Optimization", NeurIPS 2023): the spectrum's magnitude is fixed to a natural
# image's 1/f fall-off and only its phase is optimised, at this rate (for step_size 1.5);
# each step shows the network CROPS random crops (a share of AREA of the picture each)
# resized to at most VIEW pixels a side, with a little noise.
MACO_RATE = 0.25
MACO_CROPS, MACO_AREA, MACO_NOISE, VIEW = 4, (0.25, 0.8), 0.05, 224
PARAMETERISATIONS = ("fft", "maco")


class Spectrum(nn.Module):
    """The picture as a scaled, colour-decorrelated spectrum; ``forward()`` gives RGB in (0, 1)."""

    scale: torch.Tensor  # a buffer

    def __init__(self, batch: int, height: int, width: int, generator: torch.Generator, device):
        super().__init__()
        self.size = (height, width)
        self.register_buffer("scale", one_over_f(height, width).to(device))
        shape = (batch, 3, height, width // 2 + 1, 2)
        self.spectrum = nn.Parameter((torch.randn(shape, generator=generator) * SPECTRUM_SD).to(device))

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / IMAGE_SCALE
        return torch.sigmoid(correlated(image))


class PhaseSpectrum(nn.Module):
    """MACO's picture: a fixed 1/f magnitude (luminance strongest, as in photos) and a free phase.

    The inverse transform is standardised per picture before the colours are
    recorrelated, so the picture's contrast is the magnitude's, not the optimiser's.
    """

    magnitude: torch.Tensor  # a buffer

    def __init__(self, batch: int, height: int, width: int, generator: torch.Generator, device):
        super().__init__()
        self.size = (height, width)
        self.register_buffer("magnitude", one_over_f(height, width).to(device))
        shape = (batch, 3, height, width // 2 + 1)
        self.phase = nn.Parameter(((torch.rand(shape, generator=generator) * 2 - 1) * math.pi).to(device))

    def forward(self) -> torch.Tensor:
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        flat = image.flatten(1)
        image = (image - flat.mean(1)[:, None, None, None]) / flat.std(1).clamp_min(1e-6)[:, None, None, None]
        return torch.sigmoid(correlated(image))


def one_over_f(height: int, width: int) -> torch.Tensor:
    """1/frequency over the rfft grid: low frequencies get the amplitude natural images have."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return 1.0 / (fy**2 + fx**2).sqrt().clamp_min(1.0 / max(height, width))


def correlated(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nchw,dc->ndhw", image, COLOR_SQRT.to(image))


def maco_crops(size: tuple[int, int]) -> tf.RandomCrops:
    """MACO's views of a picture of ``size``: crops resized to 0.7 of its side (a crop's typical
    side), at most ``VIEW`` pixels: the network sees them near their own scale, and four cost
    about two pictures."""
    scale = min(0.7, VIEW / max(size))
    view = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    return tf.RandomCrops(MACO_CROPS, MACO_AREA, view, MACO_NOISE)


@dataclass(frozen=True)
class Pictures:
    """Feature pictures (N, 3, H, W) in [0, 1]; ``alpha`` (N, 1, H, W) in [0, 1] says where the
    objective's gradient went over the whole optimisation (MACO's transparency map)."""

    images: torch.Tensor
    alpha: torch.Tensor


def feature_pictures(
    model: nn.Module,
    size: tuple[int, int],
    *,
    settings: Settings | None = None,
    goal: Objective | None = None,
    batch: int = 1,
    param: str = "fft",
    transform: tf.Transform | None = None,
    steps: int | None = None,
    report: Report = ignore,
) -> Pictures:
    """``batch`` feature pictures of ``size`` (height, width) on the model's device, and their alpha.

    ``param``: ``fft`` (Lucid's decorrelated spectrum, ``transform`` defaulting to
    Lucid's standard set) or ``maco`` (fixed magnitude, free phase, random crops).
    ``steps`` Adam steps, by default ``octaves x iterations x 8`` of ``settings``;
    the rate scales with ``step_size`` (1.5: the papers' rates).  ``goal`` defaults
    to the paper objective of ``settings.layers`` (signed channel means, logits).
    """
    settings = settings or Settings()
    goal = (goal or Activations(settings.layers, signed=True)).untransformed()
    device = model_device(model)
    generator = torch.Generator().manual_seed(settings.seed if settings.seed is not None else STEADY_SEED)
    if param not in PARAMETERISATIONS:
        raise ValueError(f"param must be one of {PARAMETERISATIONS}, not {param!r}")
    maco = param == "maco"
    picture = (PhaseSpectrum if maco else Spectrum)(batch, *size, generator, device)
    if transform is None:
        transform = maco_crops(size) if maco else tf.STANDARD
    rate = (MACO_RATE if maco else LEARNING_RATE) * settings.step_size / 1.5
    optimizer = torch.optim.Adam(picture.parameters(), lr=rate)
    steps = steps or settings.octaves * settings.iterations * STEPS_PER_ITERATION
    alpha = torch.zeros(batch, 1, *size, device=device)
    with LayerCapture(model, goal.layers) as capture, torch.enable_grad():
        report(Step(1, 1, 0, steps, size, None))
        for step in range(1, steps + 1):
            optimizer.zero_grad()
            image = picture()
            image.retain_grad()
            loss = goal(capture(transform(image, generator)))
            (-loss.sum()).backward()
            alpha += image.grad.detach().abs().mean(1, keepdim=True)
            optimizer.step()
            report(Step(1, 1, step, steps, size, loss.detach()))
    with torch.no_grad():
        return Pictures(picture(), _normalised(alpha))


def _normalised(alpha: torch.Tensor) -> torch.Tensor:
    """Accumulated gradient -> [0, 1]: smoothed a little, then over its 99th percentile, per picture."""
    alpha = F.avg_pool2d(alpha, 5, stride=1, padding=2, count_include_pad=False)
    flat = alpha.flatten(1)
    top = flat.kthvalue(max(1, round(flat.shape[1] * 0.99)), dim=1).values.clamp_min(1e-12)[
        :, None, None, None
    ]
    return (alpha / top).clamp(0, 1)


def visualize(
    model: nn.Module,
    size: tuple[int, int],
    *,
    settings: Settings | None = None,
    goal: Objective | None = None,
    batch: int = 1,
    report: Report = ignore,
    **options,
) -> torch.Tensor:
    """``feature_pictures(...).images``: (batch, 3, H, W) in [0, 1]; ``options`` are its keywords."""
    pictures = feature_pictures(
        model, size, settings=settings, goal=goal, batch=batch, report=report, **options
    )
    return pictures.images
