"""The per-picture pipeline: read, dream, write; one by one, or same-size files together.

The CLI's files, the page's uploads and the Ray workers' rows all come through
here (``run.session.Session.dream_files``), planned by ``jobs.naming``.  One bad
file never stops the batch: each file ends as done, skipped or failed, and the
caller hears about it through a callback.  Decoding the next image and
encoding the last one run in worker threads while the current one is dreamed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dreamcli.config import Settings
from dreamcli.engine.accentuation import accentuate
from dreamcli.engine.choosing import choose, needs_choosing
from dreamcli.engine.objectives import Guided
from dreamcli.engine.octaves import dream
from dreamcli.errors import EXIT_INTERRUPTED, DreamError, ImageError, describe
from dreamcli.events import FileDone, FileStarted, Note, Report, Summary, ignore
from dreamcli.io.atomic import claim, claim_path, release, release_all, remove_stale_parts
from dreamcli.io.images import Picture, decode_image, fit, output_picture, to_pil, write_pil
from dreamcli.jobs.guides import activation_map, heat_overlay
from dreamcli.jobs.inputs import Job
from dreamcli.jobs.naming import changed_path, heatmap_path, output_problem, triage
from dreamcli.models import Loaded
from dreamcli.run_options import RunOptions

# Writes that fail in a row before the batch stops: a full disk or a read-only folder
# would otherwise have every remaining image dreamed for nothing.
WRITE_FAILURES_TO_STOP = 3


class _Stopped(Exception):
    """The output stopped taking writes; the message says why."""


@dataclass
class Batch:
    """Dreams jobs one by one with read-ahead and write-behind threads.

    ``settings`` keeps the user's layer names (they go into the metadata);
    ``model`` maps them to its modules.  ``model`` may be None when no job is
    left to dream (every output exists).  Whatever one file does (a decoder's
    exception, an encoder's limit, a vanished folder) fails that file alone.
    """

    model: Loaded | None
    settings: Settings
    options: RunOptions = field(default_factory=RunOptions)
    report: Report = ignore
    overwrite: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1  # same-size images dreamed together
    guide: dict[str, Any] | None = None  # guide features (guides.guide_for): Google's guided objective
    heatmap: bool = False  # also write <output>_heatmap.png: where the first layer fires on the input
    mask: torch.Tensor | None = None  # (H, W) in [0, 1], one for every file: dream only where white
    run_name: str | None = None  # a cluster run's name, in its temporaries' names (io.images.write_pil)
    decode: Callable[[Path, int | None], Picture] | None = None  # the reader's; None: io.images.decode_image

    def run(self, jobs: Sequence[Job]) -> Summary:
        summary = Summary()
        self._failed_writes, self._stopped = 0, False
        self._claims: dict[str, Any] = {}  # output path -> this run's claim on it
        for folder in {job.output.parent for job in jobs}:
            remove_stale_parts(folder)  # left by a run that was killed while writing
        todo, settled = triage(jobs, self.overwrite)
        for done in settled:
            self._finish(summary, done)
        with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writer:
            writes: list[tuple[Future, Job, float]] = []
            try:
                self._run_jobs(todo, reader, writer, writes, summary)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (errors.Terminated)
                summary.interrupted = getattr(exc, "exit_code", EXIT_INTERRUPTED)
                reader.shutdown(wait=False, cancel_futures=True)  # no more read-ahead for nothing
            except _Stopped as stop:
                self._drain(writes, summary)
                finished = {result.source for result in summary.results}
                for job in todo:
                    if job.source not in finished:
                        self._finish(summary, _done(job, "failed", error=f"not dreamed: {stop}"))
            finally:
                # Let a write in progress finish: it is atomic, and dropping it would lose work.
                self._stopped = True  # and from here no failed write stops anything
                self._drain(writes, summary)
                for held in self._claims.values():  # an interrupted run's: other runs may take them
                    release(held)
                self._claims.clear()
                release_all({job.output.parent for job in jobs})  # one a signal caught half made
        if summary.interrupted:
            ended = {str(result.output) for result in summary.results}
            summary.not_reached = sum(str(job.output) not in ended for job in jobs)
        return summary

    def _run_jobs(self, jobs, reader, writer, writes, summary) -> None:
        group: list[tuple[Job, Picture, float]] = []
        position = 0
        for job, picture, error, started in self._decoded(jobs, reader):
            if error is not None:
                if group:  # dream what came before, so results stay in input order
                    position = self._dream_group(group, position, len(jobs), writer, writes, summary)
                    group = []
                self._drain(writes, summary)
                self._finish(summary, _done(job, "failed", started, error))
                continue
            if group and (picture.rgb.shape != group[0][1].rgb.shape or len(group) == self._group_size()):
                position = self._dream_group(group, position, len(jobs), writer, writes, summary)
                group = []
            group.append((job, picture, started))
        if group:
            self._dream_group(group, position, len(jobs), writer, writes, summary)

    def _decoded(self, jobs: Sequence[Job], reader):
        """(job, picture, error, start time) in order, decoding up to a batch ahead in a thread."""
        ahead = max(2, self.batch_size + 1)
        decode = self.decode or decode_image  # looked up now: a test may stand in for it
        pending = [(job, reader.submit(decode, job.source, self.settings.max_size)) for job in jobs[:ahead]]
        following = iter(jobs[ahead:])
        while pending:
            job, future = pending.pop(0)
            started = time.perf_counter()
            nxt = next(following, None)
            if nxt is not None:
                pending.append((nxt, reader.submit(decode, nxt.source, self.settings.max_size)))
            try:
                picture = fit(future.result(), self.settings.max_size)  # torch work on this thread only
            except DreamError as exc:
                yield job, None, str(exc), started
                continue
            except Exception as exc:  # decode_image converts what it knows; nothing else may escape either
                yield job, None, f"cannot read {job.source}: {describe(exc)}", started
                continue
            for note in picture.notes:
                self.report(Note(note))
            yield job, picture, None, started

    def _dream_group(self, group, position, total, writer, writes, summary) -> int:
        """Dream same-size pictures as one batch, then queue their writes."""
        end = position + len(group)
        group = self._still_missing(group, summary)
        if not group:
            return end
        first = group[0][0]
        self.report(FileStarted(first.source.name, position + 1, total))
        settings = self._settings_for(first)
        model = self._loaded()
        try:
            batch = torch.stack([picture.rgb for _, picture, _ in group])
            # [strong:8]: this photo's channels, into the metadata too, so that it re-runs exactly
            resolved, settings = choose(model.module, batch[0], model.resolved(settings), settings)
            goal = Guided(resolved.layers, self.guide) if self.guide is not None else None
            changed = None
            if settings.accentuate is not None:  # the photo made more X (engine.accentuation)
                made = accentuate(
                    model.module, batch, settings=resolved, goal=goal, pull=settings.accentuate,
                    report=self.report, mask=self.mask,
                )  # fmt: skip
                dreamed, changed = made.images, made.changed
            else:
                dreamed = dream(
                    model.module,
                    batch,
                    settings=resolved,
                    goal=goal,
                    options=self.options,
                    report=self.report,
                    mask=self.mask,
                )
        except Exception as exc:  # DreamError says what to do; anything else still fails these files alone
            self._drain(writes, summary)
            error = str(exc) if isinstance(exc, DreamError) else f"dreaming failed: {describe(exc)}"
            for job, _, started in group:
                self._finish(summary, _done(job, "failed", started, error))
            return end
        for index, ((job, picture, started), rgb) in enumerate(zip(group, dreamed, strict=True)):
            try:
                job.output.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._drain(writes, summary)
                error = f"cannot create {job.output.parent}: {exc.strerror or exc}"
                self._finish(summary, _done(job, "failed", started, error), storage=True)
                continue
            meta = dict(self.metadata, settings=settings.to_dict(), input=job.input_name)
            # At most one batch of writes in flight: each write overlaps the next dream, but a
            # slow disk must hold the loop back (or dreamed pictures pile up in memory), and a
            # full disk is then found after the same number of dreams on every run.
            self._drain(writes, summary, keep=self.batch_size - 1)
            try:  # the 8-bit picture is made here: the writer thread runs no torch kernel (decode_image)
                images = [(job.output, output_picture(job.output, rgb, picture.alpha))]
                if self.heatmap:
                    images.append((heatmap_path(job.output), self._heatmap(picture.rgb, settings)))
                if changed is not None:  # where the accentuation changed the photo, as --alpha's map
                    images.append((changed_path(job.output), to_pil(changed[index].expand(3, -1, -1))))
            except Exception as exc:
                why = (
                    str(exc) if isinstance(exc, DreamError) else f"cannot write {job.output}: {describe(exc)}"
                )
                self._finish(summary, _done(job, "failed", started, why))
                continue
            writes.append((writer.submit(_write_all, images, meta, self.run_name), job, started))
        return end

    def _still_missing(self, group, summary: Summary):
        """The group less the outputs another process wrote while these were waiting, or is
        dreaming now: each one left is claimed (``io.atomic.claim``) until it is written."""
        missing = []
        for job, picture, started in group:
            problem = output_problem(job.output, self.overwrite)
            if problem is None:
                held = claim(job.output, self.run_name)
                if held is None:
                    why = f"another run is dreaming it (if none is, delete {claim_path(job.output).name})"
                    self._finish(summary, _done(job, "skipped", started, why))
                    continue
                self._claims[str(job.output)] = held
                problem = output_problem(job.output, self.overwrite)  # written just before the claim?
            if problem is None:
                missing.append((job, picture, started))
            elif problem == "skip":
                self._finish(summary, _done(job, "skipped", started))
            else:
                self._finish(summary, _done(job, "failed", started, problem))
        return missing

    def _drain(self, writes: list, summary: Summary, keep: int = 0) -> None:
        """Report finished writes, oldest first, waiting until at most ``keep`` are in flight."""
        while writes and (len(writes) > keep or writes[0][0].done()):
            if not self._stopped:
                # A Ctrl-C while waiting here stops the run (it must not count as this write's
                # failure); the write stays queued, and the final drain reports how it ended.
                wait([writes[0][0]])
            self._finish(summary, *self._write_result(*writes.pop(0)))

    def _group_size(self) -> int:
        """Pictures dreamed together: one where each photo chooses its own channels."""
        return 1 if needs_choosing(self.settings) else self.batch_size

    def _settings_for(self, job: Job) -> Settings:
        return self.settings.seeded()  # the seed actually used goes into the picture's metadata

    def _loaded(self) -> Loaded:
        if self.model is None:  # only a batch with nothing left to dream may have no model
            raise DreamError("no model was loaded for this batch")
        return self.model

    def _heatmap(self, rgb: torch.Tensor, settings: Settings):
        """Where the first layer (or its channels) fires on the input, over a grey copy of it."""
        spec, model = settings.layers[0], self._loaded()
        heat = activation_map(model.module, rgb, spec.with_name(model.resolve(spec.name)))
        return to_pil(heat_overlay(rgb, heat))

    def _write_result(self, future: Future, job: Job, started: float) -> tuple[FileDone, bool]:
        """How the write ended, and whether the storage refused it (full disk, read-only folder)."""
        try:
            future.result()
        except DreamError as exc:
            return _done(job, "failed", started, str(exc)), isinstance(exc, ImageError) and exc.storage
        except KeyboardInterrupt:  # a second Ctrl-C during the final drain
            return _done(job, "failed", started, "interrupted"), False
        except Exception as exc:  # an encoder's own error: this file fails, the batch goes on
            return _done(job, "failed", started, f"cannot write {job.output}: {describe(exc)}"), False
        return _done(job, "done", started), False

    def _finish(self, summary: Summary, result: FileDone, storage: bool | None = None) -> None:
        """Count and report ``result``; ``storage`` says whether a write failed for its storage's sake."""
        release(self._claims.pop(str(result.output), None))  # written or failed: the claim ends
        summary.add(result)
        self.report(result)
        if storage is not None:  # a write: three refused by the storage in a row stop the batch
            self._failed_writes = self._failed_writes + 1 if storage else 0
            if self._failed_writes >= WRITE_FAILURES_TO_STOP and not self._stopped:
                self._stopped = True  # said once; the writes still in flight finish as they may
                raise _Stopped(
                    f"the batch stopped after {WRITE_FAILURES_TO_STOP} writes in a row failed "
                    f"(the last: {result.error}); free some space or fix the folder, then run again"
                )


def _write_all(images, metadata: dict[str, Any], run: str | None) -> None:
    """The writer thread's work for one file: its dream, then any companion (a heat map)."""
    for path, image in images:
        write_pil(path, image, metadata, run)


def _done(job: Job, status: str, started: float | None = None, error: str | None = None) -> FileDone:
    """How ``job`` ended; ``started`` (a perf_counter time) gives its seconds."""
    seconds = time.perf_counter() - started if started is not None else 0.0
    return FileDone(job.source, job.output, status, seconds, error)
