"""What the commands share: settings merged from presets and flags, loading the network,
the one-line "Skipped" and "Wrote" messages; and (from ``flags``) the option declarations,
so that a command module needs only ``from dreamcli.cli import common``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from dreamcli import __version__, models
from dreamcli import presets as preset_files
from dreamcli.cli import complete
from dreamcli.cli.display import Display, skipped
from dreamcli.cli.flags import (  # noqa: F401 - the declarations commands use as common.X
    DREAM_FIELDS,
    PICTURE_FIELDS,
    Decorator,
    SectionedCommand,
    SectionOption,
    Span,
    check_size,
    default_of,
    dream_flags,
    dream_job_flags,
    field_flag,
    flag,
    help_all_flag,
    job_flags,
    layer_flag,
    model_flags,
    output_flag,
    overwrite_flag,
    preset_flag,
    quiet_flag,
    tile_flag,
    together,
    version_flag,
)
from dreamcli.config import FIELDS, LayerSpec, Settings
from dreamcli.errors import SettingsError

# ---------------------------------------------------------------------------------------------
# Settings: defaults < preset < the flags typed


def typed(ctx: click.Context, name: str) -> bool:
    """True when the user gave the flag: a flag left at its default must not undo a preset."""
    return ctx.get_parameter_source(name) not in (
        None,
        ParameterSource.DEFAULT,
        ParameterSource.DEFAULT_MAP,
    )


def load_preset(name: str | None) -> preset_files.Preset | None:
    if name is None:
        return None
    return preset_files.find(name, preset_files.search_path(complete.user_preset_folders()))


def network_for(model: str | None, chosen: preset_files.Preset | None) -> models.Network:
    """The --model typed, else the preset's, else the default."""
    if model:
        try:
            return models.get(model)
        except SettingsError as exc:
            raise click.BadParameter(str(exc), param_hint="--model") from None
    return models.get(chosen.apply().model if chosen and "model" in chosen.values else models.DEFAULT)


def merge(
    chosen: preset_files.Preset | None,
    layers: tuple[LayerSpec, ...],
    typed_values: dict[str, Any],
    network: models.Network,
) -> Settings:
    """defaults (the network's default layer) < preset < flags the user typed; every layer
    checked against the network, and the error names where it came from."""
    base = Settings(model=network.name, layers=(LayerSpec.parse(network.default_layer),))
    settings = chosen.apply(base) if chosen else base
    if chosen and "layers" in chosen.values and not layers:
        for spec in settings.layers:
            try:
                network.layers.check(spec)
            except SettingsError as exc:
                raise SettingsError(f"{chosen.path}: layers: {_for_model(exc, network)}") from None
    values = dict(typed_values)
    if layers:
        for spec in layers:
            try:
                network.layers.check(spec)
            except SettingsError as exc:
                raise click.BadParameter(_for_model(exc, network), param_hint="--layer") from None
        values["layers"] = [str(spec) for spec in layers]
    return Settings.from_mapping({**values, "model": network.name}, base=settings)


def _for_model(exc: SettingsError, network: models.Network) -> str:
    """A layer error for ``network``: its listing command names the model."""
    text = str(exc)
    if network.name != models.DEFAULT:
        text = text.replace("'dream list layers'", f"'dream list layers --model {network.name}'")
    return f"{text} (model {network.name})"


@dataclass(frozen=True)
class Chosen:
    """A command's network, its merged settings and the preset they came from."""

    network: models.Network
    settings: Settings
    preset: preset_files.Preset | None

    @property
    def preset_name(self) -> str | None:
        return self.preset.name if self.preset else None


def chosen_settings(
    ctx: click.Context, params: dict[str, Any], fields: Sequence[str] = tuple(FIELDS)
) -> Chosen:
    """The settings of this command: the preset (``--preset``), then the settings flags typed."""
    chosen = load_preset(params.get("preset"))
    network = network_for(params.get("model"), chosen)
    values = {name: params[name] for name in fields if name in params and typed(ctx, name)}
    settings = merge(chosen, tuple(params.get("layers") or ()), values, network)
    return Chosen(network, settings, chosen)


# ---------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class Machine:
    """Where a command runs: its device and precision flags, weights and quiet."""

    device: str = "auto"
    precision: str = "auto"
    tile_size: int | None = None
    weights: Path | None = None
    quiet: bool = False

    @classmethod
    def of(cls, params: dict[str, Any]) -> Machine:
        return cls(
            device=params.get("device", "auto"),
            precision=params.get("precision", "auto"),
            tile_size=params.get("tile_size"),
            weights=params.get("weights"),
            quiet=params.get("quiet", False),
        )

    def run_options(self, reproducible: bool) -> Any:
        """The command's one RunOptions: device checked, kernels chosen, memory measured."""
        from dreamcli.engine.devices import run_options

        return run_options(self.device, self.precision, self.tile_size, reproducible=reproducible)

    def check_device(self) -> None:
        """Refuse a device this machine lacks before saying anything else (cheap for auto and cpu)."""
        if self.device.strip().lower() not in ("auto", "cpu"):
            from dreamcli.engine.devices import select_device

            select_device(self.device)

    def load(self, network: models.Network, options: Any, report: Any = None) -> models.Loaded:
        """The network loaded; ``report`` (a Display) shows a status line meanwhile."""
        from dreamcli.models.loading import load

        return load(
            network,
            weights=self.weights,
            device=options.device,
            progress=not self.quiet,
            report=report or (lambda event: None),
        )

    def metadata(self, loaded: models.Loaded, options: Any, preset: str | None) -> dict[str, Any]:
        """What every output records besides its settings."""
        return {
            "version": __version__,
            "preset": preset,
            "model": loaded.label,
            "device": options.device,
            "precision": options.precision,
        }

    def work(
        self, chosen: Chosen, job: Callable[..., Any], reproducible: bool = True, many: bool = False
    ) -> Any:
        """A one-output command's work: run options, the display, the network loaded, then
        ``job(loaded, options, metadata, display)``, whose result is returned."""
        options = self.run_options(reproducible=reproducible)
        with self.display(many=many) as display:
            loaded = self.load(chosen.network, options, display)
            return job(loaded, options, self.metadata(loaded, options, chosen.preset_name), display)

    def display(self, many: bool = False, as_json: bool = False) -> Display:
        return Display(self.quiet, as_json, many)

    def say(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)

    def kept(self, output: Path, overwrite: bool) -> bool:
        """An existing output is kept unless --overwrite (and the user is told); the device is
        checked first, so a skipped run still refuses a device this machine lacks."""
        self.check_device()
        if output.exists() and not overwrite:
            self.say(skipped(output))
            return True
        return False


def output_path(raw: str | None) -> tuple[Path | None, bool]:
    """``-o`` as a path, and whether it was written as a folder (ending with /)."""
    if raw is None:
        return None, False
    return Path(raw), raw.endswith(("/", os.sep))


def paths_from_stdin(names: list[str], null: bool) -> list[str]:
    """``-`` stands for the paths on standard input: one per line, or NUL-separated with -0."""
    if "-" not in names:
        return names
    data = sys.stdin.buffer.read()
    # Without -0 only the line ending goes: spaces at either end may be part of a name.
    raw = data.split(b"\0") if null else [line.removesuffix(b"\r") for line in data.split(b"\n")]
    # os.fsdecode keeps bytes that are not UTF-8 (surrogateescape), so any name works.
    return [n for n in names if n != "-"] + [os.fsdecode(path) for path in raw if path]


SAMPLE_CREDIT = "sample photo: 'coffee' by Rachel Michetti (CC0), from scikit-image"


def sample_path() -> str:
    """The sample photo that ships with dreamcli (``--sample``)."""
    from importlib import resources

    return str(resources.files("dreamcli.data") / "sample.jpg")
