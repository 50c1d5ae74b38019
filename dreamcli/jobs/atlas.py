"""An activation atlas of the user's own photos (Carter et al., "Activation Atlas", Distill 2019).

Four stages, each reported through the callback as ``events.Stage``:

1. *activations*: every photo is read (EXIF rotation applied), scaled so that
   its long side is ``size`` pixels (smaller photos are enlarged, so every
   photo is seen at the same scale), and run through the network up to the
   layer only.  A seeded random sample of its spatial positions is kept
   (``samples_per_image``), and all samples go through a seeded reservoir of
   ``max_samples``: memory is bounded whatever the number of photos, and the
   photos stream through one at a time, decoded a little ahead in a thread.
   A photo that cannot be read or run is reported (``events.PhotoSkipped``) and left
   out; the others go on.
2. *layout*: the samples are laid out in 2-D by UMAP (the ``dreamcli[atlas]``
   extra), t-SNE (scikit-learn, which comes with the same extra) or PCA (torch
   only).  UMAP and t-SNE first see the samples projected on their 50 main
   (uncentred) directions, which keeps cosine similarity and makes the
   neighbour search fast; their metric is cosine.
3. *render*: the layout is scaled to the unit square (the 1st-99th percentile
   of each axis; outliers go to the border cells) and binned into a grid; the
   mean activation of each cell with at least ``min_count`` samples is drawn by
   feature visualisation (``featurevis``, the Fourier parameterisation) of
   that direction (``objectives.Direction``), ``batch`` cells at a time.
4. *labels* (optional): each cell's picture is classified by the whole network
   (the model's logits), and the top class is written under it.  Classifying
   the picture works for any layer and any network with a classifier; running
   the rest of the network from an averaged activation would need a network cut
   in two at every layer.

``make_atlas`` returns an ``Atlas`` (the picture and a JSON-ready description:
per cell its place, sample count, label and the photos and positions that fell
in it, most typical first); ``write_atlas`` writes both atomically.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from dreamcli.config import Settings
from dreamcli.engine.capture import LayerCapture, model_device
from dreamcli.engine.featurevis import STEPS_PER_ITERATION, visualize
from dreamcli.engine.objectives import Direction
from dreamcli.errors import DreamError, SettingsError
from dreamcli.events import PhotoSkipped, Report, Stage, ignore
from dreamcli.io.atomic import atomic_write, remove_stale_parts
from dreamcli.io.images import fit_label, label_font, write_pil
from dreamcli.jobs.atlas_layout import layout, normalised, require_layout
from dreamcli.jobs.atlas_samples import Attribution, Samples, collect
from dreamcli.jobs.requests import AtlasOptions
from dreamcli.models import Loaded

# UMAP's and t-SNE's neighbour graphs need some samples (UMAP failed on 2, measured).
MIN_SAMPLES_EMBEDDED = 16
BACKGROUND = (255, 255, 255)
# The side the labelling classifier sees a cell's picture at (ImageNet's 224).
CLASSIFY_SIDE = 224


@dataclass
class Atlas:
    """The atlas picture and what it shows: ``to_json()`` is the file written beside it."""

    image: Image.Image
    cells: list[dict[str, Any]]
    metadata: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    layout: torch.Tensor | None = None  # (N, 2) in the unit square, one point per sample

    def to_json(self) -> dict[str, Any]:
        return {"atlas": self.metadata, "cells": self.cells, "skipped": self.skipped}


def make_atlas(
    model: Loaded | nn.Module,
    layer: str,
    paths: Sequence[str | Path],
    options: AtlasOptions | None = None,
    *,
    report: Report = ignore,
    class_names: Sequence[str] | None = None,
) -> Atlas:
    """The atlas of ``layer`` over the photos ``paths``.

    ``model`` is a loaded network (its layer names and class names are used) or
    any module that takes RGB in [0, 1] and whose output is logits (then
    ``layer`` is a module name, and labels say ``class N`` unless
    ``class_names`` are given).  Raises SettingsError for a bad layer or
    method, a missing extra, or when no photo could be used.
    """
    options = options or AtlasOptions()
    module, layer_name, logits, names = _unpack(model, layer, class_names, options.labels)
    attribution, compared = _compared(model, options.compare, class_names)
    photo_paths = [Path(p) for p in paths]
    if not photo_paths:
        raise SettingsError("no photos to make an atlas of")
    require_layout(options.method)  # a missing extra is found before any work
    started = time.perf_counter()
    skipped: list[dict[str, str]] = []

    def skip(path: Path, error: str) -> None:
        skipped.append({"path": str(path), "error": error})
        report(PhotoSkipped(path, error))

    samples = collect(
        module, layer_name, photo_paths, options, report=report, on_error=skip, attribution=attribution
    )
    count = samples.vectors.shape[0]
    if count < (2 if options.method == "pca" else MIN_SAMPLES_EMBEDDED):
        raise DreamError(
            f"too few samples for a {options.method} atlas: {count} from {len(photo_paths)} photos; "
            "add photos or raise the samples per photo"
            + ("" if options.method == "pca" else f" (to {MIN_SAMPLES_EMBEDDED}), or use the pca method")
        )
    if count < options.min_count:
        raise DreamError(
            f"too few samples for an atlas: {count} from {len(photo_paths)} photos, and a cell is drawn from "
            f"at least {options.min_count}; add photos or raise the samples per photo"
        )
    timings = {"activations_s": time.perf_counter() - started}
    t0 = time.perf_counter()
    report(Stage("layout", 0, samples.vectors.shape[0]))
    points = normalised(layout(samples.vectors, options.method, options.seed))
    report(Stage("layout", samples.vectors.shape[0], samples.vectors.shape[0]))
    timings["layout_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cells = bin_cells(points, samples, options, compared)
    if not cells:
        raise DreamError(
            f"no cell of the {options.grid}x{options.grid} grid gathers the {options.min_count} samples a "
            f"cell is drawn from ({count} samples in all); add photos, raise the samples per photo, or make "
            "the grid smaller"
        )
    pictures = render_cells(module, layer_name, [c.pop("_mean") for c in cells], options, report=report)
    timings["render_s"] = time.perf_counter() - t0
    if logits is not None:
        t0 = time.perf_counter()
        for cell, label in zip(cells, classify(module, logits, pictures, names, report), strict=True):
            cell.update(label)
        timings["labels_s"] = time.perf_counter() - t0
    for cell in cells:
        cell["photos"] = [
            {"path": str(photo_paths[i]), "x": round(x), "y": round(y)} for i, x, y in cell.pop("_photos")
        ]
    image = assemble(pictures, cells, options)
    metadata = {
        "model": model.label if isinstance(model, Loaded) else type(model).__name__,
        "layer": layer,
        **{k: v for k, v in asdict(options).items()},
        "photos": len(photo_paths),
        "photos_used": len(photo_paths) - len(skipped),
        "samples": int(samples.vectors.shape[0]),
        "samples_seen": samples.seen,
        "channels": int(samples.vectors.shape[1]),
        "cells": len(cells),
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    return Atlas(image, cells, metadata, skipped, points)


def write_atlas(atlas: Atlas, image_path: str | Path, json_path: str | Path | None = None) -> None:
    """Write the picture (its format from the extension) and the JSON, each atomically; the
    JSON names the picture (``atlas.image``).

    ``json_path`` defaults to the picture's path with ``.json`` for its extension.
    """
    image_path = Path(image_path)
    json_path = Path(json_path) if json_path is not None else image_path.with_suffix(".json")
    for folder in {image_path.parent, json_path.parent}:
        remove_stale_parts(folder)  # left by a run killed while writing
    # ensure_ascii: a file name that is not UTF-8 (surrogate escapes) still makes valid JSON,
    # and os.fsencode(path) gives its bytes back.  The JSON first: an existing picture (which
    # a rerun skips) then always has its JSON.
    described = atlas.to_json()
    described["atlas"] = {"image": image_path.name, **described["atlas"]}  # whose map this is
    text = json.dumps(described, indent=1, ensure_ascii=True) + "\n"
    atomic_write(json_path, lambda handle: handle.write(text.encode("ascii")))
    write_pil(image_path, atlas.image)


# ---------------------------------------------------------------------------------------------
# 1. Activations


def _unpack(model, layer: str, class_names, labels: bool):
    """The module, the layer's module name, the logits' module ('' = the output) and the class names."""
    if isinstance(model, Loaded):
        module, name = model.module, model.resolve(layer)
        logits = model.resolve(model.network.logits) if labels and model.network.logits else None
        if labels and logits is None:
            raise SettingsError(
                f"{model.network.name} has no classifier to label the atlas with; leave out labels"
            )
        names = class_names or model.network.class_names()
    else:
        module, name, logits, names = model, layer, ("" if labels else None), class_names
    LayerCapture(module, [name])  # raises for an unknown layer, with suggestions
    return module, name, logits, (list(names) if names is not None else None)


def _compared(
    model, compare: tuple[str, str] | None, class_names
) -> tuple[Attribution | None, tuple[str, str] | None]:
    """``--compare A,B``: the classes (by name, with "did you mean", or index) and their names."""
    if compare is None:
        return None, None
    if isinstance(model, Loaded):
        network = model.network
        if network.logits is None:
            raise SettingsError(f"{network.name} has no classifier to compare classes with")
        a, b = (network.class_index(name) for name in compare)
        names, logits = class_names or network.class_names(), model.resolve(network.logits)
    else:
        names, logits = class_names, ""
        a, b = (_index(name, names) for name in compare)
    if a == b:
        raise SettingsError(f"--compare names one class twice ({compare[0]!r}, {compare[1]!r}); give two")
    named = tuple(names[k] if names is not None and k < len(names) else f"class {k}" for k in (a, b))
    return Attribution(logits, a, b), (named[0], named[1])


def _index(name: str, names) -> int:
    if names is not None and name.strip() in names:
        return list(names).index(name.strip())
    if name.strip().isdecimal():
        return int(name)
    raise SettingsError(f"unknown class {name!r}: give a class index")


# ---------------------------------------------------------------------------------------------
# Cells and their pictures


def bin_cells(
    points: torch.Tensor, samples: Samples, options: AtlasOptions, compared: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """The grid's cells with at least ``min_count`` samples, row by row (row 0 at the top).

    Each has its row, column, count and (private) mean vector and most typical photos; with
    ``compared`` class names (and the samples' attribution), the mean attribution to each.
    """
    grid = options.grid
    col = (points[:, 0] * grid).long().clamp(0, grid - 1)
    row = ((1 - points[:, 1]) * grid).long().clamp(0, grid - 1)  # y up, as a plot
    cell_of = row * grid + col
    counts = torch.bincount(cell_of, minlength=grid * grid)
    cells = []
    for index in torch.nonzero(counts >= options.min_count).flatten().tolist():
        members = torch.nonzero(cell_of == index).flatten()
        vectors = samples.vectors[members]
        mean = vectors.mean(0)
        # The most typical samples first (closest in direction to the mean), one per photo.
        similarity = F.cosine_similarity(vectors, mean[None], dim=1)
        photos: list[tuple[int, float, float]] = []
        seen: set[int] = set()
        for k in torch.argsort(similarity, descending=True, stable=True).tolist():
            photo = int(samples.photo[members[k]])
            if photo not in seen and len(photos) < options.photos_per_cell:
                seen.add(photo)
                x, y = samples.xy[members[k]].tolist()
                photos.append((photo, x, y))
        cell = {"row": index // grid, "col": index % grid, "count": int(counts[index])}
        if compared is not None and samples.attribution is not None:
            a, b = samples.attribution[members].mean(0).tolist()
            cell["attribution"] = {compared[0]: round(a, 5), compared[1]: round(b, 5)}
        cells.append({**cell, "_mean": mean, "_photos": photos})
    return cells


def render_cells(
    module: nn.Module,
    layer: str,
    directions: Sequence[torch.Tensor],
    options: AtlasOptions,
    *,
    report: Report = ignore,
) -> torch.Tensor:
    """Stage 3: one feature picture per direction, ``batch`` at a time: (N, 3, cell, cell) on the CPU."""
    iterations = max(1, math.ceil(options.steps / STEPS_PER_ITERATION))
    settings = Settings(octaves=1, iterations=iterations, step_size=options.step_size, seed=options.seed)
    size = (options.cell_size, options.cell_size)
    pictures = []
    report(Stage("render", 0, len(directions)))
    for start in range(0, len(directions), options.batch):
        chunk = torch.stack(list(directions[start : start + options.batch]))
        goal = Direction(layer, chunk, power=options.power)
        pictures.append(visualize(module, size, settings=settings, goal=goal, batch=len(chunk)).cpu())
        report(Stage("render", start + len(chunk), len(directions)))
    return torch.cat(pictures) if pictures else torch.zeros(0, 3, *size)


def classify(
    module: nn.Module,
    logits: str,
    pictures: torch.Tensor,
    names: Sequence[str] | None,
    report: Report = ignore,
) -> list[dict[str, Any]]:
    """Stage 4: each picture's top class by the whole network (``logits``: its module, '' = the output)."""
    device = model_device(module)
    labels = []
    report(Stage("labels", 0, len(pictures)))
    with torch.no_grad():
        for start in range(0, len(pictures), 16):
            x = F.interpolate(
                pictures[start : start + 16], size=(CLASSIFY_SIDE, CLASSIFY_SIDE), mode="bilinear"
            )
            x = x.to(device)
            if logits:
                with LayerCapture(module, [logits]) as capture:
                    out = capture(x)[logits]
            else:
                out = module(x)
            out = out.float().flatten(1)
            probability, top = out.softmax(1).max(1)
            for p, k in zip(probability.tolist(), top.tolist(), strict=True):
                name = names[k] if names is not None and k < len(names) else f"class {k}"
                labels.append({"label": name, "class": k, "probability": round(p, 4)})
            report(Stage("labels", min(start + 16, len(pictures)), len(pictures)))
    return labels


# ---------------------------------------------------------------------------------------------
# The picture


def assemble(pictures: torch.Tensor, cells: Sequence[dict[str, Any]], options: AtlasOptions) -> Image.Image:
    """The grid of cell pictures (empty cells in the background colour), labels under them if any.

    Cells with an attribution to two classes get a border on a diverging band (blue: toward
    the first, orange: toward the second, grey: neither), and the picture a legend under it.
    """
    side = options.cell_size
    compared = [c for c in cells if "attribution" in c]
    legend = max(14, side // 4) if compared else 0
    atlas = Image.new("RGB", (options.grid * side, options.grid * side + legend), BACKGROUND)
    data = pictures.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    draw = ImageDraw.Draw(atlas)
    font_size = max(8, side // 8)
    font = label_font(font_size)
    for cell, pixels in zip(cells, data, strict=True):
        x, y = cell["col"] * side, cell["row"] * side
        atlas.paste(Image.fromarray(np.ascontiguousarray(pixels), "RGB"), (x, y))
        if "label" in cell:
            text = fit_label(draw, cell["label"].split(",")[0], font, side - 4)
            band = y + side - font_size - 4
            draw.rectangle((x, band, x + side - 1, y + side - 1), fill=(0, 0, 0))
            draw.text((x + 2, band + 1), text, fill=(255, 255, 255), font=font)
    if compared:
        _borders(draw, compared, side)
        _legend(draw, list(compared[0]["attribution"]), atlas.width, atlas.height - legend, legend)
    return atlas


SIDE_A, SIDE_B, NEUTRAL = (30, 90, 230), (235, 120, 20), (200, 200, 200)


def lean_colour(lean: float) -> tuple[int, int, int]:
    """-1 (all toward the second class) .. 1 (all toward the first) -> orange .. grey .. blue."""
    end = SIDE_A if lean >= 0 else SIDE_B
    t = min(1.0, abs(lean))
    return tuple(round(n + (e - n) * t) for n, e in zip(NEUTRAL, end, strict=True))  # type: ignore[return-value]


def _borders(draw: ImageDraw.ImageDraw, cells: Sequence[dict[str, Any]], side: int) -> None:
    """Each cell framed by the colour of its attribution to A minus B."""
    leans = [(lambda v: v[0] - v[1])(list(c["attribution"].values())) for c in cells]
    # Full colour from the 90th percentile of |lean| up: a few strong cells do not wash out the rest.
    scale = float(np.quantile(np.abs(leans), 0.9)) if leans else 0.0
    scale = scale or max((abs(v) for v in leans), default=0.0) or 1.0
    width = max(2, side // 16)
    for cell, lean in zip(cells, leans, strict=True):
        x, y = cell["col"] * side, cell["row"] * side
        colour = lean_colour(lean / scale)
        for k in range(width):
            draw.rectangle((x + k, y + k, x + side - 1 - k, y + side - 1 - k), outline=colour)


def _legend(draw: ImageDraw.ImageDraw, names: list[str], width: int, top: int, height: int) -> None:
    """A band under the grid: the first class's blue on the left, the second's orange on the right."""
    for x in range(width):
        draw.line((x, top, x, top + height - 1), fill=lean_colour(1 - 2 * x / max(1, width - 1)))
    font = label_font(max(8, height - 4))
    left = fit_label(draw, f"< {names[0].split(',')[0]}", font, width // 2 - 4)
    right = fit_label(draw, f"{names[1].split(',')[0]} >", font, width // 2 - 4)
    draw.text((2, top + 1), left, fill=(255, 255, 255), font=font)
    draw.text(
        (width - 2 - draw.textlength(right, font=font), top + 1), right, fill=(255, 255, 255), font=font
    )
