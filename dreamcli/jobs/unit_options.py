"""What ``dream units`` and ``dream explain`` are asked to make, with their defaults: torch-free,
so the CLI reads a flag's default from here (``cli.common.default_of``) for ``--help``.

One home for each default; the job modules (``units``, ``explain``) take these.
"""

from __future__ import annotations

from dataclasses import dataclass

from dreamcli.errors import SettingsError

PICTURE_PARAMS = ("fft", "maco")  # how a unit's or a cell's picture is made


def _whole(owner: str, name: str, value: object, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
        span = f"from {low} to {high}" if high else f"of at least {low}"
        raise SettingsError(f"{owner} {name}: expected a whole number {span}, got {value!r}")


@dataclass(frozen=True)
class UnitsOptions:
    """A unit site: which channels, how their pictures are made, how photos are scanned.

    Every value that changes a unit's pictures is in ``picture_key``: the cache of pictures
    is keyed by it (with the network, its weights and the layer).
    """

    channels: tuple[int, ...] | None = None  # None: the ``top`` channels the photos drive hardest
    top: int = 16
    photo_size: int = 224  # each photo's long side as the network sees it
    crops: bool = True  # also each photo's four corner crops (half its side), seen at photo_size
    examples: int = 6  # dataset examples per unit (at most one per photo or crop)
    example_share: float = 0.35  # an example's side, as a share of the long side of what it came from
    size: int = 128  # side of each unit picture, pixels
    # 192, not 256: 16 units at 128 px take 11 min of pictures at 256 steps on 2 quiet cores
    # (0.64 s a step for 4 units), over the 10 minutes asked; at 256 steps every one of 32 units of
    # Lite0's _blocks.10 beat its best example by 1.28x or more (benchmarks/README.md).
    steps: int = 192  # Adam steps of each picture (rounded up to a multiple of 8)
    diverse: int = 4  # diverse pictures per unit (0: none)
    # The diversity term's weight, relative to the unit's own activation (Olah et al. 2017's
    # Gram-matrix cosine between the batch's pictures).  Lite0, _blocks.10, units 0/28/56/84, the
    # mean Gram cosine between a unit's 4 pictures and their activation beside 4 seeds without the
    # term: 0.25 (192 steps): 0.48 against 0.92, activation 0.92-0.98 of theirs; 0.5 (256 steps):
    # 0.31, 0.85-0.95; 1.0: 0.16, 0.77-0.85 (the issue allows 10 % less; benchmarks/README.md).
    diversity: float = 0.25
    param: str = "fft"
    batch: int = 4  # units whose pictures are made together (1 + diverse + 1 pictures each)
    seed: int = 0

    def __post_init__(self) -> None:
        _whole("units", "top", self.top, 1, 4096)
        _whole("units", "photo_size", self.photo_size, 32, 4096)
        _whole("units", "examples", self.examples, 1, 64)
        _whole("units", "size", self.size, 32, 1024)
        _whole("units", "steps", self.steps, 1, 100_000)
        _whole("units", "diverse", self.diverse, 0, 16)
        _whole("units", "batch", self.batch, 1, 256)
        _whole("units", "seed", self.seed, 0)
        if self.diverse == 1:
            raise SettingsError("units diverse: diversity needs at least 2 pictures (or 0 for none)")
        if self.channels is not None and (not self.channels or min(self.channels) < 0):
            raise SettingsError(f"units channels: expected channel numbers from 0, got {self.channels!r}")
        if not 0.05 <= self.example_share <= 1:
            raise SettingsError(f"units example_share: expected 0.05 to 1, got {self.example_share}")
        if not self.diversity >= 0:
            raise SettingsError(f"units diversity: expected a weight of at least 0, got {self.diversity}")
        if self.param not in PICTURE_PARAMS:
            raise SettingsError(
                f"units param: expected one of {', '.join(PICTURE_PARAMS)}, got {self.param!r}"
            )

    @property
    def picture_key(self) -> dict[str, object]:
        return {
            "size": self.size,
            "steps": self.steps,
            "diverse": self.diverse,
            "diversity": self.diversity,
            "param": self.param,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class ExplainOptions:
    """The spatial activations of one photo: its grid, neuron groups and attribution."""

    photo_size: int = 224  # the photo's long side as the network sees it
    grid: int = 8  # cells a side at most (the layer's own positions when it has fewer)
    groups: int = 6  # neuron groups (a non-negative factorisation's rank)
    classes: int = 3  # top classes attributed to
    cell_size: int = 64  # side of each cell's and group's picture, pixels
    # Lite0, _blocks.10, 8 cells of chelsea.png, cosine of a cell picture's mean activation with
    # its target (median / min): per-position objective, power 2, 128 steps 0.67 / 0.28; pooled,
    # power 4, 128 steps 0.77 / 0.72; pooled, power 4, 256 steps 0.79 / 0.77 (benchmarks/README.md).
    steps: int = 256  # Adam steps of each picture (rounded up to a multiple of 8)
    power: float = 4.0  # the cosine's exponent in the direction objective (1: the atlas's)
    channels: int = 12  # strongest channels of the chosen cell, in its Hinton diagram
    cell: tuple[int, int] | None = None  # (row, col) of the chosen cell; None: the most attributed
    nmf_iterations: int = 300
    batch: int = 16  # pictures made together
    param: str = "fft"
    seed: int = 0

    def __post_init__(self) -> None:
        _whole("explain", "photo_size", self.photo_size, 32, 4096)
        _whole("explain", "grid", self.grid, 1, 64)
        _whole("explain", "groups", self.groups, 1, 64)
        _whole("explain", "classes", self.classes, 0, 20)
        _whole("explain", "cell_size", self.cell_size, 16, 512)
        _whole("explain", "steps", self.steps, 1, 100_000)
        _whole("explain", "channels", self.channels, 1, 256)
        _whole("explain", "nmf_iterations", self.nmf_iterations, 1, 100_000)
        _whole("explain", "batch", self.batch, 1, 256)
        _whole("explain", "seed", self.seed, 0)
        if not self.power >= 0:
            raise SettingsError(f"explain power: expected at least 0, got {self.power}")
        if self.cell is not None and (len(self.cell) != 2 or min(self.cell) < 0):
            raise SettingsError(f"explain cell: expected ROW,COL from 0, got {self.cell!r}")
        if self.param not in PICTURE_PARAMS:
            raise SettingsError(
                f"explain param: expected one of {', '.join(PICTURE_PARAMS)}, got {self.param!r}"
            )
