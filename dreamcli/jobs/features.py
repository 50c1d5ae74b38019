"""Feature pictures from noise: what a layer, a channel or a class looks like to the network.

``fft`` (the default) optimises a decorrelated spectrum through random
transformations (``engine.featurevis``); ``pixel`` is the 2015 way, DeepDream's
octave steps from the notebook's near-grey noise with a small random scale and
rotation each step.  One picture of the whole objective, or with ``each`` one
picture per term (per channel of a channel list, per layer, per class) on a
labelled contact sheet.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from dreamcli.config import LayerSpec
from dreamcli.engine.featurevis import visualize
from dreamcli.engine.objectives import Activations, ChannelPerImage, Objective, RandomAffine
from dreamcli.engine.octaves import dream
from dreamcli.events import FileStarted, Report, ignore
from dreamcli.io.images import write_image, write_pil
from dreamcli.jobs.requests import FeatureRequest
from dreamcli.jobs.sheets import contact_sheet, prepare_folder, start_image
from dreamcli.models import Loaded
from dreamcli.run_options import RunOptions


def terms(specs: tuple[LayerSpec, ...]) -> list[LayerSpec]:
    """One term per picture of a sheet: each channel of a single channel list, else each layer."""
    if len(specs) == 1 and specs[0].channels:
        spec = specs[0]
        return [dataclasses.replace(spec, channels=(c,)) for c in spec.channels or ()]
    return list(specs)


def run_features(
    model: Loaded, request: FeatureRequest, options: RunOptions, report: Report = ignore
) -> Path:
    """Make the picture (or the sheet) and write it, with its settings in its metadata."""
    settings = request.settings.seeded(default=0)
    width, height = request.picture_size
    meta = dict(request.metadata, features=request.param, settings=settings.to_dict(), size=[width, height])
    prepare_folder(request.output)
    resolved = model.resolved(settings)
    if not request.each:
        report(FileStarted("features", 1, 1))
        picture = _pictures(model, resolved, Activations(resolved.layers), 1, request, options, report)[0]
        write_image(request.output, picture, None, meta)
        return request.output
    wanted = terms(settings.layers)
    tiles: list[tuple[str, torch.Tensor]] = []
    single = len(settings.layers) == 1 and settings.layers[0].channels
    if single:  # one channel per image of a batch, 16 at a time
        layer = resolved.layers[0].name
        for start in range(0, len(wanted), 16):
            chunk = wanted[start : start + 16]
            report(FileStarted(str(chunk[0]), start + 1, len(wanted)))
            goal = ChannelPerImage(layer, [spec.channels[0] for spec in chunk if spec.channels])
            pictures = _pictures(model, resolved, goal, len(chunk), request, options, report)
            tiles += [(str(spec), p) for spec, p in zip(chunk, pictures, strict=True)]
    else:
        for position, spec in enumerate(wanted, start=1):
            report(FileStarted(str(spec), position, len(wanted)))
            goal = Activations([spec.with_name(model.resolve(spec.name))])
            tiles.append((str(spec), _pictures(model, resolved, goal, 1, request, options, report)[0]))
    columns = min(8, len(tiles))
    write_pil(request.output, contact_sheet(tiles, columns=columns, width=160), meta)
    return request.output


def _pictures(model, settings, goal: Objective, batch, request: FeatureRequest, options, report):
    """``batch`` pictures of ``goal``: (batch, 3, H, W) in [0, 1]."""
    width, height = request.picture_size
    if request.param == "fft":
        return visualize(
            model.module, (height, width), settings=settings, goal=goal, batch=batch, report=report
        )
    noise = start_image("noise", width, height, seed=settings.seed or 0).expand(batch, 3, height, width)
    goal = goal.with_transform(RandomAffine(settings.seed or 0))
    return dream(model.module, noise, settings=settings, goal=goal, options=options, report=report)
