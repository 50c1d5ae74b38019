"""Runs that make one picture or one animation: views into the network, zooms, videos.

Click-free, like the rest below the CLI: problems are raised as DreamError
subclasses, and progress goes to a callback as ``events`` (``FileStarted``
for each dream of a sheet, ``FrameDone`` for each frame).  Every run takes the
command's one ``RunOptions``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from dreamcli.config import Settings
from dreamcli.engine.objectives import Activations, Guided
from dreamcli.events import FileStarted, FrameDone, Report, ignore
from dreamcli.io.atomic import remove_stale_parts
from dreamcli.io.images import read_image, write_image, write_pil
from dreamcli.jobs import animations as animate
from dreamcli.jobs import sheets as views
from dreamcli.jobs.outputs import Start, View, Zoom, image_output, seeded, zoom_output
from dreamcli.models import Loaded
from dreamcli.run_options import RunOptions


def start_image(start: Start, settings: Settings, default_size: tuple[int, int]) -> torch.Tensor:
    """The picture a run dreams from: the photo, or noise/grey of the asked size."""
    if start.photo is not None:
        return read_image(start.photo, settings.max_size).rgb
    return views.start_image(start.kind, *(start.size or default_size), seed=settings.seed or 0)


def _prepare_folder(path: Path) -> None:
    """Make the output's folder, and clear what killed runs left in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path.parent)


def run_view(model: Loaded, view: View, options: RunOptions, report: Report = ignore) -> Path:
    """Make the view's picture (and heat map); return the output path."""
    output = image_output(view.output, view.start, view.kind, view.into_folder)
    view = dataclasses.replace(view, settings=seeded(view.settings))
    seed = view.settings.seed
    variants = [(label, seeded(v, default=seed)) for label, v in view.variants]
    image = start_image(view.start, view.settings, (224, 224) if view.channel_grid else (512, 512))
    transform = views.view_transform(view.start.kind, seed)
    # Dreams from noise or grey are feature pictures of a spectrum (--param fft, the default there:
    # benchmarks/README.md); a photo stays a DeepDream.
    fft = view.start.photo is None and view.settings.param in ("auto", "fft")
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
    if variants:  # a sweep: each picture's own settings
        meta["variants"] = [{"label": label, "settings": v.to_dict()} for label, v in variants]
    _prepare_folder(output)
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
            fft=fft,
        )
        labelled = [(f"{spec.name} [{c}]", picture) for c, (_, picture) in zip(channels, tiles, strict=True)]
        write_pil(output, views.contact_sheet(labelled, columns=min(8, len(labelled)), width=160), meta)
    elif view.kind == "sweep":
        tiles = [("input" if view.start.photo else view.start.kind, image)]
        for position, (label, variant) in enumerate(variants, start=1):
            report(FileStarted(label, position, len(variants)))
            one = [(label, model.resolved(variant))]
            tiles += views.sweep(
                model.module, image, one, goal_for=goal_for, options=options, report=report, fft=fft
            )
        write_pil(output, views.contact_sheet(tiles), meta)
    else:
        report(FileStarted(view.start.stem, 1, 1))
        one = [("", model.resolved(view.settings))]
        dreamed = views.sweep(
            model.module, image, one, goal_for=goal_for, options=options, report=report, fft=fft
        )
        write_image(output, dreamed[0][1], None, meta)
    if view.heatmap:
        spec = view.settings.layers[0]
        heat = views.activation_map(model.module, image, spec.with_name(model.resolve(spec.name)))
        write_image(
            output.with_name(f"{output.stem}_heatmap.png"), views.heat_overlay(image, heat), None, meta
        )
    return output


def run_zoom(model: Loaded, zoom: Zoom, options: RunOptions, report: Report = ignore) -> Path:
    """Dream, zoom, dream again; write the frames as GIF, WebP, MP4 or a folder of PNGs."""
    output = zoom_output(zoom)
    # Animations keep one seed for every frame (0 unless given), so nothing flickers but what moves.
    zoom = dataclasses.replace(zoom, settings=seeded(zoom.settings, default=0))
    image = start_image(zoom.start, zoom.settings, (512, 512))
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
    meta = dict(zoom.metadata, zoom=zoom.frames, zoom_scale=zoom.zoom, rotate=zoom.rotate, pan=list(zoom.pan))
    meta.update(start=zoom.start.kind, settings=zoom.settings.to_dict())
    _prepare_folder(output)
    animate.write_animation(output, frames, zoom.fps, meta)
    return output


def run_video(
    model: Loaded,
    source: Path,
    output: Path,
    settings: Settings,
    blend: float,
    flow: bool,
    options: RunOptions,
    report: Report = ignore,
    metadata: dict[str, Any] | None = None,
) -> animate.VideoInfo:
    """Dream every frame of ``source`` into ``output``; ``metadata`` goes into the MP4's comment."""
    settings = seeded(settings, default=0)  # the same for a resumed run's frames
    meta = dict(metadata or {}, settings=settings.to_dict(), blend=blend, flow=flow, input=source.name)
    _prepare_folder(output)
    return animate.dream_video(
        model.module,
        source,
        output,
        model.resolved(settings),
        blend,
        flow,
        options=options,
        report=report,
        metadata=meta,
    )
