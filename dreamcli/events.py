"""Every event the engine, batches and animations report, and the one callback type for them.

Nothing here imports torch, so the CLI can read events without loading it.  The
engine calls ``report(event)`` and never prints; the CLI turns events into
bars, ``Note:`` lines and JSON lines (``dreamcli.cli.display``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Step:
    """After every step of a dream (and once per octave with iteration 0, before it starts)."""

    octave: int  # 1-based
    octaves: int
    iteration: int  # 1-based within the octave; 0 = the octave is starting
    iterations: int
    size: tuple[int, int]  # (height, width) of this octave
    loss: Any = None  # a 0-dim tensor on the model's device, or None: .item() waits for the device


@dataclass(frozen=True)
class OctaveDone:
    """An octave of a dream finished: ``image`` is the picture so far, at that octave's size.

    A float32 tensor on the model's device, (N, 3, H, W) in [0, 1], which the engine may reuse:
    a listener that keeps it must copy it.  Lets a page show a dream filling in octave by octave.
    """

    octave: int  # 1-based
    octaves: int
    image: Any = field(repr=False)  # report=print shows the octave, not a whole tensor


@dataclass(frozen=True)
class Note:
    """A change of plan the user should hear about (e.g. fewer octaves, tiles after out of memory)."""

    message: str


@dataclass(frozen=True)
class FileStarted:
    """A batch starts dreaming a file, or a contact sheet one of its dreams."""

    label: str  # what the progress bar shows: a file name or a sheet's variant
    position: int  # 1-based among the run's dreams
    total: int


@dataclass(frozen=True)
class FileDone:
    """A batch finished with one file: ``status`` is done, skipped or failed."""

    source: Path
    output: Path
    status: str
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` line: strict JSON for any file name.  A name that is not UTF-8 comes
        with its bytes too (``input_bytes``, ``output_bytes``: base64 of ``os.fsencode``)."""
        line: dict[str, Any] = {}
        for key, path in (("input", self.source), ("output", self.output)):
            line[key], raw = _text(str(path))
            if raw is not None:
                line[f"{key}_bytes"] = base64.b64encode(raw).decode("ascii")
        line.update(
            status=self.status,
            seconds=round(self.seconds, 3),
            error=None if self.error is None else _text(self.error)[0],
        )
        return line


def text_fields(key: str, text: str) -> dict[str, str]:
    """``{key: text}`` for a strict JSON line: a name that is not UTF-8 as U+FFFD where its
    bytes were, and ``KEY_bytes``, the base64 of those bytes (as ``FileDone.to_dict``)."""
    shown, raw = _text(text)
    fields = {key: shown}
    if raw is not None:
        fields[f"{key}_bytes"] = base64.b64encode(raw).decode("ascii")
    return fields


def _text(text: str) -> tuple[str, bytes | None]:
    """``text`` with the bytes that are not UTF-8 (kept by ``os.fsdecode`` as lone surrogates,
    which strict JSON refuses) as U+FFFD, and those bytes when there were any."""
    try:
        text.encode("utf-8")
        return text, None
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape") if _escaped(text) else text.encode("utf-8", "replace")
        return raw.decode("utf-8", "replace"), raw


def _escaped(text: str) -> bool:
    try:
        text.encode("utf-8", "surrogateescape")
        return True
    except UnicodeEncodeError:
        return False


@dataclass(frozen=True)
class FrameDone:
    """An animation wrote a frame: drives the frames / fps / time-left bar."""

    index: int  # 1-based
    total: int
    resumed: bool = False  # True when the frame came from an earlier, interrupted run


@dataclass(frozen=True)
class Stage:
    """A stage of long work advanced: ``done`` of ``total`` (an atlas: activations, layout, render)."""

    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class Loading:
    """A network's weights are being read, built and prepared: seconds on a CPU, before any step."""

    network: str  # its title, e.g. GoogLeNet
    source: str  # where the weights come from: "the download cache", "weights file r18.pth"


@dataclass(frozen=True)
class PhotoSkipped:
    """A photo could not be read or run through the network; the work went on without it."""

    source: Path
    error: str


@dataclass
class Summary:
    """What became of a batch's files; ``interrupted`` is the exit code of the signal that stopped it."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: int = 0  # 130 for Ctrl-C, 143 for SIGTERM; 0 when the batch ran to its end
    not_reached: int = 0  # files an interrupted batch never came to
    results: list[FileDone] = field(default_factory=list)

    def add(self, result: FileDone) -> None:
        self.results.append(result)
        setattr(self, result.status, getattr(self, result.status) + 1)


Event = Step | OctaveDone | Note | FileStarted | FileDone | FrameDone | Stage | PhotoSkipped | Loading
Report = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The report of a caller that does not listen."""
