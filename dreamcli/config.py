"""The dream settings: one schema, with defaults and ranges, used by presets and the CLI.

A key has the same name everywhere: the ``--octave-scale`` flag, the
``octave_scale`` preset key and ``Settings.octave_scale``.  Unknown keys are
rejected (minGPT's config style) so that a typo in a preset never passes silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dreamcli.errors import SettingsError, brief

LAYER_SYNTAX = (
    "NAME[CHANNELS][:WEIGHT], e.g. inception_4c, inception_3b:0.5, inception_4c[0-7,12]:2, x[strong:8]"
)
# How channels may be chosen per photo, by their mean activation on it at the first octave:
# the strongest, the weakest, or those nearest the layer's average (neural-dream's -channel_mode).
PICKS = ("strong", "weak", "avg")

# No network has more channels in a layer; a larger index is a typo (or hostile).
MAX_CHANNEL = 65535

_LAYER_RE = re.compile(
    r"^(?P<name>[^\[\]:\s]+)"
    r"(?:\[(?:(?P<pick>[a-z]+):(?P<count>\d{1,6})|(?P<channels>[0-9,\-\s]+))\])?"
    r"(?::(?P<weight>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))?$"
)


def refuse_picks(layers: Sequence[LayerSpec], here: str) -> None:
    """Refuse channels chosen by strength where no photo chooses them (a feature picture, a
    sheet, a zoom): one line naming the layer, before any work or output."""
    for spec in layers:
        if spec.pick is not None:
            how, count = spec.pick
            raise SettingsError(
                f"layer {spec.name}[{how}:{count}]: channels chosen by strength are chosen per photo "
                f"by the default command (dream PHOTO); {here} takes channel numbers, e.g. [0-7]",
                key="layers",
            )


@dataclass(frozen=True)
class LayerSpec:
    """One term of the objective: a layer, its weight, and optionally some channels.

    ``pick`` (``("strong", 8)``) asks for channels chosen per photo; they are chosen
    before the dream (``engine.choosing``) and written as ``channels`` in its place.
    """

    name: str
    weight: float = 1.0
    channels: tuple[int, ...] | None = None
    pick: tuple[str, int] | None = None

    @classmethod
    def parse(cls, text: str) -> LayerSpec:
        """Parse ``NAME[CHANNELS][:WEIGHT]``; channels are a list of indices and ranges."""
        match = _LAYER_RE.match(str(text).strip())
        if not match:
            _refuse_mixed_pick(str(text))
            raise SettingsError(f"layer {brief(text)} is not valid: write {LAYER_SYNTAX}")
        weight = float(match["weight"]) if match["weight"] is not None else 1.0
        if weight == 0 or not math.isfinite(weight):
            raise SettingsError(f"layer {brief(text)}: the weight must be a non-zero number")
        channels = _parse_channels(match["channels"], text) if match["channels"] else None
        return cls(match["name"], weight, channels, _parse_pick(match["pick"], match["count"], text))

    def with_name(self, name: str) -> LayerSpec:
        return dataclasses.replace(self, name=name)

    def __str__(self) -> str:
        text = self.name
        if self.channels is not None:
            text += "[" + ",".join(str(c) for c in self.channels) + "]"
        elif self.pick is not None:
            text += f"[{self.pick[0]}:{self.pick[1]}]"
        if self.weight != 1.0:
            text += f":{self.weight:g}"
        return text


# A layer's brackets, whatever they hold, and a pick in them (``strong:4``).
_BRACKETS_RE = re.compile(r"^[^\[\]:\s]+\[(?P<inside>[^\[\]]*)\]")
_PICK_RE = re.compile(r"[a-z]+\s*:\s*\d+", re.IGNORECASE)


def _refuse_mixed_pick(text: str) -> None:
    """A pick is a whole choice (the N channels the photo drives most, least, or nearest the mean),
    so it cannot share its brackets with channel numbers or a second pick: say so, not the syntax."""
    brackets = _BRACKETS_RE.match(text.strip())
    inside = brackets["inside"] if brackets else ""
    if _PICK_RE.search(inside) and not _PICK_RE.fullmatch(inside.strip()):
        picks = [f"[{how}:N]" for how in PICKS]
        raise SettingsError(
            f"layer {brief(text)}: a pick cannot be mixed with other channels; write "
            f"{', '.join(picks[:-1])} or {picks[-1]} alone in the brackets, or a channel list like [0-7,12]"
        )


def _parse_pick(mode: str | None, count: str | None, whole: str) -> tuple[str, int] | None:
    if mode is None or count is None:
        return None
    if mode not in PICKS:
        close = difflib.get_close_matches(mode, PICKS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise SettingsError(
            f"layer {brief(whole)}: {hint}channels are chosen by {', '.join(PICKS)}, as [strong:8]"
        )
    if not 1 <= int(count) <= MAX_CHANNEL:
        raise SettingsError(f"layer {brief(whole)}: choose 1 to {MAX_CHANNEL} channels, as [strong:8]")
    return mode, int(count)


def _parse_channels(text: str, whole: str) -> tuple[int, ...]:
    channels: list[int] = []
    for part in text.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise SettingsError(f"layer {brief(whole)}: channels are indices or ranges like [0-7,12]")
        # Checked before any list is made: [0-99999999999] would fill the memory first.
        if len(low) > 6 or len(high) > 6 or max(int(low), int(high or 0)) > MAX_CHANNEL:
            raise SettingsError(f"layer {brief(whole)}: channel {brief(part)} is over {MAX_CHANNEL}")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise SettingsError(f"layer {brief(whole)}: channel range {brief(part)} runs backwards")
        if len(channels) + last - first >= MAX_CHANNEL + 1:
            raise SettingsError(f"layer {brief(whole)}: more than {MAX_CHANNEL + 1} channels listed")
        channels.extend(range(first, last + 1))
    return tuple(dict.fromkeys(channels))


@dataclass(frozen=True)
class Field:
    """A setting's type, range and help text."""

    name: str
    kind: type
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: the value must be strictly above ``low``
    optional: bool = False  # True: None is allowed (meaning "not set")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """The range, written as every range in dreamcli is: ``1-20``."""
        if self.kind is bool:
            return "true or false"
        span = f"{self.low:g}-{self.high:.10g}"
        return f"{span}, above {self.low:g}" if self.low_open else span

    def check(self, value: Any) -> Any:
        """Return ``value`` converted to this field's type, or raise SettingsError."""
        if value is None and self.optional:
            return None
        if self.kind is bool:
            if not isinstance(value, bool):
                raise SettingsError(f"{self.name}: expected {self.allowed()}, got {brief(value)}")
            return value
        ok_type = int if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type):
            kind = "a whole number" if self.kind is int else "a number"
            raise SettingsError(f"{self.name}: expected {kind} ({self.allowed()}), got {brief(value)}")
        try:
            value = self.kind(value)
        except OverflowError:  # an integer too large for a float: out of any range
            shown = brief(value)
            raise SettingsError(f"{self.name}: {shown} is out of range; use {self.allowed()}") from None
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and value > self.high
        if too_low or too_high or (self.kind is float and not math.isfinite(value)):
            # An int as written (a seed of 4294967296 is not "4.29497e+09"); a float as %g.
            shown = (
                f"{value:g}" if self.kind is float else str(value) if abs(value) < 10**15 else brief(value)
            )
            raise SettingsError(f"{self.name}: {shown} is out of range; use {self.allowed()}")
        return value


# The numeric settings.  Defaults are Google's 2015 DeepDream notebook values
# (octave_n=4, octave_scale=1.4, iter_n=10, step_size=1.5, jitter=32); the upper
# bounds only stop values that could never finish or that are surely typos.
FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("octaves", int, "Number of scales to dream at, smallest first.", 1, 20),
        Field("octave_scale", float, "Size ratio between octaves.", 1.0, 4.0, low_open=True),
        Field("iterations", int, "Gradient-ascent steps per octave.", 0, 10_000),
        Field(
            "step_size",
            float,
            "Step length in 0-255 pixel units, divided by the mean absolute gradient.",
            0.0,
            100.0,
            low_open=True,
        ),
        Field("jitter", int, "Largest random shift in pixels before each step.", 0, 4096),
        Field(
            "max_size",
            int,
            "Shrink the image so its long side is at most this many pixels.",
            16,
            65_536,
            optional=True,
        ),
        Field("seed", int, "Random seed; the same seed gives the same picture.", 0, 2**32 - 1, optional=True),
        Field(
            "smooth",
            float,
            "Blur the gradient with Gaussians of this sigma (px), growing over an octave's steps; 0 is off.",
            0.0,
            16.0,
        ),
        Field("lapnorm", bool, "Normalise each band of the gradient's Laplacian pyramid (TF tutorial)."),
        Field("keep_colors", bool, "Dream on luminance only, so the photo keeps its colours."),
    )
}
# Keys that pictures and saved presets of earlier versions hold but that no longer set anything,
# and what does that work now: read and dropped, so that ``--preset old.png`` and a saved
# ``--show-settings`` still work; a preset file that holds one gets a note (``presets.load``).
# (``param`` was validated and recorded but never read; ``dream features --param`` is the real one.)
RETIRED: Mapping[str, str] = {"param": "dream features --param"}
# The seed of a job whose parts must agree and be the same on every run without --seed: every
# frame of an animation, feature pictures, an atlas (``Settings.seeded(steady=True)``).
STEADY_SEED = 0
LAYERS_HELP = f"Layer to dream on; repeat for several. Syntax: {LAYER_SYNTAX}."


@dataclass(frozen=True)
class Settings:
    """Everything that decides how a dream looks, the network included (``dreamcli.models``).

    ``layers`` empty (the default) means the network's default layer: the network decides it
    (``Network.default_layer``), and ``Network.settings`` / ``Loaded.resolved`` fill it in.
    """

    model: str = "googlenet"
    layers: tuple[LayerSpec, ...] = ()
    octaves: int = 4
    octave_scale: float = 1.4
    iterations: int = 10
    step_size: float = 1.5
    jitter: int = 32
    max_size: int | None = None
    seed: int | None = None
    smooth: float = 0.0
    lapnorm: bool = False
    keep_colors: bool = False
    mask: str | None = None  # a greyscale picture's path: dream only where it is white
    mask_invert: bool = False  # dream where the mask is black instead
    accentuate: float | None = None  # accentuate instead of dreaming, with this pull toward the photo

    def __post_init__(self) -> None:
        for name, field in FIELDS.items():
            object.__setattr__(self, name, field.check(getattr(self, name)))
        if not isinstance(self.model, str) or not re.fullmatch(
            r"(?:(?:torchvision|timm):)?[a-z0-9_][a-z0-9_.-]*", self.model
        ):
            raise SettingsError(f"model: expected a network's name like googlenet, got {brief(self.model)}")
        if isinstance(self.layers, str) or not isinstance(self.layers, (tuple, list)):
            raise SettingsError(f"layers: expected a list of layers like {LAYER_SYNTAX}")
        layers = tuple(spec if isinstance(spec, LayerSpec) else LayerSpec.parse(spec) for spec in self.layers)
        object.__setattr__(self, "layers", layers)
        _check_mask(self.mask, self.mask_invert)
        _check_pull(self.accentuate)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: Settings | None = None) -> Settings:
        """Settings from a dict (a preset, saved metadata): unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = {key: value for key, value in data.items() if key not in RETIRED}
        for key in data:
            if key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1)
                did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise SettingsError(
                    f"unknown key {brief(key)}{did_you_mean}; known keys: {', '.join(sorted(known))}"
                )
        values = dict(data)
        if "layers" in values:
            values["layers"] = layers_from(values["layers"])
        return dataclasses.replace(base or cls(), **values)

    def resolved(self, resolve: Callable[[str], str]) -> Settings:
        """The same settings with each layer name mapped by ``resolve`` (user name -> module name)."""
        return dataclasses.replace(
            self, layers=tuple(spec.with_name(resolve(spec.name)) for spec in self.layers)
        )

    def seeded(self, steady: bool = False) -> Settings:
        """These settings with a seed, so that the metadata reproduces the picture: the seed
        given; else, for a ``steady`` job (one whose parts must agree and be the same on every
        run: animation frames, feature pictures, atlases), ``STEADY_SEED``; else a random one.

        The one place where a missing seed is decided; the engine draws none."""
        if self.seed is not None:
            return self
        seed = STEADY_SEED if steady else random.randrange(2**32)
        return dataclasses.replace(self, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so that the result can be written as YAML or JSON."""
        out = dataclasses.asdict(self)
        out["layers"] = [str(spec) for spec in self.layers]
        if self.mask is None and not self.mask_invert:  # pictures without a mask record as before
            del out["mask"], out["mask_invert"]
        if self.accentuate is None:
            del out["accentuate"]
        return out


# The longest mask path taken (from a flag, a preset or a picture's metadata): PATH_MAX.
MAX_MASK_PATH = 4096


# The default pull toward the photo of ``--accentuate``, measured on Lite0 and chelsea.png toward three
# classes under 1 % (benchmarks/README.md, "Dreams that stay photos", 80 steps): 10 reaches top-1 for all
# three and moves the photo 11.5-14.7 (mean abs, 0-255; SSIM 0.46-0.54) where a plain DeepDream moves it
# 14.7-14.9 (SSIM 0.43-0.44); 1.0 moved it 42-47 (SSIM 0.14), 3 moved it 27.0 (SSIM 0.25).
PULL = 10.0
# The largest pull toward the photo: at 1000 a grey level of change costs 1000 logits; nothing moves.
MAX_PULL = 1000.0


def _check_pull(pull: Any) -> None:
    if pull is None:
        return
    if isinstance(pull, bool) or not isinstance(pull, (int, float)) or not 0 <= pull <= MAX_PULL:
        raise SettingsError(
            f"accentuate: expected a pull toward the photo, 0-{MAX_PULL:g}, got {brief(pull)}"
        )


def _check_mask(mask: Any, invert: Any) -> None:
    if mask is not None and (
        not isinstance(mask, str) or not mask or len(mask) > MAX_MASK_PATH or "\0" in mask
    ):
        raise SettingsError(f"mask: expected the path of a greyscale picture, got {brief(mask)}")
    if not isinstance(invert, bool):
        raise SettingsError(f"mask_invert: expected true or false, got {brief(invert)}")


def layers_from(value: Any) -> tuple[LayerSpec, ...]:
    """Layers read from outside (a preset, a picture, the page): a string or a list of strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, LayerSpec)) for v in value):
        raise SettingsError(f"layers: expected a list of strings like {LAYER_SYNTAX}")
    if not value:
        raise SettingsError("layers: give at least one layer")
    return tuple(v if isinstance(v, LayerSpec) else LayerSpec.parse(v) for v in value)
