"""The ``dream ...`` command line that makes a tile's picture again, byte for byte in its pixels.

The CLI's settings are defaults < preset < typed flags (``run.recipe``), so the
line names the preset, then every setting that differs from what the preset
gives (each written as its flag: ``config.Field.flag``, the parser's own table),
and always the seed the server drew.  ``--weights``, ``--device`` and
``--precision`` appear when the server was started with them
(``run.session.Runtime.flags``): they change the pixels too.
"""

from __future__ import annotations

import shlex

from dreamcli import models
from dreamcli.config import FIELDS, Settings
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
    if photo is not None and (photo.startswith("-") or "." not in photo):
        photo = f"./{photo}"  # not an option, nor a command's name (dream zoom)
    words = ["dream", photo if photo is not None else "--sample"]
    if preset is not None:
        words += ["--preset", preset]
    if settings.model != models.DEFAULT:
        words += ["--model", settings.model]
    words += flags(settings, base)
    words += (runtime or Runtime()).flags()
    return [*words, "-o", output]


def shown(words: list[str]) -> str:
    """The words as one line to paste into a shell."""
    return " ".join(shlex.quote(word) for word in words)
