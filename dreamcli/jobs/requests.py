"""What each job is asked to make, with its defaults: torch-free, so the CLI reads a flag's
default from here (``cli.common.default_of``) without loading torch for ``--help``.

One frozen dataclass per job; the job modules (``sheets``, ``animations``,
``features``, ``atlas``) take them and do the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamcli.config import LayerSpec, Settings
from dreamcli.errors import SettingsError

METHODS = ("umap", "tsne", "pca")  # an atlas's layouts
PARAMS = ("fft", "maco", "pixel")  # how a feature picture is made


@dataclass(frozen=True)
class SheetRequest:
    """A contact sheet of one photo: one dream per variant (layers or presets), or one per
    channel of a layer (``channels``).  The defaults are the ``dream sheet`` flags' defaults."""

    photo: Path
    settings: Settings
    output: Path
    variants: tuple[tuple[str, Settings], ...] = ()
    channels: LayerSpec | None = None
    tile_width: int = 320  # pixels of each picture on the sheet (channel grids: half)
    columns: int = 8  # channel grids: pictures a row
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ZoomRequest:
    """An infinite zoom; the defaults are ``dream zoom``'s flags' defaults."""

    settings: Settings
    output: Path
    photo: Path | None = None  # None: from the notebook's near-grey noise of ``size``
    frames: int = 60
    scale: float = 1.05  # per frame: 1.05 = 5 % closer
    rotate: float = 0.0  # degrees per frame
    pan: tuple[float, float] = (0.0, 0.0)  # pixels per frame
    fps: float = 12.0
    size: tuple[int, int] = (512, 512)  # (width, height) of a zoom from noise
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class VideoRequest:
    """A dreamed video; the defaults are ``dream video``'s flags' defaults."""

    settings: Settings
    source: Path
    output: Path
    blend: float = 0.5  # how much of the previous frame's dream carries into the next
    flow: bool = False  # move the carried dream along the optical flow
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureRequest:
    """A feature picture (or a sheet of them, ``each``); the defaults are ``dream features``'s."""

    settings: Settings
    output: Path
    size: tuple[int, int] | None = None  # (width, height); default 512x512, 224x224 per sheet tile
    param: str = "fft"
    each: bool = False
    alpha: bool = False  # also write the transparency map, <stem>_alpha.png (naming.alpha_path)
    metadata: dict[str, Any] = field(default_factory=dict)
    like: Path | None = None  # a photo: match its activations at the layer (inversion) ...
    caricature: bool = False  # ... or exaggerate them

    @property
    def picture_size(self) -> tuple[int, int]:
        return self.size or ((224, 224) if self.each else (512, 512))


@dataclass(frozen=True)
class AtlasOptions:
    """How an atlas is made.  Every stage is seeded by ``seed``: the same options give the same atlas."""

    grid: int = 20  # cells a side
    cell_size: int = 64  # pixels a side of each cell's picture
    size: int = 256  # each photo's long side, in pixels, as the network sees it
    samples_per_image: int = 32  # spatial positions kept per photo
    max_samples: int = 100_000  # at most this many in all (a seeded reservoir)
    method: str = "umap"  # umap, tsne or pca
    min_count: int = 3  # cells with fewer samples stay empty
    steps: int = 128  # Adam steps of each cell's feature picture (rounded up to a multiple of 8)
    step_size: float = 1.5  # featurevis's rate scale (1.5 = Lucid's 0.05)
    power: float = 1.0  # the exponent of the cosine in the direction objective
    batch: int = 16  # cells drawn together
    labels: bool = False  # write each cell's top class under it (networks with a classifier)
    photos_per_cell: int = 8  # photos listed per cell in the JSON
    seed: int = 0
    compare: tuple[str, str] | None = None  # two classes: each cell's attribution toward each

    def __post_init__(self) -> None:
        if self.compare is not None and (len(self.compare) != 2 or len(set(self.compare)) != 2):
            raise SettingsError(f"atlas compare: expected two different classes, got {self.compare!r}")
        if self.method not in METHODS:
            raise SettingsError(f"atlas method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        for name, low in (
            ("grid", 1),
            ("cell_size", 16),
            ("size", 16),
            ("samples_per_image", 1),
            ("max_samples", 2),
            ("min_count", 1),
            ("steps", 1),
            ("batch", 1),
            ("photos_per_cell", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SettingsError(f"atlas {name}: expected a whole number of at least {low}, got {value!r}")
        if not (self.step_size > 0 and self.power >= 0):
            raise SettingsError("atlas step_size must be above 0 and power at least 0")


@dataclass(frozen=True)
class PatchOptions:
    """How an adversarial patch is tested (``dream patch test``) and made (``dream patch make``).

    Placements: the patch is a square of ``area`` (a share of the photo's area, uniform in the
    range), turned by up to ±``rotate`` degrees, anywhere wholly inside the photo; each photo is
    seen as a ``size``-pixel square (its short side scaled to ``size``, then centre-cropped).
    The defaults are the flags' defaults; ``make`` has its own area default (``MAKE_AREA``).
    """

    target: str = ""  # the class name or index the patch should make the network say
    size: int = 224  # each photo's side as the network sees it
    area: tuple[float, float] = (0.05, 0.25)  # the patch's share of the photo's area
    rotate: float = 22.5  # degrees either way
    placements: int = 16  # placements per photo (test, and the held-out report of make)
    seed: int = 0
    # make only
    steps: int = 300  # Adam steps
    batch: int = 16  # photos (each with its own placement) per step
    rate: float = 0.03  # Adam's learning rate on the patch's pixels in [0, 1]
    holdout: float = 0.25  # share of the photos kept out of training, for the report
    side: int = 0  # the patch's own side in pixels; 0: as large as it is ever drawn

    def __post_init__(self) -> None:
        low, high = self.area
        if not 0 < low <= high <= 0.5:
            raise SettingsError(f"patch area: expected shares with 0 < MIN <= MAX <= 0.5, got {low}-{high}")
        if not 0 <= self.rotate <= 180:
            raise SettingsError(f"patch rotate: expected 0 to 180 degrees, got {self.rotate}")
        if not 0 <= self.holdout < 1:
            raise SettingsError(f"patch holdout: expected a share from 0 to below 1, got {self.holdout}")
        for name, low_value in (("size", 32), ("placements", 1), ("steps", 1), ("batch", 1), ("side", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low_value:
                raise SettingsError(
                    f"patch {name}: expected a whole number of at least {low_value}, got {value!r}"
                )
        if not self.rate > 0:
            raise SettingsError(f"patch rate: expected a number above 0, got {self.rate}")


MAKE_AREA = (0.04, 0.10)  # dream patch make's default area: at most 10 % of the photo
