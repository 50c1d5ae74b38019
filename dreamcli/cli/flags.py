"""The commands' option declarations: help sections, ranges written one way, the settings
flags from the shared schema (``config.FIELDS``), and the groups of flags commands share.

Each command declares only the options it uses, from the pieces here, so an option a
command does not take is Click's own usage error.  A flag, a preset key and a
``Settings`` field always have one name and one default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from dreamcli import __version__
from dreamcli.cli import complete
from dreamcli.config import FIELDS, LAYERS_HELP, Field, LayerSpec, Settings
from dreamcli.errors import SettingsError
from dreamcli.run_options import DEFAULT_PRECISION, PRECISIONS

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class SectionOption(click.Option):
    """An option that knows its help section and is named one way in errors (``--layer``)."""

    def __init__(self, *args: Any, section: str = "Other", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.section = section

    def get_error_hint(self, ctx: click.Context | None) -> str:
        return max(self.opts, key=len)


class Span(click.ParamType):
    """An int or float from ``low`` to ``high``, written and checked one way: ``1-20``."""

    def __init__(self, kind: type, low: float, high: float):
        self.kind, self.low, self.high = kind, low, high
        self.name = "integer" if kind is int else "number"

    @property
    def text(self) -> str:
        if self.kind is int:
            return f"{int(self.low)}-{int(self.high)}"
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
            path = ctx.command_path.replace("dream dream", "dream")  # the default command is 'dream'
            with formatter.section(f"More options ({path} --help-all explains them)"):
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
            default=DEFAULT_PRECISION,
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


def check_size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """``WxH`` -> (width, height), each 16-8192."""
    if value is None:
        return None
    width, x, height = value.lower().partition("x")
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    digits = x and width.isdecimal() and height.isdecimal() and len(width) < 6 and len(height) < 6
    if digits and 16 <= int(width) <= 8192 and 16 <= int(height) <= 8192:
        return int(width), int(height)
    raise click.BadParameter(f"{value[:40]!r}: write WIDTHxHEIGHT, each 16-8192, e.g. 512x512")


def dream_job_flags(sample: str | None = None) -> Decorator:
    """What every command that dreams with DeepDream's octave loop takes after its own flags:
    the settings, ``--sample`` (with this help) where it has a photo, skipping, quiet, the
    network and where it runs, ``--help-all``."""
    sample_flag = [flag("--sample", is_flag=True, help=sample)] if sample else []
    return together(dream_flags(), *sample_flag, job_flags(tile_flag()))


def job_flags(*more: Decorator) -> Decorator:
    """What every command that writes with a network takes last: skipping, quiet, the network
    and where it runs (and ``more`` of that), ``--help-all``."""
    return together(
        overwrite_flag(section="Other"), quiet_flag(section="Other"), model_flags(), *more, help_all_flag()
    )
