"""The ``dream`` command: the only module that knows Click and tqdm.

torch is imported only once there is something to dream, so ``dream --help``
and the preset listing start fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import click
from click.core import ParameterSource

from dreamcli import __version__
from dreamcli import presets as preset_files
from dreamcli.config import FIELDS, LAYERS_HELP, LayerSpec, Settings
from dreamcli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, DreamError, SettingsError
from dreamcli.layers import CAFFE_NAMES, MODULE_NAMES, resolve_googlenet

VIDEO_INPUTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}  # dreamcli.animate.VIDEO_INPUTS, torch-free

STARTS = ("photo", "noise", "grey")  # dreamcli.views.STARTS, torch-free
SAMPLE_CREDIT = "sample photo: 'coffee' by Rachel Michetti (CC0), from scikit-image"


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


def user_preset_folders() -> list[tuple[str, Path]]:
    folders = []
    env = os.environ.get(preset_files.ENV_VAR)
    if env:
        folders.append((f"${preset_files.ENV_VAR}", Path(env)))
    folders.append(("user", Path(click.get_app_dir("dreamcli")) / "presets"))
    return folders


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("inputs", nargs=-1, metavar="[INPUT]...")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Output file, or folder for several inputs."
)
@click.option("-l", "--layer", "layers", multiple=True, callback=_check_layers, help=LAYERS_HELP)
@click.option("-p", "--preset", help="Named style or YAML file; flags you type override it.")
@_setting_options
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    help="Local GoogLeNet state dict instead of torchvision's download.",
)
@click.option(
    "--name",
    "template",
    default="{stem}_dream.png",
    show_default=True,
    help="Output name template: {stem} {ext} {preset} {layer} {index}; the extension sets the format.",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="Arithmetic of the network's forward pass; auto is bf16 on CUDA and AMX CPUs, fp32 elsewhere.",
)
@click.option(
    "--tile-size",
    type=click.IntRange(min=32),
    help="Compute gradients in tiles of this many pixels (default: only when memory is short).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Dream up to this many same-size images together (faster on a GPU; uses more memory).",
)
@optgroup_views
@optgroup_animation
@click.option("-r", "--recursive", is_flag=True, help="Walk folders recursively, keeping sub-folders.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them).")
@click.option("--shard", metavar="K/N", help="Dream only the K-th of N shares of the inputs.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per file on stdout.")
@click.option("--sample", is_flag=True, help="Dream the sample photo that ships with dreamcli.")
@click.option("--list-layers", is_flag=True, help="List GoogLeNet's layers with their channel counts.")
@click.option("--list-presets", is_flag=True, help="List the presets and where they come from.")
@click.option("--show-settings", is_flag=True, help="Print the final settings as preset YAML, then exit.")
@click.version_option(__version__, "-V", "--version")
@click.pass_context
def main(ctx: click.Context, **options):
    """Dream on images with GoogLeNet, the classic 2015 DeepDream.

    INPUT is an image file, a folder of images, or - to read one path per line
    from standard input. Examples:

    \b
      dream photo.jpg --layer inception_4c
      dream photo.jpg --preset eyes -o eyes.png
      dream photos/ -r -o dreams/ --preset preview
    """
    opts = SimpleNamespace(**options)
    try:
        code = _main(ctx, opts)
    except DreamError as exc:
        click.echo(f"Error: {exc}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    ctx.exit(code)


def _main(ctx: click.Context, opts: SimpleNamespace) -> int:
    if opts.list_presets:
        return _list_presets()
    if opts.list_layers:
        return _list_layers()
    chosen = _load_preset(opts.preset)
    typed = {name: getattr(opts, name) for name in FIELDS if _typed(ctx, name)}
    settings = _merge(chosen, opts.layers, typed)
    if opts.show_settings:
        click.echo(preset_files.dump(settings, chosen.description if chosen else ""), nl=False)
        return EXIT_OK
    if opts.classes:
        from dreamcli.model import class_index

        extra = tuple(LayerSpec("fc", channels=(class_index(name),)) for name in opts.classes)
        # --class replaces the preset's layers unless --layer was typed too.
        kept = settings.layers if opts.layers else ()
        settings = dataclasses.replace(settings, layers=kept + extra)
    names = list(opts.inputs)
    if opts.zoom:
        return _run_zoom(names, settings, chosen, opts)
    if len(names) == 1 and Path(names[0]).suffix.lower() in VIDEO_INPUTS:
        return _run_video(names[0], settings, chosen, opts)
    if _wants_view(opts):
        return _run_view(names, settings, chosen, opts, typed)
    if opts.sample:
        names.append(str(resources.files("dreamcli.data") / "sample.jpg"))
        if opts.output is None and len(names) == 1:
            opts.output = Path(".")
        if not opts.quiet:
            click.echo(f"Dreaming the {SAMPLE_CREDIT}", err=True)
    if not names:
        raise click.UsageError("give an image, a folder, or - (try 'dream --sample' or 'dream --help')")
    return _run(names, settings, chosen, opts)


def _run_zoom(names: list[str], settings: Settings, chosen, opts: SimpleNamespace) -> int:
    from dreamcli import runs

    start = runs.Start.from_inputs(names, opts.start, opts.size, "a zoom")
    zoom = runs.Zoom(
        start, settings, opts.zoom, opts.zoom_scale, opts.rotate, opts.pan, opts.fps, opts.output
    )
    if _exists(opts, runs.zoom_output(zoom)):
        return EXIT_OK
    progress = Progress(opts.quiet, opts.as_json, many=False)
    try:
        output = runs.run_zoom(_load_model(opts, settings), zoom, progress)
    finally:
        progress.close()
    return _wrote(opts, f"Wrote {output} ({opts.zoom} frames)")


def _run_video(name: str, settings: Settings, chosen, opts: SimpleNamespace) -> int:
    from dreamcli import animate, runs

    source = Path(name)
    output = runs.video_output(source, opts.output)
    if _exists(opts, output):
        return EXIT_OK
    animate.probe_video(source)  # a bad file fails before the model loads
    progress = Progress(opts.quiet, opts.as_json, many=False)
    try:
        engine = _load_model(opts, settings)
        info = runs.run_video(engine, source, output, settings, opts.blend, opts.flow, progress)
    finally:
        progress.close()
    return _wrote(opts, f"Wrote {output} ({info.frames} frames at {info.fps:g} fps)")


def _wants_view(opts: SimpleNamespace) -> bool:
    return bool(
        opts.sweep
        or opts.sweep_presets
        or opts.channel_grid
        or opts.guide
        or opts.classes
        or opts.heatmap
        or opts.start != "photo"
    )


def _run_view(names: list[str], settings: Settings, chosen, opts: SimpleNamespace, typed: dict) -> int:
    """Sweeps, channel grids, noise starts, guides, classes and heat maps: one picture in, one out."""
    from dreamcli import runs

    start = runs.Start.from_inputs(
        names, opts.start, opts.size, "sweeps, grids, guides, classes and heat maps"
    )
    grid = LayerSpec.parse(opts.channel_grid) if opts.channel_grid else None
    if grid is not None:
        resolve_googlenet(grid.name)
    variants = _view_variants(settings, chosen, opts, typed) if opts.sweep or opts.sweep_presets else []
    view = runs.View(
        start,
        settings,
        variants,
        grid,
        opts.guide,
        opts.heatmap,
        opts.output,
        metadata={"version": __version__, "preset": chosen.name if chosen else None},
    )
    if _exists(opts, runs.image_output(view.output, start, view.kind)):  # a bad -o fails here too
        return EXIT_OK
    progress = Progress(opts.quiet, opts.as_json, many=len(variants) > 1)
    try:
        output = runs.run_view(_load_model(opts, settings), view, progress)
    finally:
        progress.close()
    return _wrote(opts, f"Wrote {output}")


def _exists(opts: SimpleNamespace, output: Path) -> bool:
    """Like batch mode: an existing output is kept unless --overwrite (and the user is told)."""
    if output.exists() and not opts.overwrite:
        _wrote(opts, f"Skipped {output} (exists; --overwrite replaces it)")
        return True
    return False


def _wrote(opts: SimpleNamespace, message: str) -> int:
    if not opts.quiet:
        click.echo(message, err=True)
    return EXIT_OK


def _view_variants(
    settings: Settings, chosen, opts: SimpleNamespace, typed: dict
) -> list[tuple[str, Settings]]:
    if opts.sweep:
        specs = [LayerSpec.parse(text) for text in opts.sweep.split()]
        for spec in specs:
            resolve_googlenet(spec.name)
        return [(str(spec), dataclasses.replace(settings, layers=(spec,))) for spec in specs]
    if opts.sweep_presets:
        return [(name, _merge(_load_preset(name), opts.layers, typed)) for name in opts.sweep_presets.split()]
    return [("", settings)]


def _device(opts: SimpleNamespace, settings: Settings):
    """The --device, with cuDNN's kernels chosen for it (repeatable when a seed was given)."""
    from dreamcli.model import choose_kernels, select_device

    device = select_device(opts.device)
    choose_kernels(device, reproducible=settings.seed is not None)
    return device


def _model(opts: SimpleNamespace, device):
    from dreamcli.model import load_googlenet, prepare_for_dreaming

    return prepare_for_dreaming(load_googlenet(opts.weights, progress=not opts.quiet), device)


def _load_model(opts: SimpleNamespace, settings: Settings):
    from dreamcli.model import choose_precision
    from dreamcli.runs import Engine

    device = _device(opts, settings)
    return Engine(_model(opts, device), choose_precision(opts.precision, device))


def _load_preset(name: str | None) -> preset_files.Preset | None:
    if name is None:
        return None
    chosen = preset_files.find(name, preset_files.search_path(user_preset_folders()))
    for spec in chosen.apply().layers:
        try:
            resolve_googlenet(spec.name)
        except SettingsError as exc:
            raise SettingsError(f"{chosen.path}: layers: {exc}") from None
    return chosen


def _typed(ctx: click.Context, name: str) -> bool:
    """True when the user gave the flag: a flag left at its default must not undo a preset."""
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def _merge(chosen: preset_files.Preset | None, layers: tuple[LayerSpec, ...], typed: dict) -> Settings:
    """defaults < preset < flags the user typed."""
    settings = chosen.apply() if chosen else Settings()
    typed = dict(typed)
    if layers:
        for spec in layers:
            try:
                resolve_googlenet(spec.name)
            except SettingsError as exc:
                raise click.BadParameter(str(exc), param_hint="'--layer'") from None
        typed["layers"] = [str(spec) for spec in layers]
    return Settings.from_mapping(typed, base=settings)


def _list_presets() -> int:
    folders = preset_files.search_path(user_preset_folders())
    for name, sources in preset_files.available(folders).items():
        label, path = sources[0]
        try:
            chosen = preset_files.load(path, label)
            layers = ", ".join(str(s) for s in chosen.apply().layers)
            description = chosen.description
        except SettingsError as exc:
            layers, description = "?", f"(broken: {exc})"
        origin = label if label == "built-in" else f"{label}: {path}"
        if len(sources) > 1:
            origin += f" (overrides {', '.join(lbl for lbl, _ in sources[1:])})"
        click.echo(f"{name}  [{origin}]  layers: {layers}")
        if description:
            click.echo(f"    {description}")
    return EXIT_OK


def _list_layers() -> int:
    from dreamcli.model import googlenet_channels

    trunk = [n for n in MODULE_NAMES if n != "preprocess" and not n.endswith((".conv", ".bn"))]
    channels = googlenet_channels(trunk)
    caffe_for = {}
    for caffe, module in CAFFE_NAMES.items():
        caffe_for.setdefault(module, caffe)
    click.echo(f"{'caffe name':<28} {'torchvision name':<26} channels")
    for module in trunk:
        click.echo(f"{caffe_for.get(module, '-'):<28} {module:<26} {channels[module]}")
    return EXIT_OK


def _run(names: list[str], settings: Settings, chosen, opts: SimpleNamespace) -> int:
    from dreamcli import batch
    from dreamcli.model import choose_precision
    from dreamcli.tiling import free_memory

    if names == ["-"] or "-" in names:
        names = [n for n in names if n != "-"] + [line.strip() for line in sys.stdin if line.strip()]
    output = opts.output
    found = batch.collect_inputs(
        names, opts.recursive, exclude=output if output and output.is_dir() else None
    )
    jobs = batch.plan_jobs(found, output, opts.template, settings, chosen.name if chosen else None)
    if opts.shard:
        jobs = batch.take_shard(jobs, *batch.parse_shard(opts.shard))
    if not jobs:
        if not opts.quiet:
            click.echo("No images to dream.", err=True)
        return EXIT_OK
    device = _device(opts, settings)
    progress = Progress(opts.quiet, opts.as_json, many=len(jobs) > 1)
    pending = [job for job in jobs if opts.overwrite or not job.output.exists()]
    model = _model(opts, device) if pending else None
    precision = choose_precision(opts.precision, device)
    runner = batch.Batch(
        model,
        settings,
        resolve=resolve_googlenet,
        report=progress,
        overwrite=opts.overwrite,
        tile_size=opts.tile_size,
        precision=precision,
        batch_size=opts.batch_size,
        memory=_memory_budget(free_memory(device)),
        metadata={
            "version": __version__,
            "preset": chosen.name if chosen else None,
            "model": f"googlenet ({opts.weights.name})" if opts.weights else "googlenet IMAGENET1K_V1",
            "device": str(device),
            "precision": precision,
        },
    )
    summary = runner.run(jobs)
    progress.close()
    return progress.finish(summary, found.not_images)


def _memory_budget(free: int | None) -> float | None:
    # Leave room for the model, the other images in flight, and the rest of the system.
    return None if free is None else 0.7 * free


class Progress:
    """Turns engine and batch events into tqdm bars, error lines and JSON lines."""

    def __init__(self, quiet: bool, as_json: bool, many: bool):
        self.quiet, self.as_json, self.many = quiet, as_json, many
        self.files = None
        self.steps = None
        self.notes: set[str] = set()

    def __call__(self, event) -> None:
        from dreamcli.animate import FrameDone
        from dreamcli.batch import FileStarted, Result
        from dreamcli.dream import Note
        from dreamcli.dream import Progress as Step

        if isinstance(event, FrameDone):
            self._frame(event)
        elif isinstance(event, FileStarted):
            self._start_file(event)
        elif isinstance(event, Step):
            self._step(event)
        elif isinstance(event, Note) and not self.quiet and event.message not in self.notes:
            self.notes.add(event.message)  # over a thousand files, say each thing once
            self._write(f"Note: {event.message}")
        elif isinstance(event, Result):
            self._result(event)

    def _bar(self, **kwargs):
        from tqdm import tqdm

        # disable=None: tqdm turns itself off when stderr is not a terminal.
        return tqdm(file=sys.stderr, disable=True if self.quiet else None, dynamic_ncols=True, **kwargs)

    def _start_file(self, event) -> None:
        if self.many and self.files is None:
            self.files = self._bar(total=event.total, desc="files", unit="file", position=0)
        if self.steps is not None:
            self.steps.close()
        self.steps = self._bar(
            total=0,
            desc=event.job.source.name,
            unit="step",
            leave=not self.many,
            position=1 if self.many else 0,
        )

    def _frame(self, event) -> None:
        """Animations: one bar over frames, which shows frames per second and time left."""
        if self.files is None:
            self.files = self._bar(total=event.total, desc="frames", unit="frame")
        self.files.update(1)

    def _step(self, event) -> None:
        if self.steps is None:
            return
        if event.iteration == 0:
            self.steps.total = event.octaves * event.iterations
            self.steps.set_postfix_str(
                f"octave {event.octave}/{event.octaves} {event.size[1]}x{event.size[0]}"
            )
        else:
            self.steps.update(1)

    def _result(self, result) -> None:
        if self.files is not None:
            self.files.update(1)
        if self.as_json:
            self._write(json.dumps(result.to_dict()), err=False)
        if result.status == "failed":
            named = str(result.job.source) in result.error
            self._write(f"Error: {result.error}" if named else f"Error: {result.job.source}: {result.error}")
        elif not self.quiet and not self.as_json and not self.many:
            what = "Wrote" if result.status == "done" else "Skipped (exists; --overwrite replaces it)"
            self._write(f"{what} {result.job.output}")

    def _write(self, text: str, err: bool = True) -> None:
        from tqdm import tqdm

        if self.files is None and self.steps is None:
            click.echo(text, err=err)
        else:
            tqdm.write(text, file=sys.stderr if err else sys.stdout)

    def close(self) -> None:
        for bar in (self.steps, self.files):
            if bar is not None:
                bar.close()
        self.steps = self.files = None

    def finish(self, summary, not_images: list[Path]) -> int:
        if self.many and not self.quiet:
            line = f"{summary.done} done, {summary.skipped} skipped, {summary.failed} failed"
            if not_images:
                line += f"; {len(not_images)} non-image file(s) ignored"
            click.echo(line, err=True)
        if summary.interrupted:
            click.echo("Interrupted: finished files are kept, no partial file was left.", err=True)
            return EXIT_INTERRUPTED
        return EXIT_FAILED if summary.failed else EXIT_OK
