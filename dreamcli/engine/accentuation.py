"""Feature accentuation: the photo made more *X* to the network, and still a photo.

After Hamblin, Fel et al. 2024 ("Feature Accentuation", the ``faccent``
library): start from the photo, and raise a class, a channel or a layer through
a change that lives in the decorrelated Fourier space of ``featurevis`` (so it
grows as smooth, photo-like structure, not pixel noise), seen through Lucid's
random transformations (so only robust changes count), while a pull holds the
picture near the photo.  The step is Adam's, as for feature pictures.

The pull is ``pull * mean |picture - photo|`` in 0-255 units subtracted from the
objective (the papers' signed one: a class's logit, a channel's mean): at the
default pull (``config.PULL``, 10), a grey level of mean change must buy ten
units of logit.  A trained network's logit is cheap to raise (Lite0's grows by
tens), so a pull of 1 let the photo go three times as far as a plain DeepDream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dreamcli.config import PULL, STEADY_SEED, Settings
from dreamcli.engine import masking
from dreamcli.engine import transforms as tf
from dreamcli.engine.capture import LayerCapture, model_device
from dreamcli.engine.featurevis import IMAGE_SCALE, LEARNING_RATE, STEPS_PER_ITERATION, correlated, one_over_f
from dreamcli.engine.objectives import Activations, Objective
from dreamcli.engine.steps import PIXEL_SCALE
from dreamcli.events import Report, Step, ignore


@dataclass(frozen=True)
class Accentuated:
    """The accentuated pictures (N, 3, H, W) in [0, 1], and where they changed (N, 1, H, W) in [0, 1]."""

    images: torch.Tensor
    changed: torch.Tensor


def accentuate(
    model: nn.Module,
    image: torch.Tensor,
    *,
    settings: Settings | None = None,
    goal: Objective | None = None,
    pull: float = PULL,
    steps: int | None = None,
    report: Report = ignore,
    mask: torch.Tensor | None = None,
) -> Accentuated:
    """Accentuate ``settings.layers`` (module names; or ``goal``) in ``image`` ((3, H, W) or (N, 3, H, W)).

    ``steps`` Adam steps, by default ``octaves x iterations x 8`` of ``settings``
    (320), at a rate that scales with ``step_size``.  ``mask`` ((H, W), white =
    change) keeps the photo where it is black, as ``dream``'s does.
    """
    settings = settings or Settings()
    goal = (goal or Activations(settings.layers, signed=True)).untransformed()
    single = image.dim() == 3
    device = model_device(model)
    photo = (image[None] if single else image).to(device=device, dtype=torch.float32)
    batch, _, height, width = photo.shape
    generator = torch.Generator().manual_seed(settings.seed if settings.seed is not None else STEADY_SEED)
    scale = one_over_f(height, width).to(device)
    change = torch.zeros(batch, 3, height, width // 2 + 1, 2, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([change], lr=LEARNING_RATE * settings.step_size / 1.5)
    steps = steps or settings.octaves * settings.iterations * STEPS_PER_ITERATION

    def picture() -> torch.Tensor:
        spectrum = torch.view_as_complex(change) * scale
        delta = correlated(torch.fft.irfft2(spectrum, s=(height, width), norm="ortho") / IMAGE_SCALE)
        return (photo + delta).clamp(0.0, 1.0)

    with LayerCapture(model, goal.layers) as capture, torch.enable_grad():
        report(Step(1, 1, 0, steps, (height, width), None))
        for step in range(1, steps + 1):
            optimizer.zero_grad()
            seen = picture()
            value = goal(capture(tf.STANDARD(seen, generator)))
            moved = (seen - photo).abs().flatten(1).mean(1) * PIXEL_SCALE
            (-(value - pull * moved).sum()).backward()
            optimizer.step()
            report(Step(1, 1, step, steps, (height, width), value.detach()))
    with torch.no_grad():
        images = picture()
        if mask is not None:
            weight = masking.weight_at(masking.check_mask(mask).to(device), (height, width))
            images = masking.blend(photo, images, weight)
        changed = (images - photo).abs().mean(1, keepdim=True)
        top = changed.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]
        result = Accentuated(images.to(image.device), (changed / top).to(image.device))
    return Accentuated(result.images[0], result.changed[0]) if single else result
