"""Feature pictures from noise: what a layer, a channel or a class looks like to the network.

``fft`` (the default) optimises a decorrelated spectrum through random
transformations (``engine.featurevis``); ``maco`` fixes the spectrum's magnitude
and optimises its phase through random crops; ``pixel`` is the 2015 way,
DeepDream's octave steps from the notebook's near-grey noise with a small
random scale and rotation each step.  ``fft`` and ``maco`` raise the papers'
objectives (a channel's mean activation, a class's logit); ``pixel`` keeps
DeepDream's squared one.  With ``alpha`` the transparency map (where the
objective's gradient went) is written beside the picture.  One picture of the
whole objective, or with ``each`` one picture per term (per channel of a
channel list, per layer, per class) on a labelled contact sheet.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from dreamcli.config import LayerSpec, Settings, refuse_picks
from dreamcli.engine.capture import LayerCapture, model_device, smallest_input
from dreamcli.engine.featurevis import MACO_CROPS, VIEW, Pictures, feature_pictures
from dreamcli.engine.objectives import Activations, ChannelPerImage, Matching, Objective
from dreamcli.engine.octaves import dream
from dreamcli.engine.step_policy import measured
from dreamcli.engine.steps import resize
from dreamcli.engine.tiling import bytes_per_pixel
from dreamcli.engine.transforms import RandomAffine
from dreamcli.errors import DreamError, ImageTooLargeError, SettingsError
from dreamcli.events import FileStarted, Report, ignore
from dreamcli.io.images import read_image, write_image, write_pil
from dreamcli.jobs import naming
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


# The settings each way of making a feature picture uses: only those go into its metadata.
SPECTRUM_KEYS = ("model", "layers", "octaves", "iterations", "step_size", "seed")
PIXEL_KEYS = (*SPECTRUM_KEYS, "octave_scale", "jitter", "smooth", "lapnorm", "keep_colors")


def applied(settings: Settings, param: str) -> dict:
    """What the picture was made with: ``fft`` and ``maco`` run octaves x iterations x 8 Adam
    steps and ignore the DeepDream step's knobs (a preset's smooth, jitter...); ``pixel`` is
    DeepDream's octave loop and uses them all."""
    keys = PIXEL_KEYS if param == "pixel" else SPECTRUM_KEYS
    return {key: value for key, value in settings.to_dict().items() if key in keys}


def run_features(
    model: Loaded, request: FeatureRequest, options: RunOptions, report: Report = ignore
) -> Path:
    """Make the picture (or the sheet) and write it, with its settings in its metadata."""
    settings = request.settings.seeded(steady=True)
    refuse_picks(settings.layers, "dream features")
    if request.like is not None:
        return _like(model, request, settings, options, report)
    width, height = request.picture_size
    meta = dict(request.metadata, features=request.param, settings=applied(settings, request.param))
    meta["size"] = [width, height]
    resolved = model.resolved(settings)
    check_memory(model, resolved, request, options)
    prepare_folder(request.output)
    signed = request.param != "pixel"  # the papers' objectives; pixel keeps DeepDream's
    if not request.each:
        report(FileStarted("features", 1, 1))
        made = _pictures(
            model, resolved, Activations(resolved.layers, signed=signed), 1, request, options, report
        )
        write_image(request.output, made.images[0], None, meta)
        if request.alpha:
            write_image(naming.alpha_path(request.output), made.alpha[0].expand(3, -1, -1), None, meta)
        return request.output
    wanted = terms(settings.layers)
    tiles: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    single = len(settings.layers) == 1 and settings.layers[0].channels
    if single:  # one channel per image of a batch, 16 at a time
        layer = resolved.layers[0].name
        for start in range(0, len(wanted), SHEET_BATCH):
            chunk = wanted[start : start + SHEET_BATCH]
            report(FileStarted(str(chunk[0]), start + 1, len(wanted)))
            channels = [spec.channels[0] for spec in chunk if spec.channels]
            made = _pictures(
                model,
                resolved,
                ChannelPerImage(layer, channels, signed=signed),
                len(chunk),
                request,
                options,
                report,
            )
            tiles += [(str(spec), p, a) for spec, p, a in zip(chunk, made.images, made.alpha, strict=True)]
    else:
        for position, spec in enumerate(wanted, start=1):
            report(FileStarted(str(spec), position, len(wanted)))
            goal = Activations([spec.with_name(model.resolve(spec.name))], signed=signed)
            made = _pictures(model, resolved, goal, 1, request, options, report)
            tiles.append((str(spec), made.images[0], made.alpha[0]))
    columns = min(8, len(tiles))  # each tile at the --size asked for
    pictures = [(t, p) for t, p, _ in tiles]
    write_pil(request.output, contact_sheet(pictures, columns=columns, width=width), meta)
    if request.alpha:
        alphas = [(t, a.expand(3, -1, -1)) for t, _, a in tiles]
        sheet = contact_sheet(alphas, columns=columns, width=width)
        write_pil(naming.alpha_path(request.output), sheet, meta)
    return request.output


# What a spectrum picture costs per pixel besides the network: the spectrum, its gradient and
# Adam's two moments, the image and its gradient, the transparency map.  Measured as the peak
# RSS of 2-step maco pictures at 1024 and 2048 px on GoogLeNet's conv2/3x3 (whose views stay
# 224 px): 464 and 924 MB, 146 bytes per pixel more (shared CPU).  fft's peaks (938 MB and
# 2.95 GB) stay under this plus tiling.bytes_per_pixel's 852 bytes per viewed pixel.
PICTURE_BYTES = 146
SHEET_BATCH = 16  # channel pictures made together, one per image of a batch


def check_memory(model: Loaded, settings: Settings, request: FeatureRequest, options: RunOptions) -> None:
    """Refuse, before any work, pictures whose optimisation would not fit in the memory
    budget (``RunOptions.memory``), with the size that fits.  ``pixel`` pictures are
    DeepDream's steps, which tile by themselves."""
    if options.memory is None or request.param == "pixel":
        return
    width, height = request.picture_size
    batch = min(SHEET_BATCH, len(terms(settings.layers))) if request.each else 1
    with LayerCapture(model.module, [spec.name for spec in settings.layers]) as capture:
        per_pixel = bytes_per_pixel(capture, model_device(model.module))
    if request.param == "maco":  # the network sees MACO_CROPS views of at most VIEW px
        scale = min(0.7, VIEW / max(width, height))
        viewed = MACO_CROPS * max(1, round(width * scale)) * max(1, round(height * scale)) * per_pixel
        cost, fixed = float(PICTURE_BYTES), viewed
    else:
        cost, fixed = per_pixel + PICTURE_BYTES, 0.0
    need = batch * (width * height * cost + fixed)
    if need <= options.memory:
        return
    pixels = max(0.0, options.memory / batch - fixed) / cost
    shrink_by = (pixels / (width * height)) ** 0.5
    fit_w, fit_h = int(width * shrink_by), int(height * shrink_by)
    hint = f"use --size {fit_w}x{fit_h} or smaller" if min(fit_w, fit_h) >= 16 else "pick an earlier layer"
    raise ImageTooLargeError(
        f"a {width}x{height} {request.param} feature picture needs about {need / 2**30:.1f} GiB, "
        f"more than the {options.memory / 2**30:.1f} GiB free for it; {hint}, or free some memory"
    )


# A --like picture takes the photo's shape, its long side at most this (the default picture's).
LIKE_SIDE = 512


def _like(model: Loaded, request: FeatureRequest, settings: Settings, options, report: Report) -> Path:
    """A picture from noise whose activations at the layer match (or exaggerate) the photo's."""
    like = request.like
    assert like is not None
    if len(settings.layers) != 1 or settings.layers[0].channels:
        raise SettingsError("--like matches one whole layer: give one --layer without channels")
    try:
        photo = read_image(like, max_size=LIKE_SIDE).rgb
    except DreamError as exc:  # a flag's file, as --mask's: a usage error
        raise SettingsError(f"--like: {exc}") from None
    height, width = photo.shape[-2:]
    if request.size is not None:  # the photo as the network sees it at the picture's size
        width, height = request.size
        photo = resize(photo[None], (height, width))[0]
    request = dataclasses.replace(request, size=(width, height))
    layer = model.resolve(settings.layers[0].name)
    with LayerCapture(model.module, [layer]) as capture:
        side = measured(capture, "min_side", lambda: smallest_input(capture, model_device(model.module)))
    if min(width, height) < side:
        raise SettingsError(
            f"--like {like}: the photo is {width}x{height} px as the network sees it, and "
            f"{settings.layers[0].name} needs at least {side}x{side}: give a larger photo or --size"
        )
    goal = Matching(layer, photo_features(model.module, photo, layer), caricature=request.caricature)
    report(FileStarted("features", 1, 1))
    made = _pictures(model, model.resolved(settings), goal, 1, request, options, report)
    how = "caricature" if request.caricature else "inversion"
    meta = dict(request.metadata, features=request.param, settings=applied(settings, request.param))
    meta.update(size=[width, height], like=str(like.absolute()), match=how)  # a re-run reads it again
    write_image(request.output, made.images[0], None, meta)
    if request.alpha:
        write_image(naming.alpha_path(request.output), made.alpha[0].expand(3, -1, -1), None, meta)
    return request.output


def photo_features(module, photo: torch.Tensor, layer: str) -> torch.Tensor:
    """``photo``'s (3, H, W) activations at ``layer``: (1, C, h, w), in float32."""
    with LayerCapture(module, [layer]) as capture, torch.no_grad():
        return capture(photo[None].to(model_device(module)))[layer].float()


def _pictures(model, settings, goal: Objective, batch, request: FeatureRequest, options, report) -> Pictures:
    """``batch`` pictures of ``goal``: (batch, 3, H, W) in [0, 1], and their transparency."""
    width, height = request.picture_size
    if request.param != "pixel":
        return feature_pictures(
            model.module, (height, width), settings=settings, goal=goal, batch=batch, param=request.param,
            report=report,
        )  # fmt: skip
    noise = start_image("noise", width, height, seed=settings.seed or 0).expand(batch, 3, height, width)
    goal = goal.with_transform(RandomAffine(settings.seed or 0))
    images = dream(model.module, noise, settings=settings, goal=goal, options=options, report=report)
    return Pictures(images, torch.ones_like(images[:, :1]))
