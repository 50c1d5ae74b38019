"""Runs that make one picture or one animation: views into the network, zooms, videos.

Click-free, like the rest below the CLI: problems are raised as DreamError
subclasses, and progress goes to a callback as ``events`` (``FileStarted``
for each dream of a sheet, ``FrameDone`` for each frame).  Every run takes the
command's one ``RunOptions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dreamcli import animate, views
from dreamcli.config import LayerSpec, Settings
from dreamcli.errors import DreamError, SettingsError
from dreamcli.events import FileStarted, FrameDone, Report, ignore
from dreamcli.formats import ANIMATIONS
from dreamcli.imageio import check_output, read_image, write_image, write_pil
from dreamcli.models import Loaded
from dreamcli.objectives import Activations, Guided
from dreamcli.options import RunOptions


@dataclass
class Start:
    """What a run dreams from: one photo, or noise/grey of a size."""

    photo: Path | None = None
    kind: str = "photo"  # photo, noise or grey
    size: tuple[int, int] | None = None  # (width, height) for noise/grey

    @classmethod
    def from_inputs(cls, names: Sequence[str], kind: str, size: tuple[int, int] | None, what: str) -> Start:
        if kind == "photo" and len(names) != 1:
            raise SettingsError(f"{what}: give exactly one INPUT (or --start noise and none)")
        if kind != "photo" and names:
            raise SettingsError(f"--start {kind} dreams without a photo: leave out INPUT")
        return cls(Path(names[0]) if names else None, kind, size)

    @property
    def stem(self) -> str:
        return self.photo.stem if self.photo else self.kind

    @property
    def folder(self) -> Path:
        return self.photo.parent if self.photo else Path(".")

    def image(self, settings: Settings, default_size: tuple[int, int]) -> torch.Tensor:
        if self.photo is not None:
            return read_image(self.photo, settings.max_size).rgb
        return views.start_image(self.kind, *(self.size or default_size), seed=settings.seed or 0)


def image_output(output: Path | None, start: Start, suffix: str) -> Path:
    path = output or start.folder / f"{start.stem}_{suffix}.png"
    check_output(path)
    return path


@dataclass
class View:
    """A view: a sweep over variants, a channel grid, or one dream (guided, of a class, from noise)."""

    start: Start
    settings: Settings
    variants: list[tuple[str, Settings]] = field(default_factory=list)  # a sweep when not empty
    channel_grid: LayerSpec | None = None
    guide: Path | None = None
    heatmap: bool = False
    output: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "channels" if self.channel_grid else "sweep" if self.variants else "dream"


def run_view(model: Loaded, view: View, options: RunOptions, report: Report = ignore) -> Path:
    """Make the view's picture (and heat map); return the output path."""
    output = image_output(view.output, view.start, view.kind)
    image = view.start.image(view.settings, (224, 224) if view.channel_grid else (512, 512))
    transform = views.view_transform(view.start.kind, view.settings.seed or 0)
    features = None
    if view.guide is not None:
        layers = [spec.name for spec in model.resolved(view.settings).layers]
        features = views.guide_for(model.module, read_image(view.guide).rgb, layers)

    def goal_for(settings: Settings):
        if features is not None:
            return Guided(settings.layers, features, transform)
        return Activations(settings.layers, transform)

    meta = dict(view.metadata, view=view.kind, start=view.start.kind, settings=view.settings.to_dict())
    meta["guide"] = str(view.guide) if view.guide else None
    if view.kind == "channels":
        spec = view.channel_grid
        channels = spec.channels or tuple(range(64))
        report(FileStarted(f"{spec.name} channels", 1, 1))
        tiles = views.channel_grid(
            model.module,
            image,
            model.resolve(spec.name),
            channels,
            view.settings,
            transform=transform,
            options=options,
            report=report,
        )
        labelled = [(f"{spec.name} [{c}]", picture) for c, (_, picture) in zip(channels, tiles, strict=True)]
        write_pil(output, views.contact_sheet(labelled, columns=min(8, len(labelled)), width=160), meta)
    elif view.kind == "sweep":
        tiles = [("input" if view.start.photo else view.start.kind, image)]
        for position, (label, variant) in enumerate(view.variants, start=1):
            report(FileStarted(label, position, len(view.variants)))
            variants = [(label, model.resolved(variant))]
            tiles += views.sweep(
                model.module, image, variants, goal_for=goal_for, options=options, report=report
            )
        write_pil(output, views.contact_sheet(tiles), meta)
    else:
        report(FileStarted(view.start.stem, 1, 1))
        variants = [("", model.resolved(view.settings))]
        dreamed = views.sweep(
            model.module, image, variants, goal_for=goal_for, options=options, report=report
        )
        write_image(output, dreamed[0][1], None, meta)
    if view.heatmap:
        spec = view.settings.layers[0]
        heat = views.activation_map(model.module, image, spec.with_name(model.resolve(spec.name)))
        write_image(
            output.with_name(f"{output.stem}_heatmap.png"), views.heat_overlay(image, heat), None, meta
        )
    return output


def animation_output(output: Path | None, default: Path, allowed: set[str]) -> Path:
    path = output or default
    if path.suffix.lower() not in allowed:
        choices = ", ".join(sorted(s.lstrip(".") or "a folder" for s in allowed))
        raise SettingsError(f"cannot write {path}: use one of {choices}")
    return path


@dataclass
class Zoom:
    start: Start
    settings: Settings
    frames: int
    zoom: float = 1.05
    rotate: float = 0.0
    pan: tuple[float, float] = (0.0, 0.0)
    fps: float = 12.0
    output: Path | None = None


def zoom_output(zoom: Zoom) -> Path:
    default = zoom.start.folder / f"{zoom.start.stem}_zoom.gif"
    return animation_output(zoom.output, default, {*ANIMATIONS, ""})


def run_zoom(model: Loaded, zoom: Zoom, options: RunOptions, report: Report = ignore) -> Path:
    """Dream, zoom, dream again; write the frames as GIF, WebP, MP4 or a folder of PNGs."""
    output = zoom_output(zoom)
    image = zoom.start.image(zoom.settings, (512, 512))
    frames = []
    sequence = animate.zoom_frames(
        model.module,
        image,
        model.resolved(zoom.settings),
        zoom.frames,
        zoom.zoom,
        zoom.rotate,
        zoom.pan,
        options=options,
        report=report,
    )
    for index, frame in enumerate(sequence, start=1):
        frames.append(frame.cpu())
        report(FrameDone(index, zoom.frames))
    animate.write_animation(output, frames, zoom.fps)
    return output


def video_output(source: Path, output: Path | None) -> Path:
    if not source.is_file():
        raise DreamError(f"{source} does not exist; check the path")
    return animation_output(output, source.with_name(f"{source.stem}_dream.mp4"), {".mp4"})


def run_video(
    model: Loaded,
    source: Path,
    output: Path,
    settings: Settings,
    blend: float,
    flow: bool,
    options: RunOptions,
    report: Report = ignore,
) -> animate.VideoInfo:
    """Dream every frame of ``source`` into ``output``."""
    return animate.dream_video(
        model.module, source, output, model.resolved(settings), blend, flow, options=options, report=report
    )
