"""The ``dream`` command's flags: Click declarations, checks at the edge, and the typed options.

Settings flags come from the schema shared with presets (``config.FIELDS``),
so a flag, a preset key and a ``Settings`` field always have one name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import click

from dreamcli import __version__
from dreamcli.config import FIELDS, LAYERS_HELP, LayerSpec, Settings
from dreamcli.errors import SettingsError
from dreamcli.formats import DEFAULT_TEMPLATE
from dreamcli.options import PRECISIONS, STARTS


def _check_field(ctx: click.Context, param: click.Parameter, value):
    if value is None:
        return None
    try:
        return FIELDS[param.name].check(value)
    except SettingsError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None


def _check_layers(ctx: click.Context, param: click.Parameter, value):
    try:
        return tuple(LayerSpec.parse(text) for text in value)
    except SettingsError as exc:
        raise click.BadParameter(str(exc)) from None


def _setting_options(func):
    """One --flag per numeric setting, from the schema shared with presets."""
    for field in reversed(list(FIELDS.values())):
        func = click.option(
            field.flag,
            field.name,
            type=click.INT if field.kind is int else click.FLOAT,
            default=Settings.__dataclass_fields__[field.name].default,
            callback=_check_field,
            show_default=True,
            help=f"{field.help} Range: {field.allowed()}.",
        )(func)
    return func


def _check_size(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    width, x, height = value.lower().partition("x")
    if x and width.isdigit() and height.isdigit() and 16 <= int(width) <= 8192 and 16 <= int(height) <= 8192:
        return int(width), int(height)
    raise click.BadParameter(f"{value!r}: write WIDTHxHEIGHT, each 16 to 8192, e.g. 512x512")


def _check_pan(ctx: click.Context, param: click.Parameter, value: str):
    try:
        dx, dy = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: write DX,DY in pixels, e.g. 2,0") from None
    return dx, dy


def _options(*options):
    """Apply several Click options as one decorator (for groups of related flags)."""

    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


# The views into the network: layer sweeps, channel grids, guides, classes, heat maps.
optgroup_views = _options(
    click.option(
        "--sweep",
        metavar="'LAYER LAYER ...'",
        help="Contact sheet: the input, then one dream per layer (space-separated).",
    ),
    click.option("--sweep-presets", metavar="'PRESET ...'", help="Contact sheet with one dream per preset."),
    click.option(
        "--channel-grid",
        metavar="LAYER[CHANNELS]",
        help="Contact sheet with one dream per channel, e.g. 'inception_4c[0-63]'.",
    ),
    click.option(
        "--start",
        type=click.Choice(STARTS),
        default="photo",
        show_default=True,
        help="Dream from the photo, from noise, or from flat grey (no INPUT needed).",
    ),
    click.option(
        "--size",
        metavar="WxH",
        callback=_check_size,
        help="Size of a noise/grey start  [default: 512x512; 224x224 for grids]",
    ),
    click.option("--guide", type=click.Path(path_type=Path), help="Dream of this picture's features."),
    click.option(
        "--class",
        "classes",
        multiple=True,
        metavar="NAME|INDEX",
        help="Dream toward an ImageNet class (e.g. dumbbell, 543); repeat for several.",
    ),
    click.option("--heatmap", is_flag=True, help="Also write where the layer fires on the input (_heatmap)."),
)

# Zoom animations and dreamed video.
optgroup_animation = _options(
    click.option(
        "--zoom",
        type=click.IntRange(1, 100_000),
        metavar="FRAMES",
        help="Infinite zoom: dream, zoom in, dream again, FRAMES times (gif, webp, mp4 or a folder).",
    ),
    click.option(
        "--zoom-scale",
        type=click.FloatRange(0.5, 2.0),
        default=1.05,
        show_default=True,
        help="Zoom per frame (1.05 = 5 % closer).",
    ),
    click.option(
        "--rotate",
        type=click.FloatRange(-45, 45),
        default=0.0,
        show_default=True,
        help="Degrees to rotate per zoom frame.",
    ),
    click.option(
        "--pan",
        metavar="DX,DY",
        default="0,0",
        show_default=True,
        callback=_check_pan,
        help="Pixels to pan per zoom frame.",
    ),
    click.option(
        "--fps",
        type=click.FloatRange(1, 120),
        default=12.0,
        show_default=True,
        help="Frames per second of a zoom (a video keeps its own).",
    ),
    click.option(
        "--blend",
        type=click.FloatRange(0, 1),
        default=0.5,
        show_default=True,
        help="Video: how much of the previous frame's dream carries into the next.",
    ),
    click.option("--flow", is_flag=True, help="Video: move the carried dream along the optical flow."),
)


# Where and how to run, for every mode alike (they become one RunOptions).
optgroup_run = _options(
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
    click.option(
        "--weights",
        type=click.Path(path_type=Path),
        help="Local state dict of the network instead of the download.",
    ),
    click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="auto",
        show_default=True,
        help="Arithmetic of the network's forward pass; auto is bf16 on CUDA and AMX CPUs, fp32 elsewhere.",
    ),
    click.option(
        "--tile-size",
        type=click.IntRange(min=32),
        help="Compute gradients in tiles of this many pixels (default: only when memory is short).",
    ),
)

# Many files: names, batching, skipping, sharing out.
optgroup_batch = _options(
    click.option(
        "--name",
        "template",
        default=DEFAULT_TEMPLATE,
        show_default=True,
        help="Output name template: {stem} {ext} {preset} {layer} {index}; the extension sets the format.",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(1, 1024),
        default=1,
        show_default=True,
        help="Dream up to this many same-size images together (faster on a GPU; uses more memory).",
    ),
    click.option("-r", "--recursive", is_flag=True, help="Walk folders recursively, keeping sub-folders."),
    click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them)."),
    click.option("--shard", metavar="K/N", help="Dream only the K-th of N shares of the inputs."),
)

# What to print, and the commands that print instead of dreaming.
optgroup_output = _options(
    click.option("-q", "--quiet", is_flag=True, help="Print only errors."),
    click.option("--json", "as_json", is_flag=True, help="Print one JSON line per file on stdout."),
    click.option("--sample", is_flag=True, help="Dream the sample photo that ships with dreamcli."),
    click.option("--list-layers", is_flag=True, help="List the network's layers with their channel counts."),
    click.option("--list-presets", is_flag=True, help="List the presets and where they come from."),
    click.option("--show-settings", is_flag=True, help="Print the final settings as preset YAML, then exit."),
    click.version_option(__version__, "-V", "--version"),
)


def all_options(func):
    """Every flag of ``dream``, in the order --help lists them."""
    return _options(
        click.argument("inputs", nargs=-1, metavar="[INPUT]..."),
        click.option(
            "-o",
            "--output",
            type=click.Path(path_type=Path),
            help="Output file, or folder for several inputs.",
        ),
        click.option("-l", "--layer", "layers", multiple=True, callback=_check_layers, help=LAYERS_HELP),
        click.option("-p", "--preset", help="Named style or YAML file; flags you type override it."),
        _setting_options,
        optgroup_run,
        optgroup_batch,
        optgroup_views,
        optgroup_animation,
        optgroup_output,
    )(func)


@dataclass(frozen=True)
class CliOptions:
    """Every flag's value, typed; built from Click's keyword arguments (``CliOptions(**kwargs)``)."""

    inputs: tuple[str, ...]
    output: Path | None
    layers: tuple[LayerSpec, ...]
    preset: str | None
    # the Settings fields (config.FIELDS), each a flag
    octaves: int
    octave_scale: float
    iterations: int
    step_size: float
    jitter: int
    max_size: int | None
    seed: int | None
    # how to run
    device: str
    weights: Path | None
    precision: str
    tile_size: int | None
    # many files
    template: str
    batch_size: int
    recursive: bool
    overwrite: bool
    shard: str | None
    # views
    sweep: str | None
    sweep_presets: str | None
    channel_grid: str | None
    start: str
    size: tuple[int, int] | None
    guide: Path | None
    classes: tuple[str, ...]
    heatmap: bool
    # animations
    zoom: int | None
    zoom_scale: float
    rotate: float
    pan: tuple[float, float]
    fps: float
    blend: float
    flow: bool
    # printing
    quiet: bool
    as_json: bool
    sample: bool
    list_layers: bool
    list_presets: bool
    show_settings: bool

    def replace(self, **changes) -> CliOptions:
        return dataclasses.replace(self, **changes)
