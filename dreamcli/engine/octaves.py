"""The DeepDream engine's entry point: multi-octave gradient ascent on an image.

Google's 2015 notebook (https://github.com/google/deepdream/blob/master/dream.ipynb)
dreams from the smallest octave up; at each octave the base image is the photo
at that size and the dreamed *detail* (dream - base) is upscaled and added
back, so the photo's own sharpness survives.  Each step is a ``steps.step``,
computed as ``step_policy.StepPolicy`` decides (whole, tiled, or a CUDA graph).

It works with any ``nn.Module`` that takes RGB in [0, 1] plus the names of its
modules to raise.  It prints nothing and writes no files: progress goes to a
callback as ``events``.
"""

from __future__ import annotations

import torch
from torch import nn

from dreamcli.config import STEADY_SEED, Settings, refuse_picks
from dreamcli.engine import masking
from dreamcli.engine.capture import LayerCapture, model_device, smallest_input
from dreamcli.engine.objectives import Activations, Objective
from dreamcli.engine.shaping import Shaping
from dreamcli.engine.step_policy import StepPolicy, measured
from dreamcli.engine.steps import octave_sizes, random_shift, resize
from dreamcli.errors import DreamError, ImageError, SettingsError
from dreamcli.events import Note, OctaveDone, Report, Step, ignore
from dreamcli.run_options import RunOptions


def dream(
    model: nn.Module,
    image: torch.Tensor,
    *,
    settings: Settings | None = None,
    goal: Objective | None = None,
    options: RunOptions | None = None,
    report: Report = ignore,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dream on ``image`` ((3, H, W) or (N, 3, H, W), RGB in [0, 1]) and return the result.

    ``settings`` say how the dream looks (octaves, iterations, step size,
    jitter, seed); its layers, which must name modules of ``model`` (see
    ``Loaded.resolved``), make the notebook's objective unless ``goal`` gives
    another (a guide, a channel per image, a sum...).  ``options`` say how to
    compute it (precision, tiles, memory budget, CUDA graphs).  ``mask`` ((H, W),
    greyscale in [0, 1] of the image's shape, any size) dreams only where it is
    white (``masking``).  The result has the input's shape and lives on the
    input's device.
    """
    settings = settings or Settings()
    options = options or RunOptions()
    if goal is None and not settings.layers:
        raise SettingsError(
            "settings.layers is empty: name the model's modules to dream on (a network from "
            "dreamcli.load_model fills in its default layer)"
        )
    if goal is None:  # a photo's own channels are chosen before this (engine.choosing.choose)
        refuse_picks(settings.layers, "a dream without that choice")
    goal = goal or Activations(settings.layers)
    single = image.dim() == 3
    batch = image.unsqueeze(0) if single else image
    device = model_device(model)
    original = batch.to(device=device, dtype=torch.float32)
    # No seed is drawn here: callers decide a missing one (config.Settings.seeded) and record it.
    generator = torch.Generator().manual_seed(settings.seed if settings.seed is not None else STEADY_SEED)
    if mask is not None:
        mask = masking.check_mask(mask)
        masking.check_aspect(mask.shape, original.shape)
        mask = mask.to(device)

    with LayerCapture(model, goal.layers) as capture:
        sizes = _plan(capture, device, original.shape[-2:], settings, report)
        policy = StepPolicy(capture, device, options, batch=original.shape[0], shaping=Shaping.of(settings))
        for size in sizes:
            policy.for_size(size)  # refuse up front what cannot fit, before any work
        dreamed = _dream_octaves(policy, original, sizes, settings, generator, report, goal, mask)

    dreamed = dreamed.to(image.device)
    return dreamed[0] if single else dreamed


def _plan(capture: LayerCapture, device, shape, settings: Settings, report: Report) -> list[tuple[int, int]]:
    """The octave sizes; octaves under the network's smallest input are dropped, and said so."""
    height, width = shape
    min_side = measured(capture, "min_side", lambda: smallest_input(capture, device))
    if min(height, width) < min_side:
        raise ImageError(
            f"the image is {width}x{height} px, too small for layer(s) "
            f"{', '.join(capture.names)}: they need at least {min_side}x{min_side}; "
            "use a larger image or an earlier layer"
        )
    sizes = octave_sizes(height, width, settings.octaves, settings.octave_scale, min_side)
    if len(sizes) < settings.octaves:
        report(
            Note(
                f"using {len(sizes)} of {settings.octaves} octaves: a smaller octave would be "
                f"under the {min_side} px these layers need"
            )
        )
    return sizes


def _dream_octaves(
    policy: StepPolicy,
    original: torch.Tensor,
    sizes: list[tuple[int, int]],
    settings: Settings,
    generator: torch.Generator,
    report: Report,
    goal: Objective,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    detail = torch.zeros_like(resize(original, sizes[0]))
    for octave, size in enumerate(sizes, start=1):
        base = resize(original, size)
        image = base + resize(detail, size)
        report(Step(octave, len(sizes), 0, settings.iterations, size, None))
        shifts = [random_shift(generator, settings.jitter) for _ in range(settings.iterations)]

        def stepped(iteration: int, loss: torch.Tensor, octave=octave, size=size) -> None:
            report(Step(octave, len(sizes), iteration, settings.iterations, size, loss))

        image = policy.octave(image, goal, settings.step_size, shifts, report, stepped)
        if not bool(torch.isfinite(image).all()):  # one sync per octave, not per step
            raise DreamError(
                f"the dream turned to NaN or infinity at octave {octave} of {len(sizes)}: the network's "
                "weights (or a layer's weight) give no finite gradient; check the weights file"
            )
        if mask is not None:  # back to the photo where the mask is black, at every octave
            image = masking.blend(base, image, masking.weight_at(mask, size))
        report(OctaveDone(octave, len(sizes), image))
        detail = image - base
    return image
