"""How to run a dream, as opposed to how it looks (``config.Settings``).

``RunOptions`` is what the engine reads: plain values only, no torch, cheap to
build and compare.  The run layer (``dreamcli.run.session``) builds one per job
from the user's device and precision (``engine.devices.run_options``), so that a
flag like ``--tile-size`` means the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from dreamcli.errors import SettingsError, brief

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# What --precision, the page and the Python API start from; engine.devices.choose_precision
# resolves it once per job (bf16 on CUDA and AMX CPUs, else fp32).
DEFAULT_PRECISION = "auto"
# The share of free device memory (or RAM) a dream may plan to use; the rest is left
# for the model, the images in flight and the rest of the system.
MEMORY_SHARE = 0.7


@dataclass(frozen=True)
class RunOptions:
    """How the engine computes; none of it changes what a dream looks like.

    ``precision`` is the autocast type of the network's forward pass (resolved:
    never ``auto`` once the run layer made it); ``tile_size`` forces tiled
    gradients; ``memory`` (bytes) lets the engine tile octaves that would not
    fit and refuse images that cannot fit even tiled; ``graphs`` allows CUDA
    graph recording where it applies.  The device is the model's: the engine
    computes wherever its model is.  ``RunOptions()`` itself is the engine's
    plain default (fp32, no budget) for callers that decide nothing.
    """

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
