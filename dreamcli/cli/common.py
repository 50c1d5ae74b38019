"""What the commands share: their request for the run layer (``dreamcli.run``) made from the
flags, the run layer's errors as Click's, the one-line "Skipped" and "Wrote" messages; and (from
``flags``) the option declarations, so that a command module needs only ``from dreamcli.cli import common``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from dreamcli import models
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
from dreamcli.config import FIELDS, LayerSpec
from dreamcli.errors import SettingsError
from dreamcli.events import ignore
from dreamcli.run import recipe as run_recipe
from dreamcli.run.recipe import Recipe, Resolved
from dreamcli.run.session import Runtime, Session
from dreamcli.run_options import DEFAULT_PRECISION

# ---------------------------------------------------------------------------------------------
# The request: defaults < preset < the flags typed (merged by the run layer, run.recipe)


def typed(ctx: click.Context, name: str) -> bool:
    """True when the user gave the flag: a flag left at its default must not undo a preset."""
    return ctx.get_parameter_source(name) not in (
        None,
        ParameterSource.DEFAULT,
        ParameterSource.DEFAULT_MAP,
    )


# The flag of each key a SettingsError may name, where it is not the settings field's own.
FLAGS = {
    "model": "--model",
    "layers": "--layer",
    "classes": "--class",
    "preset": "--preset",
    "mask": "--mask",
    "mask_invert": "--mask-invert",
    "accentuate": "--accentuate",
    "pull": "--pull",
}


@contextlib.contextmanager
def as_flags() -> Iterator[None]:
    """A SettingsError that names its key becomes Click's error naming the flag."""
    try:
        yield
    except SettingsError as exc:
        if exc.key is None:
            raise
        flag_name = (
            FLAGS.get(exc.key) or FIELDS[exc.key].flag if exc.key in FLAGS or exc.key in FIELDS else None
        )
        if flag_name is None:
            raise
        raise click.BadParameter(str(exc), param_hint=flag_name) from None


def recipe(
    ctx: click.Context, params: dict[str, Any], fields: Sequence[str] = tuple(FIELDS), **more: Any
) -> Recipe:
    """What this command was asked: its preset, model, layers, classes and the settings flags typed."""
    values = {name: params[name] for name in fields if name in params and typed(ctx, name)}
    classes = params.get("classes")  # --class NAME, repeated: a tuple (explain's --classes is a count)
    found = {
        "model": params.get("model"),
        "preset": params.get("preset"),
        "values": values,
        "layers": tuple(params.get("layers") or ()),
        "classes": tuple(classes) if isinstance(classes, (tuple, list)) else (),
        "folders": tuple(complete.user_preset_folders()),
        "mask": str(params["mask"]) if params.get("mask") is not None else None,
        "mask_invert": bool(params.get("mask_invert")),
        "accentuate": bool(params.get("accentuate")),
        "pull": params.get("pull"),
    }
    return Recipe(**{**found, **more})


def chosen_settings(
    ctx: click.Context, params: dict[str, Any], fields: Sequence[str] = tuple(FIELDS)
) -> Resolved:
    """The settings of this command: the preset (``--preset``), then the settings flags typed."""
    with as_flags():
        resolved = recipe(ctx, params, fields).resolve()
    say_notes(resolved.preset, params)
    return resolved


def say_notes(preset: preset_files.Preset | None, params: dict[str, Any]) -> None:
    """A preset file's notes (a retired key it holds), as Note: lines on stderr, unless --quiet."""
    if preset is not None and not params.get("quiet"):
        for note in preset.notes:
            click.echo(f"Note: {note}", err=True)


def network_for(model: str | None) -> models.Network:
    """The --model typed, else the default."""
    with as_flags():
        return Recipe(model=model).network()


def check_layer(network: models.Network, spec: LayerSpec, flag_name: str = "--layer") -> None:
    """``spec`` against the network, as Click's error for ``flag_name``."""
    try:
        run_recipe.check_layer(network, spec)
    except SettingsError as exc:
        raise click.BadParameter(str(exc), param_hint=flag_name) from None


# ---------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class Machine:
    """The CLI's side of a run: the ``Runtime`` its flags ask for, and ``--quiet``."""

    runtime: Runtime = field(default_factory=Runtime)
    quiet: bool = False

    @classmethod
    def of(cls, params: dict[str, Any]) -> Machine:
        weights = params.get("weights")
        runtime = Runtime(
            device=params.get("device", "auto"),
            precision=params.get("precision") or DEFAULT_PRECISION,
            tile_size=params.get("tile_size"),
            weights=str(weights) if weights is not None else None,
        )
        return cls(runtime, params.get("quiet", False))

    def check_device(self) -> None:
        self.runtime.check_device()

    def open(self, network: models.Network, reproducible: bool = True, report: Any = None) -> Session:
        """The command's session: the device checked, precision resolved, the network loaded;
        ``report`` (a Display) shows a status line meanwhile."""
        return self.runtime.open(
            network, reproducible=reproducible, progress=not self.quiet, report=report or ignore
        )

    def work(self, chosen: Resolved, job: Callable[..., Any], many: bool = False) -> Any:
        """A one-output command's work: the display, the session opened, then
        ``job(loaded, options, metadata, display)``, whose result is returned."""
        with self.display(many=many) as display:
            session = self.open(chosen.network, reproducible=chosen.reproducible, report=display)
            return job(session.loaded, session.options, session.metadata(chosen.preset_name), display)

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
