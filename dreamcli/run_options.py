"""How to run a dream, as opposed to how it looks (``config.Settings``).

The CLI builds one ``RunOptions`` (``dreamcli.engine.devices.run_options``) and hands
it to every mode: single images, batches, sweeps, grids, zooms and videos, so
that a flag like ``--tile-size`` means the same everywhere.  Plain values
only, no torch: it is cheap to build, to compare and to send to another process.
"""

from __future__ import annotations

from dataclasses import dataclass

from dreamcli.errors import SettingsError, brief

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The share of free device memory (or RAM) a dream may plan to use; the rest is left
# for the model, the images in flight and the rest of the system.
MEMORY_SHARE = 0.7


@dataclass(frozen=True)
class RunOptions:
    """Where and how the engine computes; none of it changes what a dream looks like.

    ``device`` is where ``models.loading.load`` puts the model, and so where
    the engine computes (``dream()`` computes on its model's device, wherever
    that is); ``precision`` is the autocast type of the network's
    forward pass (``auto`` picks per device); ``tile_size`` forces tiled
    gradients; ``memory`` (bytes) lets the engine tile octaves that would not
    fit and refuse images that cannot fit even tiled; ``graphs`` allows CUDA
    graph recording where it applies.
    """

    device: str = "cpu"
    precision: str = "fp32"
    tile_size: int | None = None
    memory: float | None = None
    graphs: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SettingsError(
                f"precision {brief(self.precision)} is unknown; use one of {', '.join(PRECISIONS)}"
            )
        if self.tile_size is not None and self.tile_size < 32:
            raise SettingsError(f"tile size {self.tile_size} is too small; use 32 or more")
        if self.memory is not None and self.memory < 0:
            raise SettingsError(f"memory budget {brief(self.memory)} must be a number of bytes, 0 or more")
