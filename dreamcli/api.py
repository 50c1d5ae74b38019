"""The short way in from Python: ``from dreamcli import dream, load_model, Settings``.

``load_model`` gives a network with its weights, on a device; ``dream`` takes
that network (user layer names are mapped to its modules) or any
``torch.nn.Module`` (then the layers are module names), and an image as a
tensor or a ``Picture`` from ``read_image``.  The engine below
(``dreamcli.engine``) does the work; this module only joins the pieces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dreamcli import models
from dreamcli.config import Settings
from dreamcli.engine import masking
from dreamcli.engine.capture import model_device
from dreamcli.engine.choosing import choose
from dreamcli.engine.devices import run_options, select_device
from dreamcli.engine.objectives import Objective
from dreamcli.engine.octaves import dream as _dream
from dreamcli.events import Report, ignore
from dreamcli.io.images import Picture, read_image
from dreamcli.models.base import Loaded
from dreamcli.models.loading import load
from dreamcli.run_options import DEFAULT_PRECISION, RunOptions


def load_model(
    name: str = models.DEFAULT,
    *,
    weights: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Loaded:
    """The network ``name`` (``dream list models``) with its weights: ``weights`` (a local state
    dict) or the download into torch's cache; on ``device`` (auto: CUDA, then MPS, then the CPU)."""
    return load(models.get(name), weights=weights, device=str(select_device(device)), progress=progress)


def dream(
    model: Loaded | torch.nn.Module,
    image: torch.Tensor | Picture,
    *,
    settings: Settings | None = None,
    goal: Objective | None = None,
    options: RunOptions | None = None,
    report: Report = ignore,
    mask: torch.Tensor | str | Path | None = None,
) -> torch.Tensor:
    """DeepDream ``image`` ((3, H, W) or (N, 3, H, W) in [0, 1], or a ``Picture``) on ``model``.

    With a network from ``load_model``, ``settings.layers`` are the names users
    know (``inception_4c``; none, the default: the network's default layer);
    with a plain module they are its module names.  The defaults are the CLI's:
    a missing seed is drawn at random (give one to make the picture again),
    ``options`` None runs at ``auto`` precision with a memory budget on the
    model's device (deterministic kernels where a seed is given).  See
    ``dreamcli.engine.octaves.dream`` for ``goal``, ``options`` and ``report``.
    ``mask`` dreams only where it is white: a (H, W) tensor in [0, 1] or a picture's
    path (``settings.mask`` when not given, inverted by ``settings.mask_invert``).
    """
    rgb: Any = image.rgb if isinstance(image, Picture) else image
    settings = settings or Settings()
    reproducible = settings.seed is not None  # as the CLI: deterministic kernels for a seed given
    settings = settings.seeded()  # the CLI's seed policy: a missing seed is drawn
    if mask is None and settings.mask is not None:
        mask = settings.mask
    if isinstance(mask, (str, Path)):
        picture = read_image(mask)
        mask = masking.from_rgb(picture.rgb, settings.mask_invert, f"the mask {mask}", picture.alpha)
    if isinstance(model, Loaded):
        settings = model.resolved(settings)  # no layers: the network's default layer
        module = model.module
    else:
        module = model
    if options is None:  # the CLI's defaults: --precision auto, a memory budget on the model's device
        options = run_options(model_device(module), DEFAULT_PRECISION, reproducible=reproducible)
    if goal is None and rgb.dim() == 3:  # [strong:8]: this photo's own channels
        settings, _ = choose(module, rgb, settings, settings)
    return _dream(module, rgb, settings=settings, goal=goal, options=options, report=report, mask=mask)
