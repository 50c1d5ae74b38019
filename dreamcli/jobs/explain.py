"""The spatial activations of one photo (Olah et al., "The Building Blocks of
Interpretability", Distill 2018): what a layer sees where, and what it means for the decision.

* *grid*: the layer's positions, pooled to at most ``grid`` cells a side; each cell is
  pictured by a feature visualisation of its mean activation vector
  (``objectives.Direction``, dot x cosine ** ``power`` of the picture's mean activation, which is
  what the cell's cosine is measured on, under ``transforms.SMALL``).
* *groups*: a non-negative factorisation of the layer's activations into ``groups``
  (``spatial.groups_of``), each with its map over the photo and its picture.
* *attribution*: activation x gradient of each top class's logit at the layer, summed
  over a cell's positions, or over a group's share of the activation (its map x direction).
* each cell's strongest channels (for its Hinton diagram), the chosen cell's apart.

``explain`` returns an ``Explanation``; ``explain_page.write_explanation`` writes the poster,
the page and the JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dreamcli.config import Settings
from dreamcli.engine.capture import LayerCapture, model_device
from dreamcli.engine.featurevis import STEPS_PER_ITERATION, feature_pictures
from dreamcli.engine.objectives import Direction
from dreamcli.engine.transforms import SMALL
from dreamcli.errors import SettingsError
from dreamcli.events import Report, Stage, ignore
from dreamcli.jobs.spatial import estimating, groups_of, layer_map, read_photo, spatial
from dreamcli.jobs.unit_options import ExplainOptions
from dreamcli.models import Loaded


@dataclass
class Explanation:
    """The photo, the pictures, and ``data`` (the JSON written beside them)."""

    photo: torch.Tensor  # (3, H, W)
    cell_pictures: torch.Tensor  # (rows * cols, 3, S, S), row by row
    group_pictures: torch.Tensor  # (K, 3, S, S)
    group_maps: torch.Tensor  # (K, h, w) >= 0
    data: dict[str, Any] = field(default_factory=dict)


def grid_shape(rows: int, cols: int, most: int) -> tuple[int, int]:
    """The layer's own positions, or a coarser grid with ``most`` cells on its long side."""
    long = max(rows, cols)
    if long <= most:
        return rows, cols
    return max(1, round(rows * most / long)), max(1, round(cols * most / long))


def cell_index(rows: int, cols: int, grid: tuple[int, int]) -> torch.Tensor:
    """(rows, cols) -> the cell each position of the layer falls in, row by row."""
    r = torch.arange(rows) * grid[0] // rows
    c = torch.arange(cols) * grid[1] // cols
    return r[:, None] * grid[1] + c[None, :]


def gradients(
    module: nn.Module, layer: str, logits: str, image: torch.Tensor, top: int
) -> tuple[torch.Tensor, torch.Tensor, list[int], list[float]]:
    """The layer's map (C, h, w), each top class's gradient of its logit there (k, C, h, w),
    the top classes and their probabilities."""
    target = dict(module.named_modules())[layer]
    kept: dict[str, torch.Tensor] = {}

    def leaf(_module, _inputs, output):  # the rest of the network runs from a leaf we can ask about
        kept["act"] = spatial(output, layer).detach().requires_grad_(True)
        return kept["act"]

    handle = target.register_forward_hook(leaf)
    try:
        with torch.enable_grad():
            if logits:
                with LayerCapture(module, [logits]) as capture:
                    out = capture(image)[logits]
            else:
                out = module(image)
            out = out.float().flatten(1)[0]
            probability, classes = out.softmax(0).topk(min(top, out.shape[0]))
            act = kept["act"]
            grads = [torch.autograd.grad(out[k], act, retain_graph=True)[0][0] for k in classes.tolist()]
    finally:
        handle.remove()
    stacked = torch.stack(grads).float().cpu() if grads else torch.zeros(0, *act.shape[1:])
    return act.detach()[0].float().cpu(), stacked, classes.tolist(), probability.tolist()


def explain(
    model: Loaded | nn.Module,
    layer: str,
    photo: str | Path,
    options: ExplainOptions | None = None,
    *,
    report: Report = ignore,
    class_names: Sequence[str] | None = None,
) -> Explanation:
    """The explanation of ``photo`` at ``layer``.  ``model``: a loaded network, or any module
    taking RGB in [0, 1] whose output is logits (``layer`` then a module name)."""
    options = options or ExplainOptions()
    if isinstance(model, Loaded):
        module, name, logits = model.module, model.resolve(layer), model.network.logits
        names = class_names or model.network.class_names()
    else:
        module, name, logits, names = model, layer, "", class_names
    LayerCapture(module, [name])  # an unknown layer: one line with suggestions
    rgb = read_photo(photo, options.photo_size)
    image = rgb[None].to(model_device(module))
    report(Stage("activations", 0, 1))
    if logits is not None and options.classes:
        act, grads, classes, probability = gradients(module, name, logits, image, options.classes)
    else:
        act, grads, classes, probability = layer_map(module, name, image)[0], torch.zeros(0), [], []
    report(Stage("activations", 1, 1))
    channels, rows, cols = act.shape
    grid = grid_shape(rows, cols, options.grid)
    if options.cell is not None and (options.cell[0] >= grid[0] or options.cell[1] >= grid[1]):
        raise SettingsError(
            f"cell {options.cell[0]},{options.cell[1]} is outside the {grid[0]}x{grid[1]} grid "
            f"(rows 0-{grid[0] - 1}, columns 0-{grid[1] - 1})"
        )
    index = cell_index(rows, cols, grid).flatten()
    cells = grid[0] * grid[1]
    flat = act.flatten(1)  # (C, P)
    count = torch.bincount(index, minlength=cells).clamp_min(1).float()
    vectors = torch.zeros(channels, cells).index_add_(1, index, flat) / count  # (C, cells)
    contribution = (act[None] * grads).sum(1).flatten(1) if len(classes) else torch.zeros(0, rows * cols)
    cell_attr = torch.zeros(len(classes), cells).index_add_(1, index, contribution)
    groups = groups_of(act, options.groups, options.nmf_iterations, options.seed)
    group_attr = (
        torch.einsum("kp,kc,ncp->nk", groups.maps.flatten(1), groups.directions, grads.flatten(2))
        if len(classes)
        else torch.zeros(0, len(groups.maps))
    )
    label = [names[k] if names is not None and k < len(names) else f"class {k}" for k in classes]
    targets = torch.cat([vectors.t(), groups.directions])
    pictures, cosines = _pictures(module, name, targets, options, report)
    norms = vectors.norm(dim=0)
    if options.cell is not None:
        chosen = options.cell[0] * grid[1] + options.cell[1]
    else:
        chosen = int((cell_attr[0] if len(classes) else norms).argmax())
    order = torch.argsort(vectors.abs(), dim=0, descending=True, stable=True)[
        : options.channels
    ]  # (k, cells)

    def strongest(cell: int) -> list[dict[str, Any]]:
        return [{"channel": int(c), "value": round(float(vectors[c, cell]), 5)} for c in order[:, cell]]

    data = {
        "explain": {
            "photo": str(photo),
            "layer": layer,
            "model": model.label if isinstance(model, Loaded) else type(model).__name__,
            "positions": [rows, cols],
            "grid": list(grid),
            "channels": channels,
            "size": [rgb.shape[2], rgb.shape[1]],
            **{
                k: getattr(options, k)
                for k in ("photo_size", "groups", "cell_size", "steps", "power", "param", "seed")
            },
        },
        "classes": [
            {"class": k, "name": n, "probability": round(p, 5)}
            for k, n, p in zip(classes, label, probability, strict=True)
        ],
        "cells": [
            {
                "row": i // grid[1],
                "col": i % grid[1],
                "norm": round(float(norms[i]), 5),
                "cosine": round(cosines[i], 4),
                "attribution": {n: round(float(cell_attr[j, i]), 5) for j, n in enumerate(label)},
                "channels": strongest(i),
            }
            for i in range(cells)
        ],
        "groups": {
            "share": round(groups.share, 5),
            "list": [
                {
                    "group": k + 1,
                    "size": round(float(groups.maps[k].sum()), 5),
                    "cosine": round(cosines[cells + k], 4),
                    "attribution": {n: round(float(group_attr[j, k]), 5) for j, n in enumerate(label)},
                    "channels": [
                        int(c) for c in torch.argsort(groups.directions[k].abs(), descending=True)[:8]
                    ],
                }
                for k in range(len(groups.maps))
            ],
        },
        "cell": {
            "row": chosen // grid[1],
            "col": chosen % grid[1],
            "channels": strongest(chosen),
        },
    }
    return Explanation(rgb, pictures[:cells], pictures[cells:], groups.maps, data)


def _pictures(
    module: nn.Module, layer: str, targets: torch.Tensor, options: ExplainOptions, report: Report
) -> tuple[torch.Tensor, list[float]]:
    """A picture per target direction, ``batch`` at a time, and the cosine that each picture's
    mean activation at the layer reaches with its target."""
    iterations = max(1, -(-options.steps // STEPS_PER_ITERATION))
    settings = Settings(octaves=1, iterations=iterations, seed=options.seed)
    size = (options.cell_size, options.cell_size)
    made, cosines = [], []
    report(Stage("pictures", 0, len(targets)))
    batches = -(-len(targets) // options.batch)
    steps = iterations * STEPS_PER_ITERATION
    listen = estimating(
        report,
        steps * batches,
        lambda minutes: (
            f"{len(targets)} pictures (cells and groups) at {options.cell_size} px, {steps} steps: "
            f"about {max(1, round(minutes))} min here"
        ),
    )
    for start in range(0, len(targets), options.batch):
        chunk = targets[start : start + options.batch]
        goal = Direction(layer, chunk, power=options.power, pooled=True)
        images = feature_pictures(
            module,
            size,
            settings=settings,
            goal=goal,
            batch=len(chunk),
            param=options.param,
            transform=None if options.param == "maco" else SMALL,
            report=listen if start == 0 else ignore,
        )
        reached = layer_map(module, layer, images.images).mean((2, 3))
        cosines += F.cosine_similarity(reached, chunk, dim=1).tolist()
        made.append(images.images.detach().cpu())
        report(Stage("pictures", start + len(chunk), len(targets)))
    return torch.cat(made), cosines
