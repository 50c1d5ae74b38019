"""Choosing what a ``dream`` command does, and running it: a batch, a view, a zoom or a video.

The settings are merged here (defaults < preset < typed flags), the one
``RunOptions`` is built here, and torch is imported only once there is
something to dream, so ``dream --help`` and the listings start fast.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from importlib import resources
from pathlib import Path

import click
from click.core import ParameterSource

from dreamcli import __version__, models
from dreamcli import presets as preset_files
from dreamcli.cli.display import Display
from dreamcli.cli.options import CliOptions
from dreamcli.config import FIELDS, LayerSpec, Settings
from dreamcli.errors import EXIT_OK, SettingsError
from dreamcli.formats import VIDEO_INPUTS

SAMPLE_CREDIT = "sample photo: 'coffee' by Rachel Michetti (CC0), from scikit-image"


def run(ctx: click.Context, opts: CliOptions) -> int:
    """Do what the flags ask; return the exit code."""
    network = models.get()
    if opts.list_presets:
        return _list_presets()
    if opts.list_layers:
        return _list_layers(network)
    chosen = _load_preset(opts.preset, network)
    typed = {name: getattr(opts, name) for name in FIELDS if _typed(ctx, name)}
    settings = _merge(chosen, opts.layers, typed, network)
    if opts.show_settings:
        click.echo(preset_files.dump(settings, chosen.description if chosen else ""), nl=False)
        return EXIT_OK
    if opts.classes:
        extra = tuple(
            LayerSpec(network.logits, channels=(network.class_index(name),)) for name in opts.classes
        )
        # --class replaces the preset's layers unless --layer was typed too.
        kept = settings.layers if opts.layers else ()
        settings = dataclasses.replace(settings, layers=kept + extra)
    names = list(opts.inputs)
    mode = Mode(opts, network, settings, chosen)
    if opts.zoom:
        return mode.zoom(names)
    if len(names) == 1 and Path(names[0]).suffix.lower() in VIDEO_INPUTS:
        return mode.video(names[0])
    if _wants_view(opts):
        return mode.view(names, _view_variants(settings, opts, typed, network))
    if opts.sample:
        names.append(str(resources.files("dreamcli.data") / "sample.jpg"))
        if opts.output is None and len(names) == 1:
            mode.opts = opts = opts.replace(output=Path("."))
        if not opts.quiet:
            click.echo(f"Dreaming the {SAMPLE_CREDIT}", err=True)
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
        from dreamcli.devices import run_options

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
        from dreamcli import runs

        opts = self.opts
        start = runs.Start.from_inputs(names, opts.start, opts.size, "a zoom")
        zoom = runs.Zoom(
            start, self.settings, opts.zoom, opts.zoom_scale, opts.rotate, opts.pan, opts.fps, opts.output
        )
        if self._exists(runs.zoom_output(zoom)):
            return EXIT_OK
        options = self.run_options()
        with self._display(many=False) as display:
            output = runs.run_zoom(self.load(options), zoom, options, display)
        return self._say(f"Wrote {output} ({opts.zoom} frames)")

    def video(self, name: str) -> int:
        from dreamcli import animate, runs

        opts = self.opts
        source = Path(name)
        output = runs.video_output(source, opts.output)
        if self._exists(output):
            return EXIT_OK
        animate.probe_video(source)  # a bad file fails before the model loads
        options = self.run_options()
        with self._display(many=False) as display:
            loaded = self.load(options)
            info = runs.run_video(
                loaded, source, output, self.settings, opts.blend, opts.flow, options, display
            )
        return self._say(f"Wrote {output} ({info.frames} frames at {info.fps:g} fps)")

    def view(self, names: list[str], variants: list[tuple[str, Settings]]) -> int:
        """Sweeps, channel grids, noise starts, guides, classes and heat maps: one picture in, one out."""
        from dreamcli import runs

        opts = self.opts
        start = runs.Start.from_inputs(
            names, opts.start, opts.size, "sweeps, grids, guides, classes and heat maps"
        )
        grid = LayerSpec.parse(opts.channel_grid) if opts.channel_grid else None
        if grid is not None:
            self.network.layers.resolve(grid.name)
        view = runs.View(start, self.settings, variants, grid, opts.guide, opts.heatmap, opts.output)
        if self._exists(runs.image_output(view.output, start, view.kind)):  # a bad -o fails here too
            return EXIT_OK
        options = self.run_options()
        with self._display(many=len(variants) > 1) as display:
            loaded = self.load(options)
            view = dataclasses.replace(view, metadata=self.metadata(loaded, options))
            output = runs.run_view(loaded, view, options, display)
        return self._say(f"Wrote {output}")

    def batch(self, names: list[str]) -> int:
        from dreamcli import batch

        opts = self.opts
        if "-" in names:
            names = [n for n in names if n != "-"] + [line.strip() for line in sys.stdin if line.strip()]
        output = opts.output
        found = batch.collect_inputs(
            names, opts.recursive, exclude=output if output and output.is_dir() else None
        )
        preset = self.chosen.name if self.chosen else None
        jobs = batch.plan_jobs(found, output, opts.template, self.settings, preset)
        if opts.shard:
            jobs = batch.take_shard(jobs, *batch.parse_shard(opts.shard))
        if not jobs:
            return self._say("No images to dream.")
        options = self.run_options()
        pending = [job for job in jobs if opts.overwrite or not job.output.exists()]
        loaded = self.load(options) if pending else None  # every output exists: no model needed
        display = self._display(many=len(jobs) > 1)
        runner = batch.Batch(
            loaded,
            self.settings,
            options,
            report=display,
            overwrite=opts.overwrite,
            batch_size=opts.batch_size,
            metadata=self.metadata(loaded, options) if loaded else {},
        )
        summary = runner.run(jobs)
        display.close()
        return display.finish(summary, found.not_images)

    def _display(self, many: bool) -> Display:
        return Display(self.opts.quiet, self.opts.as_json, many)

    def _exists(self, output: Path) -> bool:
        """Like batch mode: an existing output is kept unless --overwrite (and the user is told)."""
        if output.exists() and not self.opts.overwrite:
            self._say(f"Skipped {output} (exists; --overwrite replaces it)")
            return True
        return False

    def _say(self, message: str) -> int:
        if not self.opts.quiet:
            click.echo(message, err=True)
        return EXIT_OK


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
        specs = [LayerSpec.parse(text) for text in opts.sweep.split()]
        for spec in specs:
            network.layers.resolve(spec.name)
        return [(str(spec), dataclasses.replace(settings, layers=(spec,))) for spec in specs]
    if opts.sweep_presets:
        return [
            (name, _merge(_load_preset(name, network), opts.layers, typed, network))
            for name in opts.sweep_presets.split()
        ]
    return []


def user_preset_folders() -> list[tuple[str, Path]]:
    folders = []
    env = os.environ.get(preset_files.ENV_VAR)
    if env:
        folders.append((f"${preset_files.ENV_VAR}", Path(env)))
    folders.append(("user", Path(click.get_app_dir("dreamcli")) / "presets"))
    return folders


def _load_preset(name: str | None, network) -> preset_files.Preset | None:
    if name is None:
        return None
    chosen = preset_files.find(name, preset_files.search_path(user_preset_folders()))
    for spec in chosen.apply().layers:
        try:
            network.layers.resolve(spec.name)
        except SettingsError as exc:
            raise SettingsError(f"{chosen.path}: layers: {exc}") from None
    return chosen


def _typed(ctx: click.Context, name: str) -> bool:
    """True when the user gave the flag: a flag left at its default must not undo a preset."""
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def _merge(chosen, layers: tuple[LayerSpec, ...], typed: dict, network) -> Settings:
    """defaults < preset < flags the user typed."""
    settings = chosen.apply() if chosen else Settings(layers=(network.default_layer,))
    typed = dict(typed)
    if layers:
        for spec in layers:
            try:
                network.layers.resolve(spec.name)
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


def _list_layers(network) -> int:
    click.echo(f"# {network.name}: {network.description}")
    click.echo(f"# input: {network.input}; default layer: {network.default_layer}")
    click.echo(f"{'name':<28} {'module':<26} channels")
    for alias, module, channels in network.layers.rows():
        click.echo(f"{alias:<28} {module:<26} {channels}")
    return EXIT_OK
