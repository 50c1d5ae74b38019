"""Views into the network, built on the engine: sweeps, channel grids, noise starts, heat maps.

These produce pictures (tensors or contact sheets); the CLI decides where they go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from dreamcli.config import LayerSpec, Settings
from dreamcli.engine.capture import LayerCapture, model_device
from dreamcli.engine.featurevis import visualize
from dreamcli.engine.objectives import Activations, ChannelPerImage, Objective, guide_features
from dreamcli.engine.octaves import dream
from dreamcli.engine.steps import resize
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
    fft: bool = False,
) -> list[tuple[str, torch.Tensor]]:
    """The same image dreamed once per (label, settings) variant, in order, toward ``goal_for(settings)``.

    With ``fft`` each is a feature picture of the image's size instead (``featurevis``).
    """
    return [
        (label, _picture(model, image, settings, goal_for(settings), options, report, fft))
        for label, settings in variants
    ]


def _picture(model, image, settings: Settings, goal: Objective, options, report, fft: bool) -> torch.Tensor:
    """A DeepDream of ``image``, or with ``fft`` a feature picture of its size; the batch of the input."""
    if not fft:
        return dream(model, image, settings=settings, goal=goal, options=options, report=report)
    batch = 1 if image.dim() == 3 else image.shape[0]
    pictures = visualize(
        model, tuple(image.shape[-2:]), settings=settings, goal=goal, batch=batch, report=report
    )
    return pictures[0] if image.dim() == 3 else pictures


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
    fft: bool = False,
) -> list[tuple[str, torch.Tensor]]:
    """One dream per channel of ``layer``; ``batch`` channels are dreamed together."""
    tiles = []
    for start in range(0, len(channels), batch):
        chunk = list(channels[start : start + batch])
        goal = ChannelPerImage(layer, chunk, transform, signed=fft)  # feature pictures: the mean
        images = image.expand(len(chunk), *image.shape[-3:])
        dreamed = _picture(model, images, settings, goal, options, report, fft)
        tiles += [(f"{layer} [{c}]", picture) for c, picture in zip(chunk, dreamed, strict=True)]
    return tiles


def guide_for(model: nn.Module, guide: torch.Tensor, layers: Sequence[str], max_side: int = 512) -> dict:
    """Guide features of ``guide`` at ``layers``; large guides are shrunk (the notebook used 224 px)."""
    scale = min(1.0, max_side / max(guide.shape[-2:]))
    size = (max(1, round(guide.shape[-2] * scale)), max(1, round(guide.shape[-1] * scale)))
    small = resize(guide[None].to(model_device(model)), size)
    with LayerCapture(model, layers) as capture:
        return guide_features(capture, small)


def activation_map(model: nn.Module, image: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    """Where ``spec``'s layer (or channels) fires on ``image``: (H, W) in [0, 1]."""
    with LayerCapture(model, [spec.name]) as capture, torch.no_grad():
        act = capture(image[None].to(model_device(model)))[spec.name].float()
    if spec.channels is not None:
        act = act[:, list(spec.channels)]
    energy = act.pow(2).sum(1, keepdim=True)
    energy = F.interpolate(energy, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    energy = energy - energy.min()
    return (energy / energy.max().clamp_min(1e-12)).cpu()


# A perceptual dark-to-bright map (anchors sampled from matplotlib's "inferno").
_INFERNO = (
    np.array(
        [
            [0, 0, 4],
            [40, 11, 84],
            [101, 21, 110],
            [159, 42, 99],
            [212, 72, 66],
            [245, 125, 21],
            [250, 193, 39],
            [252, 255, 164],
        ],
        dtype=np.float32,
    )
    / 255.0
)


def heat_overlay(image: torch.Tensor, heat: torch.Tensor, opacity: float = 0.6) -> torch.Tensor:
    """``heat`` coloured and laid over a grey copy of ``image``: (3, H, W)."""
    positions = heat.numpy() * (len(_INFERNO) - 1)
    low = np.floor(positions).astype(int).clip(0, len(_INFERNO) - 2)
    frac = (positions - low)[..., None]
    colour = _INFERNO[low] * (1 - frac) + _INFERNO[low + 1] * frac
    colour = torch.from_numpy(colour).permute(2, 0, 1)
    grey = image.cpu().mean(0, keepdim=True).expand(3, -1, -1)
    return (1 - opacity) * grey + opacity * colour


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
    variants = [(label, v.seeded(default=settings.seed)) for label, v in request.variants]
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
