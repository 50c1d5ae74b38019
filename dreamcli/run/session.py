"""Where a job runs, and the network loaded there: ``Runtime`` opens a ``Session``.

``Runtime`` is what the user said about the machine (device, precision, tile
size, weights): frozen plain values, no torch, so the CLI builds it from flags,
the page's server keeps it, and a Ray worker gets it as a dict.  ``open`` checks
the device, resolves ``auto`` precision once (``engine.devices``), measures the
memory and loads the network: a ``Session``, which every job of a command shares.
The session knows what each output records besides its settings (``metadata``)
and dreams files (``dream_files``): the one per-picture pipeline
(``jobs.batch.Batch``) of the CLI, the page and the Ray workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamcli import __version__, models
from dreamcli.config import Settings
from dreamcli.errors import SettingsError, brief
from dreamcli.events import Report, Summary, ignore
from dreamcli.jobs.inputs import Job
from dreamcli.run_options import DEFAULT_PRECISION, PRECISIONS, RunOptions


@dataclass(frozen=True)
class Runtime:
    """Where and how jobs compute, as asked: ``--device``, ``--precision``, ``--tile-size``,
    ``--weights`` (a local state dict instead of the download).  None of it changes the look,
    except precision in the last bits (the page's command line repeats all of it)."""

    device: str = "auto"
    precision: str = DEFAULT_PRECISION
    tile_size: int | None = None
    weights: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SettingsError(
                f"precision {brief(self.precision)} is unknown; use one of {', '.join(PRECISIONS)}",
                key="precision",
            )

    def check_device(self) -> None:
        """Refuse a device this machine lacks, before anything else is said (cheap for auto and cpu)."""
        if self.device.strip().lower() not in ("auto", "cpu"):
            from dreamcli.engine.devices import select_device

            select_device(self.device)

    def options(self, reproducible: bool = True) -> tuple[str, RunOptions]:
        """The device (checked) and the run options of a job on it."""
        from dreamcli.engine.devices import run_options, select_device

        device = select_device(self.device)
        return str(device), run_options(device, self.precision, self.tile_size, reproducible=reproducible)

    def open(
        self,
        network: models.Network,
        *,
        reproducible: bool = True,
        progress: bool = True,
        report: Report = ignore,
    ) -> Session:
        """``network`` loaded on the device, with its run options: the session of a command;
        ``report`` hears ``Loading`` first (the CLI shows it while the seconds pass)."""
        from dreamcli.models.loading import load

        device, options = self.options(reproducible)
        loaded = load(network, weights=self.weights, device=device, progress=progress, report=report)
        return Session(self, loaded, device, options)

    def flags(self) -> list[str]:
        """The flags that ask for this runtime again (a command line that remakes a picture)."""
        words: list[str] = []
        if self.weights is not None:
            words += ["--weights", self.weights]
        if self.device != "auto":
            words += ["--device", self.device]
        if self.precision != DEFAULT_PRECISION:
            words += ["--precision", self.precision]
        if self.tile_size is not None:
            words += ["--tile-size", str(self.tile_size)]
        return words


@dataclass(frozen=True)
class Session:
    """A network loaded on a device, with the run options every job of a command shares."""

    runtime: Runtime
    loaded: models.Loaded
    device: str
    options: RunOptions

    @property
    def network(self) -> models.Network:
        return self.loaded.network

    def metadata(self, preset: str | None, **extra: Any) -> dict[str, Any]:
        """What every output records besides its settings: the one place it is assembled."""
        return {
            "version": __version__,
            "preset": preset,
            "model": self.loaded.label,
            "device": self.device,
            "precision": self.options.precision,
            **extra,
        }

    def guide(self, path: Path, settings: Settings) -> dict[str, Any]:
        """The guide picture's features at the dream's layers, computed once for every file."""
        from dreamcli.io.images import read_image
        from dreamcli.jobs.guides import guide_for

        layers = [spec.name for spec in self.loaded.resolved(settings).layers]
        return guide_for(self.loaded.module, read_image(path).rgb, layers)

    def dream_files(
        self,
        jobs: Sequence[Job],
        settings: Settings,
        *,
        preset: str | None = None,
        guide: Path | None = None,
        heatmap: bool = False,
        report: Report = ignore,
        overwrite: bool = False,
        batch_size: int = 1,
        run_name: str | None = None,
        decode: Callable[[Path, int | None], Any] | None = None,
        mask: Any = None,
    ) -> Summary:
        """Dream ``jobs`` (read, dream, write; one result per file) with ``settings``; a missing
        seed is drawn per picture and recorded in it (``Settings.seeded``).  ``decode``: another
        decoder than ``io.images.decode_image`` (the page's holds its one decode slot).  ``mask``:
        ``settings.mask`` already read (``jobs.masks.mask_of``), else it is read here."""
        from dreamcli.jobs.batch import Batch
        from dreamcli.jobs.masks import mask_of

        self.loaded.resolved(settings)  # weights that leave out what these layers need: refused once
        if mask is None:
            mask = mask_of(settings)

        extra = {"guide": str(guide)} if guide is not None else {}
        runner = Batch(
            self.loaded,
            settings,
            self.options,
            report=report,
            overwrite=overwrite,
            metadata=self.metadata(preset, **extra),
            batch_size=batch_size,
            guide=self.guide(guide, settings) if guide is not None else None,
            heatmap=heatmap,
            run_name=run_name,
            decode=decode,
            mask=mask,
        )
        return runner.run(jobs)
