"""The ``dream ...`` command line that makes a tile's picture again, byte for byte in its pixels.

The CLI's settings are defaults < preset < typed flags (``cli.common.merge``),
so the line names the preset, then every setting that differs from what the
preset gives, and always the seed the server drew.  ``--weights``, ``--device``
and ``--precision`` appear when the server was started with them: they change
the pixels too.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from dreamcli import models
from dreamcli.config import LayerSpec, Settings

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


@dataclass(frozen=True)
class Machine:
    """What the server was started with that the command line must repeat."""

    model: str = models.DEFAULT
    weights: str | None = None
    device: str = "auto"
    precision: str = "auto"


def base_settings(network: models.Network, preset_values: dict | None) -> Settings:
    """What the CLI starts from before its flags: the network's default layer, then the preset."""
    base = Settings(model=network.name, layers=(LayerSpec.parse(network.default_layer),))
    return Settings.from_mapping(preset_values, base) if preset_values else base


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
        flag = "--" + name.replace("_", "-")
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
    machine: Machine = Machine(),
) -> list[str]:
    """``dream PHOTO [--preset NAME] [flags] -o OUTPUT`` as a list of words; ``photo`` None is
    the sample that ships with dreamcli (``--sample``)."""
    if photo is not None and (photo.startswith("-") or "." not in photo):
        photo = f"./{photo}"  # not an option, nor a command's name (dream zoom)
    words = ["dream", photo if photo is not None else "--sample"]
    if preset is not None:
        words += ["--preset", preset]
    if machine.model != models.DEFAULT:
        words += ["--model", machine.model]
    words += flags(settings, base)
    if machine.weights is not None:
        words += ["--weights", machine.weights]
    if machine.device != "auto":
        words += ["--device", machine.device]
    if machine.precision != "auto":
        words += ["--precision", machine.precision]
    return [*words, "-o", output]


def shown(words: list[str]) -> str:
    """The words as one line to paste into a shell."""
    return " ".join(shlex.quote(word) for word in words)


def download_name(photo: str, label: str, seed: int | None) -> str:
    """``coffee_eyes_123.png``: the photo's stem, the tile's style and its seed."""
    stem = Path(photo).stem or "photo"
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{stem}_{label}").lstrip("-.")
    return f"{safe[:80]}_{seed}.png"
