"""Choosing what a ``dream`` command does, and running it: a batch, a view, a zoom or a video.

The settings are merged here (defaults < preset < typed flags), the one
``RunOptions`` is built here, and torch is imported only once there is
something to dream, so ``dream --help`` and the listings start fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import NoReturn

import click
from click.core import ParameterSource

from dreamcli import __version__, models
from dreamcli import presets as preset_files
from dreamcli.cli.complete import user_preset_folders
from dreamcli.cli.display import Display, skipped
from dreamcli.cli.options import CliOptions
from dreamcli.config import FIELDS, LayerSpec, Settings
from dreamcli.errors import EXIT_FAILED, EXIT_OK, DreamError, SettingsError, describe
from dreamcli.events import Summary
from dreamcli.io.formats import VIDEO_INPUTS, check_output
from dreamcli.jobs import outputs as plan

SAMPLE_CREDIT = "sample photo: 'coffee' by Rachel Michetti (CC0), from scikit-image"


def run(ctx: click.Context, opts: CliOptions) -> int:
    """Do what the flags ask; return the exit code."""
    if opts.list_presets:
        return _list_presets()
    if opts.list_models:
        return _list_models()
    chosen = _load_preset(opts.preset)
    network = _network(opts, chosen)
    if opts.list_layers:
        return _list_layers(network)
    typed = {name: getattr(opts, name) for name in FIELDS if _typed(ctx, name)}
    if opts.model:
        typed["model"] = opts.model
    settings = _merge(chosen, opts.layers, typed, network)
    if opts.show_settings:
        description = chosen.description if chosen else ""
        if chosen and (typed or opts.layers):
            changed = ", ".join([*typed, *(["layers"] if opts.layers else [])])
            description += f" (Changed from the {chosen.name} preset: {changed}.)"
        click.echo(preset_files.dump(settings, description.strip()), nl=False)
        return EXIT_OK
    if opts.classes:
        extra = tuple(
            LayerSpec(network.logits, channels=(network.class_index(name),)) for name in opts.classes
        )
        # --class replaces the preset's layers unless --layer was typed too.
        kept = settings.layers if opts.layers else ()
        settings = dataclasses.replace(settings, layers=kept + extra)
    names = list(opts.inputs)
    kind = _kind(opts, names)
    if opts.size is not None and opts.start == "photo":
        raise click.BadParameter(
            "sets the size of a --start noise or grey; a photo keeps its own", param_hint="--size"
        )
    if opts.guide is not None and not opts.guide.is_file():
        raise click.BadParameter(
            f"{opts.guide} is not a file; give a picture to dream of", param_hint="--guide"
        )
    mode = Mode(opts, network, settings, chosen)
    if opts.ray:
        from dreamcli.jobs.ray_batch import require_ray

        require_ray()  # without the extra: which command installs it, before any work
        videos = any(Path(n).suffix.lower() in VIDEO_INPUTS for n in names)
        if opts.zoom or _wants_view(opts) or opts.atlas or videos:
            raise click.BadParameter(
                "dreams batches of files; views, atlases, zooms and videos run here", param_hint="--ray"
            )
    if kind == "atlas":
        if opts.zoom or _wants_view(opts):
            raise click.BadParameter(
                "makes one map of many photos; leave out views and zooms", param_hint="--atlas"
            )
        if opts.shard:  # each of N jobs would write the whole atlas
            raise click.BadParameter("maps all the photos at once; leave out --shard", param_hint="--atlas")
    _refuse_unused(ctx, opts, kind)
    if kind == "atlas":
        return mode.atlas(names)
    if kind == "video":
        return mode.video(names[0])
    if opts.sample:
        names.append(str(resources.files("dreamcli.data") / "sample.jpg"))
        if opts.output is None and len(names) == 1:  # not beside the photo, inside the package
            output = "./sample_zoom.gif" if kind == "zoom" else "./"
            mode.opts = opts = opts.replace(output=output)
        if not opts.quiet:
            click.echo(f"Dreaming the {SAMPLE_CREDIT}", err=True)
    if kind == "zoom":
        return mode.zoom(names)
    if kind == "view":
        return mode.view(names, _view_variants(settings, opts, typed, network))
    if not names:
        raise click.UsageError("give an image, a folder, or - (try 'dream --sample' or 'dream --help')")
    return mode.batch(names)


class Mode:
    """One command's run: the flags, the network, the merged settings and the preset."""

    def __init__(self, opts: CliOptions, network: models.Network, settings: Settings, chosen):
        self.opts, self.network, self.settings, self.chosen = opts, network, settings, chosen

    def metadata(self, loaded, options) -> dict:
        """What every output records besides its settings."""
        return {
            "version": __version__,
            "preset": self.chosen.name if self.chosen else None,
            "model": loaded.label,
            "device": options.device,
            "precision": options.precision,
        }

    def run_options(self):
        """The command's one RunOptions: device checked, kernels chosen, memory measured."""
        from dreamcli.engine.devices import run_options

        opts = self.opts
        return run_options(
            opts.device, opts.precision, opts.tile_size, reproducible=self.settings.seed is not None
        )

    def load(self, options):
        from dreamcli.models.loading import load

        return load(
            self.network, weights=self.opts.weights, device=options.device, progress=not self.opts.quiet
        )

    def zoom(self, names: list[str]) -> int:
        opts = self.opts
        start = plan.Start.from_inputs(names, opts.start, opts.size, "a zoom")
        output = output_path(opts.output)[0]
        zoom = plan.Zoom(
            start, self.settings, opts.zoom, opts.zoom_scale, opts.rotate, opts.pan, opts.fps, output
        )
        if self._exists(plan.zoom_output(zoom)):
            return EXIT_OK
        from dreamcli.jobs import runs

        options = self.run_options()
        with self._display(many=False) as display:
            loaded = self.load(options)
            zoom = dataclasses.replace(zoom, metadata=self.metadata(loaded, options))
            output = runs.run_zoom(loaded, zoom, options, display)
        return self._say(f"Wrote {output} ({opts.zoom} frames)")

    def video(self, name: str) -> int:
        opts = self.opts
        source = Path(name)
        output = plan.video_output(source, *output_path(opts.output))
        if self._exists(output):
            return EXIT_OK
        from dreamcli.jobs import animations as animate
        from dreamcli.jobs import runs

        animate.probe_video(source)  # a bad file fails before the model loads
        options = self.run_options()
        with self._display(many=False) as display:
            loaded = self.load(options)
            info = runs.run_video(
                loaded,
                source,
                output,
                self.settings,
                opts.blend,
                opts.flow,
                options,
                display,
                self.metadata(loaded, options),
            )
        return self._say(f"Wrote {output} ({info.frames} frames at {info.fps:g} fps)")

    def view(self, names: list[str], variants: list[tuple[str, Settings]]) -> int:
        """Sweeps, channel grids, noise starts, guides, classes and heat maps: one picture in, one out."""
        opts = self.opts
        start = plan.Start.from_inputs(
            names, opts.start, opts.size, "sweeps, grids, guides, classes and heat maps"
        )
        grid = LayerSpec.parse(opts.channel_grid) if opts.channel_grid else None
        if grid is not None:
            self.network.layers.check(grid)
        output, into_folder = output_path(opts.output)
        view = plan.View(start, self.settings, variants, grid, opts.guide, opts.heatmap, output, into_folder)
        if self._exists(plan.image_output(output, start, view.kind, into_folder)):  # a bad -o fails here too
            return EXIT_OK
        from dreamcli.jobs import runs

        options = self.run_options()
        with self._display(many=len(variants) > 1) as display:
            loaded = self.load(options)
            view = dataclasses.replace(view, metadata=self.metadata(loaded, options))
            output = runs.run_view(loaded, view, options, display)
        return self._say(f"Wrote {output}")

    def atlas(self, names: list[str]) -> int:
        """An activation atlas of every photo the inputs name: one picture and its JSON."""
        opts = self.opts
        layer = self._atlas_layer()
        found = plan.collect_inputs(self._with_stdin(names), opts.recursive, dreams=opts.include_dreams)
        photos = [path for path, _root in found.files]
        if not photos:
            raise click.UsageError("give photos, or folders of photos, to make an atlas of")
        output, into_folder = output_path(opts.output or "atlas.png")
        output = output / "atlas.png" if into_folder or output.is_dir() else output
        check_output(output)
        if into_folder:
            output.parent.mkdir(parents=True, exist_ok=True)
        elif not output.parent.is_dir():  # found now, not after minutes of work
            raise SettingsError(f"cannot write {output}: the folder {output.parent} does not exist")
        for path in (output, output.with_suffix(".json")):
            if any(plan.same_file(photo, path) for photo in photos):
                raise SettingsError(
                    f"{path} is one of the photos; dreamcli never overwrites an input: choose another -o"
                )
        if self._exists(output):
            return EXIT_OK
        if not opts.overwrite:
            _check_atlas_json(output)
        from dreamcli.jobs import atlas

        labels = opts.atlas_labels if opts.atlas_labels is not None else self.network.logits is not None
        if labels and self.network.logits is None:
            raise click.BadParameter(
                f"{self.network.name} has no classes to label cells with", param_hint="--atlas-labels"
            )
        settings = atlas.AtlasOptions(
            grid=opts.atlas_grid,
            size=opts.atlas_photo_size,
            samples_per_image=opts.atlas_samples,
            method=opts.atlas_method,
            steps=opts.atlas_steps,
            labels=labels,
            seed=self.settings.seed if self.settings.seed is not None else 0,
        )
        atlas.require_layout(settings.method)  # a missing extra says so before the model loads
        options = self.run_options()
        with self._display(many=False) as display:
            loaded = self.load(options)
            try:
                made = atlas.make_atlas(loaded, layer, photos, settings, report=display)
                atlas.write_atlas(made, output)
            except DreamError:
                raise
            except Exception as exc:  # never a traceback: one line, exit 1
                raise DreamError(f"the atlas could not be made: {describe(exc)}") from None
        used = made.metadata["photos_used"]
        self._say(
            f"Wrote {output} and {output.with_suffix('.json').name} ({len(made.cells)} cells, {used} photos)"
        )
        return EXIT_FAILED if made.skipped else EXIT_OK

    def _atlas_layer(self) -> str:
        layers = self.settings.layers
        if len(layers) != 1 or layers[0].channels is not None:
            if self.chosen and not self.opts.layers:
                raise SettingsError(
                    f"preset {self.chosen.name} dreams on {', '.join(map(str, layers))}; an atlas maps "
                    f"one whole layer: add e.g. --layer {self.network.default_layer}"
                )
            raise click.BadParameter(
                "an atlas maps one whole layer: give one --layer, without channels", param_hint="--layer"
            )
        return layers[0].name

    def batch(self, names: list[str]) -> int:
        opts = self.opts
        output, into_folder = output_path(opts.output)
        found = plan.collect_inputs(self._with_stdin(names), opts.recursive, dreams=opts.include_dreams)
        preset = self.chosen.name if self.chosen else None
        jobs = plan.plan_jobs(found, output, opts.template, self.settings, preset, into_folder)
        if opts.shard:
            jobs = plan.take_shard(jobs, *plan.parse_shard(opts.shard))
        display = self._display(many=len(jobs) > 1)
        todo, settled = plan.triage(jobs, opts.overwrite)
        if not todo:  # nothing to dream: say so at once, without loading torch or the model
            summary = Summary()
            for result in settled:
                summary.add(result)
                display(result)
            return display.finish(summary, found)
        if opts.ray:
            return self._ray(jobs, found, display)
        from dreamcli.jobs import batch

        options = self.run_options()
        loaded = self.load(options)
        runner = batch.Batch(
            loaded,
            self.settings,
            options,
            report=display,
            overwrite=opts.overwrite,
            batch_size=opts.batch_size,
            metadata=self.metadata(loaded, options),
        )
        summary = runner.run(jobs)
        display.close()
        return display.finish(summary, found)

    def _ray(self, jobs, found, display: Display) -> int:
        """The batch on a Ray cluster: the same plan, names, skips, errors and summary."""
        from dreamcli.jobs import ray_batch

        opts = self.opts
        if opts.ray == "local":  # the workers run here: what they would fail on fails now, once
            self.run_options()  # a device this machine lacks
            if opts.weights is None:  # the download, into the cache the workers read
                from dreamcli.models.weights import download

                download(self.network, progress=not opts.quiet)
        ray = ray_batch.connect(opts.ray)
        threads = 0  # on a cluster: the CPUs Ray gives each worker
        if opts.ray == "local":
            # This machine's threads shared by its workers: one worker uses what a local run
            # would (so pixels match a local run), two split them rather than fight over them.
            import torch

            threads = max(1, torch.get_num_threads() // (opts.ray_workers or 1))
        spec = ray_batch.WorkerSpec(
            network=self.network.name,
            weights=str(opts.weights.resolve()) if opts.weights else None,
            settings=self.settings.to_dict(),
            metadata={"version": __version__, "preset": self.chosen.name if self.chosen else None},
            device=opts.device,
            precision=opts.precision,
            tile_size=opts.tile_size,
            reproducible=self.settings.seed is not None,
            overwrite=opts.overwrite,
            batch_size=opts.batch_size,
            threads=threads,
        )
        summary = ray_batch.run(ray, jobs, spec, opts.ray_workers, report=display)
        display.close()
        return display.finish(summary, found)

    def _with_stdin(self, names: list[str]) -> list[str]:
        """``-`` stands for the paths on standard input: one per line, or NUL-separated with -0."""
        if "-" not in names:
            return names
        data = sys.stdin.buffer.read()
        if self.opts.null:
            raw = data.split(b"\0")
        else:  # only the line ending goes: spaces at either end may be part of a name
            raw = [line.removesuffix(b"\r") for line in data.split(b"\n")]
        # os.fsdecode keeps bytes that are not UTF-8 (surrogateescape), so any name works.
        return [n for n in names if n != "-"] + [os.fsdecode(path) for path in raw if path]

    def _display(self, many: bool) -> Display:
        return Display(self.opts.quiet, self.opts.as_json, many)

    def _exists(self, output: Path) -> bool:
        """Like batch mode: an existing output is kept unless --overwrite (and the user is told)."""
        if output.exists() and not self.opts.overwrite:
            self._say(skipped(output))
            return True
        return False

    def _say(self, message: str) -> int:
        if not self.opts.quiet:
            click.echo(message, err=True)
        return EXIT_OK


def _check_atlas_json(output: Path) -> None:
    """atlas.webp after atlas.png would share (and replace) atlas.json: refuse, unless that
    JSON is this picture's own (a run killed between writing the JSON and the picture)."""
    described = output.with_suffix(".json")
    if not described.exists():
        return
    try:
        image = json.loads(described.read_text(encoding="utf-8"))["atlas"]["image"]
    except (OSError, ValueError, KeyError, TypeError):
        image = None
    if image != output.name:
        whose = f"the map of {image}" if isinstance(image, str) else "not an atlas map of this picture"
        raise SettingsError(f"{described} exists, {whose}; --overwrite replaces it, or choose another -o")


def output_path(raw: str | None) -> tuple[Path | None, bool]:
    """``-o`` as a path, and whether it was written as a folder (ending with /)."""
    if raw is None:
        return None, False
    return Path(raw), raw.endswith(("/", os.sep))


def _kind(opts: CliOptions, names: list[str]) -> str:
    """What the command makes: an atlas, a zoom, a video, a view, or dreams of files (a batch)."""
    if opts.atlas:
        return "atlas"
    if opts.zoom:
        return "zoom"
    if len(names) == 1 and Path(names[0]).suffix.lower() in VIDEO_INPUTS:
        return "video"
    return "view" if _wants_view(opts) else "batch"


# What each kind of command is called in a refusal, and how to ask for it.
_KINDS = {
    "batch": ("dreams files", "plain dreams of files", None),
    "view": ("makes a view", "views", None),
    "zoom": ("makes a zoom", "zooms", "--zoom FRAMES"),
    "video": ("dreams a video", "videos", None),
    "atlas": ("makes an atlas", "atlases", "--atlas"),
}
_DREAMS = ("batch", "view", "zoom", "video")
# The flags only some kinds of command use (the rest apply to all).  A flag typed where it
# does nothing is refused: a script that passes --fps to a video or --iterations to an
# atlas would otherwise believe it had been heard.
_USED_BY = {
    # An atlas draws its cells with its own steps (--atlas-steps); only the seed carries over.
    **dict.fromkeys((name for name in FIELDS if name != "seed"), _DREAMS),
    **dict.fromkeys(("tile_size", "precision"), _DREAMS),
    # (--ray and, with an atlas, --shard have their own refusals above, saying why)
    **dict.fromkeys(("template", "batch_size", "shard", "as_json", "ray_workers"), ("batch",)),
    **dict.fromkeys(("recursive", "include_dreams", "null"), ("batch", "atlas")),  # folders and -
    "sample": ("batch", "view", "zoom"),
    **dict.fromkeys(("zoom_scale", "rotate", "pan", "fps"), ("zoom",)),
    **dict.fromkeys(("blend", "flow"), ("video",)),
    **dict.fromkeys(("sweep", "sweep_presets", "channel_grid", "guide", "heatmap"), ("view",)),
    **dict.fromkeys(("start", "size"), ("view", "zoom")),
    "param": ("view",),  # the picture of a noise or grey start (checked below)
    **dict.fromkeys(
        ("atlas_grid", "atlas_method", "atlas_samples", "atlas_photo_size", "atlas_steps", "atlas_labels"),
        ("atlas",),
    ),
}
# Where an atlas's own flag does what the refused one would.
_ATLAS_INSTEAD = {"iterations": "--atlas-steps", "max_size": "--atlas-photo-size"}


def _refuse_unused(ctx: click.Context, opts: CliOptions, kind: str) -> None:
    """A UsageError for the first typed flag that a command of ``kind`` would not use."""
    if opts.start == "photo" and _typed(ctx, "param") and kind != "atlas":
        _unused(ctx, "param", "it sets the picture of a --start noise or grey view; leave it out")
    for name, kinds in _USED_BY.items():
        if kind in kinds or not _typed(ctx, name):
            continue
        if name == "start" and opts.start == "photo":
            continue  # what every photo command does: a wrapper script may say so
        if kind == "atlas" and kinds == _DREAMS:
            instead = _ATLAS_INSTEAD.get(name)
            why = (
                f"an atlas does not use it ({instead} is its own)" if instead else "an atlas does not use it"
            )
            _unused(ctx, name, f"{why}; leave it out")
        users = " and ".join(_KINDS[k][1] for k in kinds)
        switch = _KINDS[kinds[0]][2] if kind == "batch" and len(kinds) == 1 else None  # forgotten?
        fix = f"add {switch} or leave it out" if switch else "leave it out"
        _unused(ctx, name, f"used by {users} only, and this command {_KINDS[kind][0]}; {fix}")
    if opts.ray_workers is not None and not opts.ray:
        _unused(ctx, "ray_workers", "sets the workers of --ray; add --ray or leave it out")
    if opts.start != "photo" and _typed(ctx, "max_size"):
        _unused(ctx, "max_size", "it shrinks a photo, and a --start noise or grey takes --size")


def _unused(ctx: click.Context, name: str, why: str) -> NoReturn:
    """Say that the flag ``name``, as typed (``--no-lapnorm`` too), does nothing here."""
    param = next(p for p in ctx.command.params if p.name == name)
    typed = max(param.opts, key=len)
    if getattr(param, "secondary_opts", None) and ctx.params.get(name) is False:
        typed = max(param.secondary_opts, key=len)
    raise click.UsageError(f"{typed} does nothing here: {why}")


def _wants_view(opts: CliOptions) -> bool:
    return bool(
        opts.sweep
        or opts.sweep_presets
        or opts.channel_grid
        or opts.guide
        or opts.classes
        or opts.heatmap
        or opts.start != "photo"
    )


def _view_variants(settings: Settings, opts: CliOptions, typed: dict, network) -> list[tuple[str, Settings]]:
    if opts.sweep:
        specs = [LayerSpec.parse(text) for text in opts.sweep.replace(",", " ").split()]
        for spec in specs:
            network.layers.check(spec)
        return [(str(spec), dataclasses.replace(settings, layers=(spec,))) for spec in specs]
    if opts.sweep_presets:
        variants = []
        for name in opts.sweep_presets.replace(",", " ").split():
            preset = _load_preset(name)
            model = preset.values.get("model", network.name)
            if model != network.name:
                raise SettingsError(
                    f"--sweep-presets: preset {name} dreams with {model}, the sheet with "
                    f"{network.name}; one sheet takes one model (--model chooses it)"
                )
            variants.append((name, _merge(preset, opts.layers, typed, network)))
        return variants
    return []


def _load_preset(name: str | None) -> preset_files.Preset | None:
    if name is None:
        return None
    return preset_files.find(name, preset_files.search_path(user_preset_folders()))


def _network(opts: CliOptions, chosen) -> models.Network:
    """The --model typed, else the preset's, else the default."""
    if opts.model:
        try:
            return models.get(opts.model)
        except SettingsError as exc:
            raise click.BadParameter(str(exc), param_hint="--model") from None
    return models.get(chosen.apply().model if chosen and "model" in chosen.values else models.DEFAULT)


def _typed(ctx: click.Context, name: str) -> bool:
    """True when the user gave the flag: a flag left at its default must not undo a preset."""
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def _merge(chosen, layers: tuple[LayerSpec, ...], typed: dict, network) -> Settings:
    """defaults (the network's default layer) < preset < flags the user typed; every layer
    checked against the network, and the error names where it came from."""
    base = Settings(model=network.name, layers=(network.default_layer,))
    settings = chosen.apply(base) if chosen else base
    if chosen and "layers" in chosen.values and not layers:
        for spec in settings.layers:
            try:
                network.layers.check(spec)
            except SettingsError as exc:
                raise SettingsError(f"{chosen.path}: layers: {exc} (model {network.name})") from None
    typed = dict(typed)
    if layers:
        for spec in layers:
            try:
                network.layers.check(spec)
            except SettingsError as exc:
                raise click.BadParameter(f"{exc} (model {network.name})", param_hint="--layer") from None
        typed["layers"] = [str(spec) for spec in layers]
    return Settings.from_mapping({**typed, "model": network.name}, base=settings)


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


def _list_models() -> int:
    """Each network: name, description, input, weights file and whether it is in the cache."""
    cache = models.cache_folder()
    for network in models.NETWORKS.values():
        cached = "cached" if (cache / network.weights.file).is_file() else "not downloaded yet"
        default = " (default)" if network.name == models.DEFAULT else ""
        click.echo(f"{network.name}{default}: {network.description}")
        click.echo(f"    input: {network.input}; default layer: {network.default_layer}")
        click.echo(f"    weights: {network.weights.file} ({cached}), from {network.weights.url}")
    click.echo(f"Downloads are kept in {cache}; --weights FILE takes a file you have.")
    return EXIT_OK


def _list_layers(network) -> int:
    click.echo(f"# {network.name}: {network.description}")
    click.echo(f"# input: {network.input}; default layer: {network.default_layer}")
    click.echo(f"{'name':<34} {'module':<34} channels")
    for alias, module, channels in network.layers.rows():
        click.echo(f"{alias:<34} {module:<34} {channels}")
    return EXIT_OK
