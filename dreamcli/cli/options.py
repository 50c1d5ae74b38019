"""The ``dream`` command's flags: Click declarations in sections, checks at the edge, typed options.

Settings flags come from the schema shared with presets (``config.FIELDS``),
so a flag, a preset key and a ``Settings`` field always have one name.  Each
flag belongs to a section of the help (``SECTIONS``); ``--help`` shows the
first in full and names the others' flags, ``--help-all`` shows them all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import click

from dreamcli import __version__
from dreamcli.cli import complete
from dreamcli.config import FIELDS, LAYERS_HELP, Field, LayerSpec, Settings
from dreamcli.errors import SettingsError
from dreamcli.io.formats import DEFAULT_TEMPLATE
from dreamcli.run_options import PRECISIONS, STARTS

SECTIONS = ("Dreaming", "Pictures", "Running", "Many files", "Views", "Animations", "Listings")


class SectionOption(click.Option):
    """An option that knows its help section and is named one way in errors (``--layer``)."""

    def __init__(self, *args, section: str = "Dreaming", **kwargs):
        super().__init__(*args, **kwargs)
        self.section = section

    def get_error_hint(self, ctx: click.Context) -> str:
        return max(self.opts, key=len)


class Span(click.ParamType):
    """An int or float from ``low`` to ``high``, written and checked one way: ``1-20``."""

    def __init__(self, kind: type, low: float, high: float):
        self.kind, self.low, self.high = kind, low, high
        self.name = "integer" if kind is int else "number"

    @property
    def text(self) -> str:
        return f"{self.low:g}-{self.high:g}"

    def convert(self, value, param, ctx):
        try:
            number = self.kind(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not {'a whole number' if self.kind is int else 'a number'}", param, ctx)
        if not self.low <= number <= self.high:
            self.fail(f"{value} is out of range; use {self.text}", param, ctx)
        return number


def flag(*decls: str, section: str, span: Span | None = None, **kwargs):
    """``click.option`` in a help section; a ``span`` is the type and goes into the help."""
    if span is not None:
        kwargs["type"] = span
        kwargs["help"] = f"{kwargs.get('help', '')} Range: {span.text}.".strip()
    return click.option(*decls, cls=SectionOption, section=section, **kwargs)


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


def _field_option(field: Field):
    default = Settings.__dataclass_fields__[field.name].default
    if field.kind is bool:  # --lapnorm / --no-lapnorm: a flag can also undo a preset's true
        name = field.flag.removeprefix("--")
        return flag(f"--{name}/--no-{name}", field.name, section="Pictures", default=default, help=field.help)
    if field.kind is str:
        kind = click.Choice(field.choices)
        return flag(
            field.flag,
            field.name,
            section="Pictures",
            type=kind,
            default=default,
            show_default=True,
            help=field.help,
        )
    section = "Pictures" if field.name == "smooth" else "Dreaming"
    return flag(
        field.flag,
        field.name,
        section=section,
        type=click.INT if field.kind is int else click.FLOAT,
        default=default,
        callback=_check_field,
        show_default=True,
        help=f"{field.help} Range: {field.allowed()}.",
    )


def _check_size(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    width, x, height = value.lower().partition("x")
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if (
        x
        and width.isdecimal()
        and height.isdecimal()
        and 16 <= int(width) <= 8192
        and 16 <= int(height) <= 8192
    ):
        return int(width), int(height)
    raise click.BadParameter(f"{value!r}: write WIDTHxHEIGHT, each 16-8192, e.g. 512x512")


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


optgroup_dreaming = _options(
    flag(
        "-o", "--output", section="Dreaming", help="Output file; a folder (end it with /) for several inputs."
    ),
    flag(
        "-l",
        "--layer",
        "layers",
        section="Dreaming",
        multiple=True,
        callback=_check_layers,
        shell_complete=complete.layers,
        help=LAYERS_HELP,
    ),
    flag(
        "-m",
        "--model",
        section="Dreaming",
        shell_complete=complete.models_,
        help="The network (--list-models).  [default: googlenet]",
    ),
    flag(
        "-p",
        "--preset",
        section="Dreaming",
        shell_complete=complete.presets,
        help="Named style, preset YAML file, or a picture dreamcli made (its settings); flags override it.",
    ),
    *(_field_option(field) for field in FIELDS.values()),
    flag("-q", "--quiet", section="Dreaming", is_flag=True, help="Print only errors."),
    flag(
        "--sample", section="Dreaming", is_flag=True, help="Dream the sample photo that ships with dreamcli."
    ),
)

# Where and how to run, for every mode alike (they become one RunOptions).
optgroup_run = _options(
    flag(
        "--device",
        section="Running",
        default="auto",
        show_default=True,
        help="auto, cpu, cuda, cuda:N or mps.",
    ),
    flag(
        "--weights",
        section="Running",
        type=click.Path(path_type=Path),
        help="Local state dict of the network instead of the download.",
    ),
    flag(
        "--precision",
        section="Running",
        type=click.Choice(PRECISIONS),
        default="auto",
        show_default=True,
        help="Arithmetic of the network's forward pass; auto is bf16 on CUDA and AMX CPUs, fp32 elsewhere.",
    ),
    flag(
        "--tile-size",
        section="Running",
        span=Span(int, 32, 65536),
        help="Compute gradients in tiles of this many pixels (default: only when memory is short).",
    ),
)

# Many files: names, batching, skipping, sharing out.
optgroup_batch = _options(
    flag(
        "--name",
        "template",
        section="Many files",
        default=DEFAULT_TEMPLATE,
        show_default=True,
        help="Output name template: {stem} {ext} {preset} {layer} {index}; the extension sets the format.",
    ),
    flag(
        "--batch-size",
        section="Many files",
        span=Span(int, 1, 1024),
        default=1,
        show_default=True,
        help="Dream up to this many same-size images together (faster on a GPU; uses more memory).",
    ),
    flag(
        "-r",
        "--recursive",
        section="Many files",
        is_flag=True,
        help="Walk folders recursively, keeping sub-folders.",
    ),
    flag(
        "--overwrite",
        section="Many files",
        is_flag=True,
        help="Replace existing outputs (default: skip them).",
    ),
    flag(
        "--shard", section="Many files", metavar="K/N", help="Dream only the K-th of N shares of the inputs."
    ),
    flag(
        "--json",
        "as_json",
        section="Many files",
        is_flag=True,
        help="Print one JSON line per file on stdout.",
    ),
    flag(
        "-0",
        "--null",
        section="Many files",
        is_flag=True,
        help="With INPUT -: the paths on stdin end with NUL, not newline (find -print0).",
    ),
    flag(
        "--ray",
        section="Many files",
        metavar="auto|local|ADDRESS",
        help="Dream the batch on a Ray cluster: ray start's / RAY_ADDRESS's (auto), a new one here (local), "
        "or a head node's address. Needs: pip install 'dreamcli[ray]'.",
    ),
    flag(
        "--ray-workers",
        section="Many files",
        span=Span(int, 1, 100_000),
        help="Ray workers  [default: one per GPU, else one]",
    ),
    flag(
        "--include-dreams",
        section="Many files",
        is_flag=True,
        help="Also take pictures dreamcli made when walking folders (left out by default).",
    ),
)

# The views into the network: layer sweeps, channel grids, guides, classes, heat maps.
optgroup_views = _options(
    flag(
        "--sweep",
        section="Views",
        metavar="'LAYER LAYER ...'",
        help="Contact sheet: the input, then one dream per layer (spaces or commas between).",
    ),
    flag(
        "--sweep-presets",
        section="Views",
        metavar="'PRESET ...'",
        help="Contact sheet with one dream per preset.",
    ),
    flag(
        "--channel-grid",
        section="Views",
        metavar="LAYER[CHANNELS]",
        shell_complete=complete.layers,
        help="Contact sheet with one dream per channel, e.g. 'inception_4c[0-63]'.",
    ),
    flag(
        "--start",
        section="Views",
        type=click.Choice(STARTS),
        default="photo",
        show_default=True,
        help="Dream from the photo, from noise, or from flat grey (no INPUT needed).",
    ),
    flag(
        "--size",
        section="Views",
        metavar="WxH",
        callback=_check_size,
        help="Size of a noise or grey start.  [default: 512x512; 224x224 for grids]",
    ),
    flag(
        "--guide", section="Views", type=click.Path(path_type=Path), help="Dream of this picture's features."
    ),
    flag(
        "--class",
        "classes",
        section="Views",
        multiple=True,
        metavar="NAME|INDEX",
        help="Dream toward an ImageNet class (e.g. dumbbell, 543); repeat for several.",
    ),
    flag(
        "--heatmap",
        section="Views",
        is_flag=True,
        help="Also write where the layer fires on the input (_heatmap).",
    ),
)

# An activation atlas of the inputs (dreamcli.jobs.atlas).
optgroup_atlas = _options(
    flag(
        "--atlas",
        section="Views",
        is_flag=True,
        help="Map what the layer sees in all the inputs (photos, folders): an activation atlas "
        "written to -o (default atlas.png), with a JSON of which photos fell in each cell beside it.",
    ),
    flag(
        "--atlas-grid",
        section="Views",
        span=Span(int, 1, 100),
        default=20,
        show_default=True,
        help="Cells a side.",
    ),
    flag(
        "--atlas-method",
        section="Views",
        type=click.Choice(("umap", "tsne", "pca")),
        default="umap",
        show_default=True,
        help="How activations are laid out in 2-D; umap and tsne need pip install 'dreamcli[atlas]'.",
    ),
    flag(
        "--atlas-samples",
        section="Views",
        span=Span(int, 1, 10_000),
        default=32,
        show_default=True,
        help="Positions sampled from each photo (100,000 in all at most).",
    ),
    flag(
        "--atlas-photo-size",
        section="Views",
        span=Span(int, 32, 4096),
        default=256,
        show_default=True,
        help="Each photo's long side, in pixels, as the network sees it.",
    ),
    flag(
        "--atlas-steps",
        section="Views",
        span=Span(int, 1, 100_000),
        default=128,
        show_default=True,
        help="Optimisation steps of each cell's picture.",
    ),
    flag(
        "--atlas-labels/--no-atlas-labels",
        section="Views",
        default=None,
        help="Write each cell's top class under it.  [default: on where the network has classes]",
    ),
)

# Zoom animations and dreamed video.
optgroup_animation = _options(
    flag(
        "--zoom",
        section="Animations",
        span=Span(int, 1, 100_000),
        metavar="FRAMES",
        help="Infinite zoom: dream, zoom in, dream again, FRAMES times (gif, webp, mp4 or a folder).",
    ),
    flag(
        "--zoom-scale",
        section="Animations",
        span=Span(float, 0.5, 2.0),
        default=1.05,
        show_default=True,
        help="Zoom per frame (1.05 = 5 % closer).",
    ),
    flag(
        "--rotate",
        section="Animations",
        span=Span(float, -45, 45),
        default=0.0,
        show_default=True,
        help="Degrees to rotate per zoom frame.",
    ),
    flag(
        "--pan",
        section="Animations",
        metavar="DX,DY",
        default="0,0",
        show_default=True,
        callback=_check_pan,
        help="Pixels to pan per zoom frame.",
    ),
    flag(
        "--fps",
        section="Animations",
        span=Span(float, 1, 120),
        default=12.0,
        show_default=True,
        help="Frames per second of a zoom (a video keeps its own).",
    ),
    flag(
        "--blend",
        section="Animations",
        span=Span(float, 0, 1),
        default=0.5,
        show_default=True,
        help="Video: how much of the previous frame's dream carries into the next.",
    ),
    flag(
        "--flow",
        section="Animations",
        is_flag=True,
        help="Video: move the carried dream along the optical flow.",
    ),
)

# The commands that print instead of dreaming.
optgroup_listings = _options(
    flag(
        "--list-layers",
        section="Listings",
        is_flag=True,
        help="List the network's layers with their channels.",
    ),
    flag(
        "--list-models", section="Listings", is_flag=True, help="List the networks, their inputs and weights."
    ),
    flag(
        "--list-presets", section="Listings", is_flag=True, help="List the presets and where they come from."
    ),
    flag(
        "--show-settings",
        section="Listings",
        is_flag=True,
        help="Print the final settings as preset YAML, then exit.",
    ),
    click.version_option(__version__, "-V", "--version", cls=SectionOption, section="Listings"),
)


def all_options(func):
    """Every flag of ``dream``, in the order --help-all lists them."""
    return _options(
        click.argument("inputs", nargs=-1, metavar="[INPUT]...", type=click.Path()),
        optgroup_dreaming,
        optgroup_run,
        optgroup_batch,
        optgroup_views,
        optgroup_atlas,
        optgroup_animation,
        optgroup_listings,
    )(func)


@dataclass(frozen=True)
class CliOptions:
    """Every flag's value, typed; built from Click's keyword arguments (``CliOptions(**kwargs)``)."""

    inputs: tuple[str, ...]
    output: str | None  # kept as typed: a trailing / means a folder
    layers: tuple[LayerSpec, ...]
    model: str | None
    preset: str | None
    # the Settings fields (config.FIELDS), each a flag
    octaves: int
    octave_scale: float
    iterations: int
    step_size: float
    jitter: int
    max_size: int | None
    seed: int | None
    smooth: float
    lapnorm: bool
    keep_colors: bool
    param: str
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
    as_json: bool
    null: bool
    ray: str | None
    ray_workers: int | None
    include_dreams: bool
    # views
    sweep: str | None
    sweep_presets: str | None
    channel_grid: str | None
    start: str
    size: tuple[int, int] | None
    guide: Path | None
    classes: tuple[str, ...]
    heatmap: bool
    # atlas
    atlas: bool
    atlas_grid: int
    atlas_method: str
    atlas_samples: int
    atlas_photo_size: int
    atlas_steps: int
    atlas_labels: bool | None
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
    sample: bool
    list_layers: bool
    list_models: bool
    list_presets: bool
    show_settings: bool

    def replace(self, **changes) -> CliOptions:
        return dataclasses.replace(self, **changes)
