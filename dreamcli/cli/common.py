"""What the commands share: option declarations, settings merged from presets and flags,
loading the network, and the one-line "Skipped" and "Wrote" messages.

Each command declares only the options it uses, from the pieces here, so an
option a command does not take is Click's own usage error.  Settings options
come from the schema shared with presets (``config.FIELDS``): a flag, a preset
key and a ``Settings`` field always have one name and one default.
"""

from __future__ import annotations

import dataclasses
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
from dreamcli.config import FIELDS, LAYERS_HELP, Field, LayerSpec, Settings
from dreamcli.errors import SettingsError
from dreamcli.run_options import PRECISIONS

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class SectionOption(click.Option):
    """An option that knows its help section and is named one way in errors (``--layer``)."""

    def __init__(self, *args: Any, section: str = "Other", **kwargs: Any):
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

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            number = self.kind(value)
        except (TypeError, ValueError, OverflowError):
            self.fail(f"{value!r} is not {'a whole number' if self.kind is int else 'a number'}", param, ctx)
        if not self.low <= number <= self.high:
            self.fail(f"{str(value)[:40]} is out of range; use {self.text}", param, ctx)
        return number


class SectionedCommand(click.Command):
    """``--help`` in sections: the ``shown`` ones in full, the others' flags by name; and
    ``--help-all`` explains every flag.  So each command's help fits one screen."""

    shown: tuple[str, ...] = ("Options", "Other")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        every = ctx.meta.get("dreamcli.help_all", False)
        by_section: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                by_section.setdefault(getattr(param, "section", "Other"), []).append((param, record))
        order = [*[s for s in self.shown if s in by_section], *[s for s in by_section if s not in self.shown]]
        for section in order:
            if every or section in self.shown:
                with formatter.section(f"{section} options" if section != "Other" else "Options"):
                    formatter.write_dl([record for _, record in by_section[section]])
        hidden = [s for s in order if s not in self.shown]
        if hidden and not every:
            with formatter.section(f"More options ({ctx.command_path} --help-all explains them)"):
                formatter.write_dl(
                    [(s, " ".join(max(p.opts, key=len) for p, _ in by_section[s])) for s in hidden]
                )


def _help_all(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        ctx.meta["dreamcli.help_all"] = True
        click.echo(ctx.get_help())
        ctx.exit()


def help_all_flag() -> Decorator:
    return click.option(
        "--help-all",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_help_all,
        help="Show every option.",
    )


def flag(*decls: str, section: str = "Other", span: Span | None = None, **kwargs: Any) -> Decorator:
    """``click.option`` in a help section; a ``span`` is the type and goes into the help."""
    if span is not None:
        kwargs["type"] = span
        kwargs["help"] = f"{kwargs.get('help', '')} Range: {span.text}.".strip()
    return click.option(*decls, cls=SectionOption, section=section, **kwargs)


def together(*decorators: Decorator) -> Decorator:
    """Several Click decorators as one, applied in the order given (as --help lists them)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


def default_of(cls: type, name: str) -> Any:
    """The default of a request dataclass's field: a flag's default comes from the request."""
    field = cls.__dataclass_fields__[name]  # type: ignore[attr-defined]
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()


def _check_field(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is None:
        return None
    try:
        return FIELDS[str(param.name)].check(value)
    except SettingsError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None


def _check_layers(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> tuple[LayerSpec, ...]:
    try:
        return tuple(LayerSpec.parse(text) for text in value)
    except SettingsError as exc:
        raise click.BadParameter(str(exc)) from None


def field_flag(name: str, section: str = "Dreaming") -> Decorator:
    """The flag of a settings field: its name, type, range, help and default from ``config``."""
    field: Field = FIELDS[name]
    default = Settings.__dataclass_fields__[name].default
    if field.kind is bool:  # --lapnorm / --no-lapnorm: a flag can also undo a preset's true
        bare = field.flag.removeprefix("--")
        return flag(f"--{bare}/--no-{bare}", name, section=section, default=default, help=field.help)
    if field.kind is str:
        kind = click.Choice(field.choices)
        return flag(field.flag, name, section=section, type=kind, default=default, help=field.help)
    return flag(
        field.flag,
        name,
        section=section,
        type=click.INT if field.kind is int else click.FLOAT,
        default=default,
        callback=_check_field,
        show_default=True,
        help=f"{field.help} Range: {field.allowed()}.",
    )


def layer_flag(section: str = "Dreaming", help: str = LAYERS_HELP) -> Decorator:
    return flag(
        "-l",
        "--layer",
        "layers",
        section=section,
        multiple=True,
        callback=_check_layers,
        shell_complete=complete.layers,
        help=help,
    )


def model_flags(section: str = "Running") -> Decorator:
    """--model, --weights, --device, --precision: which network, and where it runs."""
    return together(
        flag(
            "-m",
            "--model",
            section=section,
            shell_complete=complete.models_,
            help="The network (dream list models).  [default: googlenet]",
        ),
        flag(
            "--weights",
            section=section,
            type=click.Path(path_type=Path),
            help="Local state dict of the network instead of the download.",
        ),
        flag(
            "--device",
            section=section,
            default="auto",
            show_default=True,
            help="auto, cpu, cuda, cuda:N or mps.",
        ),
        flag(
            "--precision",
            section=section,
            type=click.Choice(PRECISIONS),
            default="auto",
            show_default=True,
            help="Arithmetic of the network's forward pass; auto: bf16 on CUDA and AMX CPUs, else fp32.",
        ),
    )


def preset_flag(section: str = "Dreaming") -> Decorator:
    return flag(
        "-p",
        "--preset",
        section=section,
        shell_complete=complete.presets,
        help="Named style, preset YAML file, or a picture dreamcli made (its settings); flags override it.",
    )


def tile_flag(section: str = "Running") -> Decorator:
    return flag(
        "--tile-size",
        section=section,
        span=Span(int, 32, 65536),
        help="Compute gradients in tiles of this many pixels (default: only when memory is short).",
    )


def output_flag(help: str, section: str = "Dreaming") -> Decorator:
    return flag("-o", "--output", section=section, help=help)


def quiet_flag(section: str = "Dreaming") -> Decorator:
    return flag("-q", "--quiet", section=section, is_flag=True, help="Print only errors.")


def overwrite_flag(section: str = "Dreaming") -> Decorator:
    return flag(
        "--overwrite", section=section, is_flag=True, help="Replace an existing output (default: skip it)."
    )


def version_flag(section: str = "Other") -> Decorator:
    return click.version_option(__version__, "-V", "--version", cls=SectionOption, section=section)


# The settings flags of commands that dream with DeepDream's octave loop.
DREAM_FIELDS = ("octaves", "octave_scale", "iterations", "step_size", "jitter", "max_size", "seed")
PICTURE_FIELDS = ("smooth", "lapnorm", "keep_colors")


def dream_flags(section: str = "Dreaming", pictures: str = "Pictures") -> Decorator:
    """--layer, --preset and every settings flag of a DeepDream: what a dream looks like."""
    return together(
        layer_flag(section),
        preset_flag(section),
        *(field_flag(name, section) for name in DREAM_FIELDS),
        *(field_flag(name, pictures) for name in PICTURE_FIELDS),
    )


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
                raise SettingsError(f"{chosen.path}: layers: {exc} (model {network.name})") from None
    values = dict(typed_values)
    if layers:
        for spec in layers:
            try:
                network.layers.check(spec)
            except SettingsError as exc:
                raise click.BadParameter(f"{exc} (model {network.name})", param_hint="--layer") from None
        values["layers"] = [str(spec) for spec in layers]
    return Settings.from_mapping({**values, "model": network.name}, base=settings)


@dataclass(frozen=True)
class Chosen:
    """A command's network, its merged settings and the preset they came from."""

    network: models.Network
    settings: Settings
    preset: preset_files.Preset | None

    @property
    def preset_name(self) -> str | None:
        return self.preset.name if self.preset else None


def chosen_settings(ctx: click.Context, params: dict[str, Any], fields: Sequence[str] = FIELDS) -> Chosen:
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

    def load(self, network: models.Network, options: Any) -> models.Loaded:
        from dreamcli.models.loading import load

        return load(network, weights=self.weights, device=options.device, progress=not self.quiet)

    def metadata(self, loaded: models.Loaded, options: Any, preset: str | None) -> dict[str, Any]:
        """What every output records besides its settings."""
        return {
            "version": __version__,
            "preset": preset,
            "model": loaded.label,
            "device": options.device,
            "precision": options.precision,
        }

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
    import os

    if raw is None:
        return None, False
    return Path(raw), raw.endswith(("/", os.sep))
