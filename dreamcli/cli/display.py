"""Progress on the terminal: the only place that knows tqdm.

Bars go to stderr and only to a terminal (tqdm's ``disable=None``); ``--json``
lines go to stdout; ``-q`` leaves only errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click

from dreamcli.errors import EXIT_FAILED, EXIT_OK
from dreamcli.events import (
    Event,
    FileDone,
    FileStarted,
    FrameDone,
    Loading,
    Note,
    PhotoSkipped,
    Stage,
    Step,
    Summary,
)
from dreamcli.io.formats import shown


def quiet_stdout() -> None:
    """Point stdout at /dev/null (Python's docs' recipe for a reader that went away), so that
    the flush at exit does not fail; a test's buffer has no file descriptor to point."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# A Note: line's longest text: ours (a weights file loaded in part names two keys) fit in
# it; a hostile key name or a library's long message is cut.
NOTE_WIDTH = 400


def warning_text(message, category) -> str:
    """A Python warning as dreamcli says it: its message, first line, no file or line number."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    if len(text) <= NOTE_WIDTH:
        return text
    cut = text[:NOTE_WIDTH].rsplit(" ", 1)[0]  # at a word, so a cut line never ends mid-word
    return f"{cut} ..."


def skipped(output: Path, reason: str | None = None) -> str:
    """The one wording for an output that is kept (``reason``: other than that it exists)."""
    return f"Skipped {shown(output)} ({reason or 'exists; --overwrite replaces it'})"


# Long work says how long it will take after this many steps past the first, when that is at
# least this many seconds (a dream's own bar shows it too, but a minute is worth a line).
PACE_STEPS = 3
PACE_WORTH_SAYING = 60.0


def why_skipped(summary: Summary) -> list[str]:
    """Why a batch's files were skipped (``jobs.reruns`` says why for each), for its summary."""
    reasons = {result.error for result in summary.results if result.status == "skipped"}
    if not reasons:
        return []
    if len(reasons) > 1:
        return [f"the {summary.skipped} skipped: --json says why for each"]
    return [
        f"the {summary.skipped} skipped were {reasons.pop() or 'there already: --overwrite replaces them'}"
    ]


class Display:
    """Turns engine, batch and animation events into tqdm bars, notes, error lines and JSON lines."""

    def __init__(self, quiet: bool, as_json: bool, many: bool):
        self.quiet, self.as_json, self.many = quiet, as_json, many
        self.files: Any = None  # tqdm bars, made when the first event comes
        self.steps: Any = None
        self.status: Any = None  # a one-line status (loading the network) until the first bar
        self._paced_from: float | None = None  # when the pace of long work began to be measured
        self._paced = False  # its time was said
        self.stage = ""  # the stage the steps bar shows, for work in stages
        self.notes: set[str] = set()
        self.stdout_closed = False  # the reader of --json went away (e.g. | head): the run goes on
        # A library's warning (Pillow's, torch's) that reaches no caller of ours: a Note: line
        # without the library's file and line, or nothing under -q.
        self._showwarning = warnings.showwarning
        warnings.showwarning = self._warning

    def _warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        self(Note(warning_text(message, category)))

    def __call__(self, event: Event) -> None:
        if isinstance(event, Loading):
            self._loading(event)
            return
        if self.status is not None and not isinstance(event, Note):
            self.status.close()  # the work it announced has begun: its own bars take over
            self.status = None
        if isinstance(event, FrameDone):
            self._frame(event)
        elif isinstance(event, FileStarted):
            self._start_file(event)
        elif isinstance(event, Step):
            self._step(event)
        elif isinstance(event, Note) and not self.quiet and event.message not in self.notes:
            self.notes.add(event.message)  # over a thousand files, say each thing once
            self._write(f"Note: {event.message}")
        elif isinstance(event, FileDone):
            self._result(event)
        elif isinstance(event, Stage):
            self._stage(event)
        elif isinstance(event, PhotoSkipped):
            self._error(event.source, event.error)

    def _bar(self, **kwargs):
        from tqdm import tqdm

        # disable=None: tqdm turns itself off when stderr is not a terminal.
        return tqdm(file=sys.stderr, disable=True if self.quiet else None, dynamic_ncols=True, **kwargs)

    def _loading(self, event: Loading) -> None:
        """``Loading GoogLeNet (its weights)...`` on the terminal, gone when the work begins."""
        if self.status is None:
            self.status = self._bar(total=0, bar_format="{desc}", leave=False)
        self.status.set_description_str(f"Loading {event.network} ({event.source})...")

    def _start_file(self, event: FileStarted) -> None:
        if self.many and self.files is None:
            self.files = self._bar(total=event.total, desc="files", unit="file", position=0)
        if self.steps is not None:
            self.steps.close()
        self.steps = self._bar(
            total=0,
            desc=event.label,
            unit="step",
            leave=not self.many,
            position=1 if self.many else 0,
        )

    def _pace(self, event: Step) -> None:
        """Long work of one size (a feature picture: 320 steps) says how long it will take, once,
        a few steps in: the first step (the shapes' set-up) is left out of the pace."""
        now = time.monotonic()
        if event.iteration == 1 and not self._paced:
            self._paced_from = now
            return
        since = self._paced_from
        if since is None or event.iteration < PACE_STEPS + 1 or self.quiet:
            return
        left = (now - since) / (event.iteration - 1) * (event.iterations - event.iteration)
        self._paced_from, self._paced = None, True  # said once
        if left >= PACE_WORTH_SAYING:
            minutes = f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
            self(Note(f"{event.iterations} steps a picture: about {minutes} more for this one at this pace"))

    def _stage(self, event: Stage) -> None:
        """Long work in stages (an atlas): one bar per stage."""
        if self.steps is None or self.stage != event.stage:
            if self.steps is not None:
                self.steps.close()
            self.steps = self._bar(total=event.total, desc=event.stage)
            self.stage = event.stage
        bar = self.steps
        bar.update(event.done - bar.n)

    def _frame(self, event: FrameDone) -> None:
        """Animations: one bar over frames, which shows frames per second and time left."""
        if self.files is None:
            self.files = self._bar(total=event.total, desc="frames", unit="frame")
        bar = self.files
        bar.update(1)

    def _step(self, event: Step) -> None:
        if self.steps is None:
            return
        if event.octaves == 1 and event.iteration:
            self._pace(event)
        if event.iteration == 0:
            self.steps.total = event.octaves * event.iterations
            self.steps.set_postfix_str(
                f"octave {event.octave}/{event.octaves} {event.size[1]}x{event.size[0]}"
            )
        else:
            self.steps.update(1)

    def _result(self, result: FileDone) -> None:
        if self.files is not None:
            self.files.update(1)
        if self.as_json:
            self._write(json.dumps(result.to_dict()), err=False)
        if result.status == "failed":
            self._error(result.source, result.error or "failed", result.output)
        elif not self.quiet and not self.as_json and not self.many:
            self._write(
                f"Wrote {shown(result.output)}"
                if result.status == "done"
                else skipped(result.output, result.error)
            )

    def _error(self, source: Path, error: str, output: Path | None = None) -> None:
        """``Error: ...`` naming the file.  Every path as the shell would quote it, so a name with
        a newline or bytes that are not UTF-8 still gives one line a script can map back."""
        error = error.replace(str(source), shown(source))
        if output is not None:
            error = error.replace(str(output), shown(output))
        self._write(f"Error: {error}" if shown(source) in error else f"Error: {shown(source)}: {error}")

    def _write(self, text: str, err: bool = True) -> None:
        from tqdm import tqdm

        text = text.replace("\r", "\\r").replace("\n", "\\n")  # one event, one line
        if not err and self.stdout_closed:
            return
        try:
            if self.files is None and self.steps is None and self.status is None:
                click.echo(text, err=err)
            else:
                tqdm.write(text, file=sys.stderr if err else sys.stdout)
            if not err:
                sys.stdout.flush()  # a JSON line reaches the reader now, not at exit
        except BrokenPipeError:
            if err:
                raise
            self._close_stdout()

    def _close_stdout(self) -> None:
        """``dream ... --json | head``: head has gone; keep dreaming, stop printing JSON."""
        self.stdout_closed = True
        quiet_stdout()

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if warnings.showwarning == self._warning:
            warnings.showwarning = self._showwarning
        for bar in (self.status, self.steps, self.files):
            if bar is not None:
                bar.close()
        self.status = self.steps = self.files = None

    def finish(self, summary: Summary, found) -> int:
        """The summary line of a batch, and its exit code; ``found`` is the plan's ``Inputs``."""
        for result in getattr(found, "refused", ()):  # paths refused while planning fail here
            summary.add(result)
            self(result)
        left_out = []
        if found.not_images:
            left_out.append(f"{len(found.not_images)} non-image file(s) ignored")
        if found.dreams:
            left_out.append(f"{len(found.dreams)} earlier dream(s) left out (--include-dreams takes them)")
        if getattr(found, "hidden", None):
            left_out.append(f"{len(found.hidden)} hidden file(s) ignored")
        total = summary.done + summary.skipped + summary.failed
        if not self.quiet and (self.many or not total):
            line = f"{summary.done} done, {summary.skipped} skipped, {summary.failed} failed"
            if summary.not_reached:
                line += f", {summary.not_reached} not reached"
            if not total and not summary.interrupted:
                line = "No images to dream"
            click.echo("; ".join([line, *left_out, *why_skipped(summary)]), err=True)
        if summary.interrupted:
            click.echo("Interrupted: finished files are kept, no partial file was left.", err=True)
            return summary.interrupted
        return EXIT_FAILED if summary.failed else EXIT_OK
