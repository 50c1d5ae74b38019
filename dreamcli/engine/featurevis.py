"""Feature pictures from noise: a decorrelated Fourier parameterisation, optimised through
random transformations (Olah, Mordvintsev and Schubert, "Feature Visualization",
Distill 2017; the defaults of its library, Lucid).

DeepDream's pixel steps, started from noise, climb toward grey high-frequency
texture: every pixel is free, and the network responds to noise.  Here the
picture is a spectrum instead, scaled by 1/frequency so that all frequencies
start equally likely, in a colour space whose channels are uncorrelated as
natural images' are; a sigmoid keeps it in [0, 1].  Each step shows the
network the picture padded, jittered, scaled and rotated a little, so only
features that survive those changes grow.  Adam does the ascent.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dreamcli.config import Settings
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
# Lucid's standard transforms: pad 12 (grey), jitter 8, scale 0.9-1.1, rotate -10..10
# degrees (0 more often), jitter 4.
PAD, JITTERS = 12, (8, 4)
SCALES = [1 + (i - 5) / 50 for i in range(11)]
ANGLES = [*range(-10, 11), 0, 0, 0, 0, 0]


class Spectrum(nn.Module):
    """The picture as a scaled, colour-decorrelated spectrum; ``forward()`` gives RGB in (0, 1)."""

    def __init__(self, batch: int, height: int, width: int, generator: torch.Generator, device):
        super().__init__()
        self.size = (height, width)
        fy = torch.fft.fftfreq(height)[:, None]
        fx = torch.fft.rfftfreq(width)[None, :]
        freqs = (fy**2 + fx**2).sqrt()
        # 1/f: low frequencies get the amplitude natural images have (Lucid's decay power 1).
        self.register_buffer("scale", (1.0 / freqs.clamp_min(1.0 / max(height, width))).to(device))
        shape = (batch, 3, height, width // 2 + 1, 2)
        self.spectrum = nn.Parameter((torch.randn(shape, generator=generator) * SPECTRUM_SD).to(device))

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / IMAGE_SCALE
        colours = torch.einsum("nchw,dc->ndhw", image, COLOR_SQRT.to(image))
        return torch.sigmoid(colours)


def transformed(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Lucid's standard transforms: pad, jitter, scale, rotate, jitter (drawn on the CPU)."""

    def choice(options):
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    def jitter(x, d):
        dy, dx = (int(v) for v in torch.randint(0, d + 1, (2,), generator=generator))
        return x[..., dy : x.shape[-2] - d + dy, dx : x.shape[-1] - d + dx]

    x = F.pad(image, (PAD,) * 4, value=0.5)
    x = jitter(x, JITTERS[0])
    scale = choice(SCALES)
    x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    angle = math.radians(choice(ANGLES))
    theta = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]],
        dtype=x.dtype,
        device=x.device,
    )
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return jitter(x, JITTERS[1])


def visualize(
    model: nn.Module,
    size: tuple[int, int],
    *,
    settings: Settings | None = None,
    goal: Objective | None = None,
    batch: int = 1,
    report: Report = ignore,
) -> torch.Tensor:
    """A feature picture of ``size`` (height, width): (batch, 3, H, W) in [0, 1], on the model's device.

    ``settings.layers`` (module names) make the objective unless ``goal`` gives
    another; it runs ``octaves x iterations x 8`` Adam steps at a rate that
    scales with ``step_size`` (Lucid's 0.05 at the default 1.5), from ``seed``.
    """
    settings = settings or Settings()
    goal = (goal or Activations(settings.layers)).untransformed()
    device = model_device(model)
    generator = torch.Generator().manual_seed(settings.seed if settings.seed is not None else 0)
    picture = Spectrum(batch, *size, generator, device)
    optimizer = torch.optim.Adam(picture.parameters(), lr=LEARNING_RATE * settings.step_size / 1.5)
    steps = settings.octaves * settings.iterations * STEPS_PER_ITERATION
    with LayerCapture(model, goal.layers) as capture, torch.enable_grad():
        report(Step(1, 1, 0, steps, size, None))
        for step in range(1, steps + 1):
            optimizer.zero_grad()
            loss = goal(capture(transformed(picture(), generator)))
            (-loss.sum()).backward()
            optimizer.step()
            report(Step(1, 1, step, steps, size, loss.detach()))
    with torch.no_grad():
        return picture()
