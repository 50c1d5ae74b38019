"""The ``dream ...`` command line that makes a tile's picture again, byte for byte in its pixels.

The CLI's settings are defaults < preset < typed flags (``run.recipe``), so the
line names the preset, then every setting that differs from what the preset
gives (each written as its flag: ``config.Field.flag``, the parser's own table),
and always the seed the server drew.  ``--weights``, ``--device`` and
``--precision`` appear when the server was started with them
(``run.session.Runtime.flags``): they change the pixels too.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence

from dreamcli import models
from dreamcli.config import FIELDS, Settings
from dreamcli.jobs.unit_options import ExplainOptions, UnitsOptions
from dreamcli.run.session import Runtime

# The settings a page may change, in the order of ``dream --help``: the CLI's flags of a dream.
EDITABLE = (
    "octaves",
    "octave_scale",
    "iterations",
    "step_size",
    "jitter",
    "max_size",
    "seed",
    "smooth",
    "lapnorm",
    "keep_colors",
)


def _value(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def flags(settings: Settings, base: Settings) -> list[str]:
    """The flags that turn ``base`` into ``settings``; the seed always."""
    out: list[str] = []
    if settings.layers != base.layers:
        for spec in settings.layers:
            out += ["--layer", str(spec)]
    for name in EDITABLE:
        value, before = getattr(settings, name), getattr(base, name)
        if value == before and name != "seed":
            continue
        flag = FIELDS[name].flag
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            out += [flag, _value(value)]
    return out


def command_line(
    settings: Settings,
    base: Settings,
    preset: str | None,
    photo: str | None,
    output: str,
    runtime: Runtime | None = None,
) -> list[str]:
    """``dream PHOTO [--preset NAME] [flags] -o OUTPUT`` as a list of words; ``photo`` None is
    the sample that ships with dreamcli (``--sample``)."""
    words = ["dream", _photo(photo) if photo is not None else "--sample"]
    if preset is not None:
        words += ["--preset", preset]
    if settings.model != models.DEFAULT:
        words += ["--model", settings.model]
    words += flags(settings, base)
    words += (runtime or Runtime()).flags()
    return [*words, "-o", output]


def _photo(photo: str) -> str:
    if photo.startswith("-") or "." not in photo:
        return f"./{photo}"  # not an option, nor a command's name (dream zoom)
    return photo


# The options of an explanation and of a unit the page may set: those ``dream explain`` and
# ``dream units`` take as flags (``--photo-size``...; ``crops`` is ``--no-crops``).
EXPLAIN_EDITABLE = ("grid", "groups", "classes", "steps", "cell_size", "photo_size", "param", "seed")
UNITS_EDITABLE = ("examples", "diverse", "size", "steps", "photo_size", "crops", "param", "seed")


def _option_flags(options: ExplainOptions | UnitsOptions, names: Sequence[str]) -> list[str]:
    """A flag for each option that differs from its default (the defaults are the CLI's)."""
    base = type(options)()
    out: list[str] = []
    for name in names:
        value = getattr(options, name)
        if value == getattr(base, name):
            continue
        if isinstance(value, bool):
            out.append(f"--{name.replace('_', '-')}" if value else f"--no-{name.replace('_', '-')}")
        else:
            out += [f"--{name.replace('_', '-')}", _value(value)]
    return out


def explain_line(
    options: ExplainOptions, layer: str, photo: str, output: str, model: str, runtime: Runtime | None = None
) -> list[str]:
    """``dream explain PHOTO --layer L [flags] -o OUTPUT``: the poster the page's explanation wrote."""
    words = ["dream", "explain", _photo(photo), "--layer", layer]
    if model != models.DEFAULT:
        words += ["--model", model]
    words += _option_flags(options, EXPLAIN_EDITABLE)
    return [*words, *(runtime or Runtime()).flags(), "-o", output]


def units_line(
    options: UnitsOptions,
    layer: str,
    photos: Sequence[str],
    output: str,
    model: str,
    runtime: Runtime | None = None,
) -> list[str]:
    """``dream units PHOTOS... --layer 'L[C]' [flags] -o FOLDER``: the unit's page, from the same photos."""
    channels = ",".join(str(c) for c in options.channels or ())
    words = ["dream", "units", *(_photo(p) for p in photos), "--layer", f"{layer}[{channels}]"]
    if model != models.DEFAULT:
        words += ["--model", model]
    words += _option_flags(dataclasses.replace(options, channels=None), UNITS_EDITABLE)
    return [*words, *(runtime or Runtime()).flags(), "-o", output]


def shown(words: list[str]) -> str:
    """The words as one line to paste into a shell."""
    return " ".join(shlex.quote(word) for word in words)
