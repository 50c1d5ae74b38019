"""Views into the network, built on the engine: sweeps, channel grids, noise starts, contact sheets.

These produce pictures (tensors or contact sheets); the CLI decides where they go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from dreamcli.config import Settings, refuse_picks
from dreamcli.engine.objectives import Activations, ChannelPerImage, Objective
from dreamcli.engine.octaves import dream
from dreamcli.events import FileStarted, Report, ignore
from dreamcli.io.atomic import remove_stale_parts
from dreamcli.io.images import fit_label, label_font, read_image, to_pil, write_pil
from dreamcli.jobs.requests import SheetRequest
from dreamcli.models import Loaded
from dreamcli.run_options import RunOptions


def start_image(kind: str, width: int, height: int, seed: int = 0) -> torch.Tensor:
    """A picture to dream from when there is no photo.

    ``grey`` is flat mid-grey; ``noise`` is the notebook's start (``img_noise``:
    uniform noise around grey, here 0.45-0.55), which breaks symmetry.
    """
    if kind == "grey":
        return torch.full((3, height, width), 0.5)
    generator = torch.Generator().manual_seed(seed)
    return 0.45 + 0.1 * torch.rand(3, height, width, generator=generator)


def sweep(
    model: nn.Module,
    image: torch.Tensor,
    variants: Sequence[tuple[str, Settings]],
    *,
    goal_for: Callable[[Settings], Objective] = lambda settings: Activations(settings.layers),
    options: RunOptions | None = None,
    report: Report = ignore,
) -> list[tuple[str, torch.Tensor]]:
    """The same image dreamed once per (label, settings) variant, in order, toward ``goal_for(settings)``."""
    return [
        (
            label,
            dream(model, image, settings=settings, goal=goal_for(settings), options=options, report=report),
        )
        for label, settings in variants
    ]


def channel_grid(
    model: nn.Module,
    image: torch.Tensor,
    layer: str,
    channels: Sequence[int],
    settings: Settings,
    *,
    transform: Callable | None = None,
    options: RunOptions | None = None,
    report: Report = ignore,
    batch: int = 16,
) -> list[tuple[str, torch.Tensor]]:
    """One dream per channel of ``layer``; ``batch`` channels are dreamed together."""
    tiles = []
    for start in range(0, len(channels), batch):
        chunk = list(channels[start : start + batch])
        goal = ChannelPerImage(layer, chunk, transform)
        images = image.expand(len(chunk), *image.shape[-3:])
        dreamed = dream(model, images, settings=settings, goal=goal, options=options, report=report)
        tiles += [(f"{layer} [{c}]", picture) for c, picture in zip(chunk, dreamed, strict=True)]
    return tiles


def contact_sheet(
    tiles: Sequence[tuple[str, torch.Tensor]], columns: int | None = None, width: int = 320
) -> Image.Image:
    """Tiles side by side, each with its label underneath, readable at a glance."""
    columns = columns or len(tiles)
    rows = -(-len(tiles) // columns)
    first = tiles[0][1]
    height = max(1, round(width * first.shape[-2] / first.shape[-1]))
    font_size = max(10, width // 16)
    font = label_font(font_size)
    label_h = font_size + 12
    sheet = Image.new("RGB", (columns * width, rows * (height + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, picture) in enumerate(tiles):
        x, y = (i % columns) * width, (i // columns) * (height + label_h)
        small = F.interpolate(
            picture[None].float().cpu(), size=(height, width), mode="bicubic", antialias=True
        )
        sheet.paste(to_pil(small[0].clamp(0, 1)), (x, y))
        text = fit_label(draw, label, font, width - 8)
        text_w = draw.textlength(text, font=font)
        draw.text((x + (width - text_w) / 2, y + height + 5), text, fill="black", font=font)
    return sheet


# ---------------------------------------------------------------------------------------------
# The sheet job: one photo, one dream per variant, one labelled contact sheet


def run_sheet(model: Loaded, request: SheetRequest, options: RunOptions, report: Report = ignore) -> Path:
    """Dream the sheet and write it (with every variant's settings in its metadata)."""
    settings = request.settings.seeded()
    chosen = [request.channels] if request.channels is not None else []
    refuse_picks([*chosen, *(spec for _, v in request.variants for spec in v.layers)], "a sheet")
    # A variant without a seed of its own takes the sheet's, so that the tiles differ only by style.
    variants = [
        (label, v if v.seed is not None else replace(v, seed=settings.seed)) for label, v in request.variants
    ]
    image = read_image(request.photo, settings.max_size).rgb
    meta = dict(request.metadata, sheet="channels" if request.channels else "sweep")
    meta.update(settings=settings.to_dict(), input=request.photo.name)
    prepare_folder(request.output)
    if request.channels is not None:
        spec = request.channels
        channels = spec.channels or tuple(range(64))
        report(FileStarted(f"{spec.name} channels", 1, 1))
        module = model.resolve(spec.name)
        tiles = channel_grid(
            model.module, image, module, channels, model.resolved(settings), options=options, report=report
        )
        labelled = [(f"{spec.name} [{c}]", picture) for c, (_, picture) in zip(channels, tiles, strict=True)]
        columns = min(request.columns, len(labelled))
        sheet = contact_sheet(labelled, columns=columns, width=request.tile_width // 2)
    else:
        meta["variants"] = [{"label": label, "settings": v.to_dict()} for label, v in variants]
        tiles = [("input", image)]
        for position, (label, variant) in enumerate(variants, start=1):
            report(FileStarted(label, position, len(variants)))
            tiles += sweep(
                model.module, image, [(label, model.resolved(variant))], options=options, report=report
            )
        sheet = contact_sheet(tiles, width=request.tile_width)
    write_pil(request.output, sheet, meta)
    return request.output


def prepare_folder(path: Path) -> None:
    """Make the output's folder, and clear what killed runs left in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path.parent)
