"""Dreaming many files: finding inputs, naming outputs, and running them one by one.

One bad file never stops the batch: each file ends as done, skipped or failed,
and the caller hears about it through a callback.  Decoding the next image and
encoding the last one run in worker threads while the current one is dreamed.
"""

from __future__ import annotations

import os
import random
import string
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dreamcli.config import Settings
from dreamcli.dream import dream
from dreamcli.errors import DreamError, SettingsError
from dreamcli.events import FileDone, FileStarted, Note, Report, ignore
from dreamcli.formats import IMAGE_EXTENSIONS, TEMPLATE_FIELDS
from dreamcli.imageio import Picture, check_output, read_image, write_image
from dreamcli.models import Loaded
from dreamcli.options import RunOptions


@dataclass(frozen=True)
class Job:
    """One input file and where its dream goes."""

    source: Path
    output: Path
    index: int  # 1-based position among all inputs (before sharding), for {index}


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: bool = False
    results: list[FileDone] = field(default_factory=list)

    def add(self, result: FileDone) -> None:
        self.results.append(result)
        setattr(self, result.status, getattr(self, result.status) + 1)


@dataclass
class Inputs:
    """Files to dream, each with the folder it was found under (for ``-r`` structure)."""

    files: list[tuple[Path, Path | None]] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)


def collect_inputs(
    args: Sequence[str | Path], recursive: bool = False, exclude: Path | None = None
) -> Inputs:
    """Expand files and folders into image files, sorted by path within each folder.

    Files named directly are always tried (a bad one fails with its own error);
    inside folders, files without an image extension are counted and skipped.
    ``exclude`` (the output folder) is never walked, so reruns do not dream dreams.
    """
    found = Inputs()
    seen: set[Path] = set()
    excluded = exclude.resolve() if exclude is not None else None
    for arg in args:
        path = Path(arg)
        if not path.is_dir():
            _add(found, seen, path, None)
            continue
        walker = path.rglob("*") if recursive else path.glob("*")
        for child in sorted(walker):
            if excluded is not None and (child.resolve() == excluded or excluded in child.resolve().parents):
                continue
            # Hidden files and folders (ours: .NAME.part temporaries, .NAME.frames work folders) are skipped.
            if child.is_dir() or any(part.startswith(".") for part in child.relative_to(path).parts):
                continue
            if child.suffix.lower() in IMAGE_EXTENSIONS:
                _add(found, seen, child, path)
            else:
                found.not_images.append(child)
    return found


def _add(found: Inputs, seen: set[Path], path: Path, root: Path | None) -> None:
    key = path.resolve() if path.exists() else path.absolute()
    if key not in seen:
        seen.add(key)
        found.files.append((path, root))


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N) with 1 <= K <= N."""
    k, slash, n = text.partition("/")
    if not slash or not k.strip().isdigit() or not n.strip().isdigit() or not 1 <= int(k) <= int(n):
        raise SettingsError(f"shard {text!r} is not valid: write K/N with 1 <= K <= N, e.g. 2/4")
    return int(k), int(n)


def take_shard(jobs: Sequence[Job], k: int, n: int) -> list[Job]:
    """A stable 1/N share: the K-th of every N jobs in sorted-path order.

    Every machine sorts the same paths the same way, so N shards cover every
    job exactly once, and round-robin keeps the shares within one file in size.
    """
    ordered = sorted(jobs, key=lambda job: str(job.source))
    return ordered[k - 1 :: n]


def check_template(template: str) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise SettingsError(f"output name template {template!r} is not valid: {exc}") from None
    unknown = names - set(TEMPLATE_FIELDS)
    if unknown:
        raise SettingsError(
            f"output name template {template!r} uses {{{sorted(unknown)[0]}}}; "
            f"the fields are {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        )


def output_name(template: str, source: Path, index: int, preset: str | None, settings: Settings) -> str:
    layer = str(settings.layers[0].name).replace("/", "-").replace(".", "-")
    return template.format(
        stem=source.stem,
        ext=source.suffix.lstrip(".").lower(),
        preset=preset or "custom",
        layer=layer,
        index=index,
    )


def plan_jobs(
    inputs: Inputs,
    output: Path | None,
    template: str,
    settings: Settings,
    preset: str | None = None,
) -> list[Job]:
    """Decide every output path; two inputs that would write the same file are refused."""
    check_template(template)
    many = len(inputs.files) > 1 or any(root is not None for _, root in inputs.files)
    into_folder = output is not None and (many or output.is_dir() or str(output).endswith(os.sep))
    jobs = []
    for index, (source, root) in enumerate(inputs.files, start=1):
        name = output_name(template, source, index, preset, settings)
        if output is None:
            target = source.parent / name
        elif into_folder:
            sub = source.parent.relative_to(root) if root is not None else Path()
            target = output / sub / name
        else:
            target = output
        check_output(target)
        jobs.append(Job(source, target, index))
    _refuse_collisions(jobs)
    return jobs


def _refuse_collisions(jobs: Iterable[Job]) -> None:
    writers: dict[Path, Job] = {}
    for job in jobs:
        key = job.output.absolute()
        if key in writers:
            raise SettingsError(
                f"{writers[key].source} and {job.source} would both write {job.output}; "
                "add {ext} or {index} to the --name template"
            )
        writers[key] = job


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


@dataclass
class Batch:
    """Dreams jobs one by one with read-ahead and write-behind threads.

    ``settings`` keeps the user's layer names (they go into the metadata);
    ``model`` maps them to its modules.  ``model`` may be None when no job is
    left to dream (every output exists).
    """

    model: Loaded | None
    settings: Settings
    options: RunOptions = field(default_factory=RunOptions)
    report: Report = ignore
    overwrite: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1  # same-size images dreamed together

    def run(self, jobs: Sequence[Job]) -> Summary:
        summary = Summary()
        todo = []
        for job in jobs:
            reason = self._skip_reason(job)
            if reason == "skip":
                self._finish(summary, _done(job, "skipped"))
            elif reason:
                self._finish(summary, _done(job, "failed", error=reason))
            else:
                todo.append(job)
        with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writer:
            writes: list[tuple[Future, Job, float]] = []
            try:
                self._run_jobs(todo, reader, writer, writes, summary)
            except KeyboardInterrupt:
                summary.interrupted = True
            finally:
                # Let a write in progress finish: it is atomic, and dropping it would lose work.
                self._drain(writes, summary, wait=True)
        return summary

    def _skip_reason(self, job: Job) -> str | None:
        if _same_file(job.source, job.output):
            return f"{job.output} is the input itself; dreamcli never overwrites an input"
        if job.output.exists() and not self.overwrite:
            return "skip"
        return None

    def _run_jobs(self, jobs, reader, writer, writes, summary) -> None:
        group: list[tuple[Job, Picture, float]] = []
        position = 0
        for job, picture, error, started in self._decoded(jobs, reader):
            if error is not None:
                if group:  # dream what came before, so results stay in input order
                    position = self._dream_group(group, position, len(jobs), writer, writes, summary)
                    group = []
                self._drain(writes, summary, wait=True)
                self._finish(summary, _done(job, "failed", started, error))
                continue
            if group and (picture.rgb.shape != group[0][1].rgb.shape or len(group) == self.batch_size):
                position = self._dream_group(group, position, len(jobs), writer, writes, summary)
                group = []
            group.append((job, picture, started))
        if group:
            self._dream_group(group, position, len(jobs), writer, writes, summary)

    def _decoded(self, jobs: Sequence[Job], reader):
        """(job, picture, error, start time) in order, decoding up to a batch ahead in a thread."""
        ahead = max(2, self.batch_size + 1)
        pending = [
            (job, reader.submit(read_image, job.source, self.settings.max_size)) for job in jobs[:ahead]
        ]
        following = iter(jobs[ahead:])
        while pending:
            job, future = pending.pop(0)
            started = time.perf_counter()
            nxt = next(following, None)
            if nxt is not None:
                pending.append((nxt, reader.submit(read_image, nxt.source, self.settings.max_size)))
            try:
                picture = future.result()
            except DreamError as exc:
                yield job, None, str(exc), started
                continue
            for note in picture.notes:
                self.report(Note(note))
            yield job, picture, None, started

    def _dream_group(self, group, position, total, writer, writes, summary) -> int:
        """Dream same-size pictures as one batch, then queue their writes."""
        first = group[0][0]
        self.report(FileStarted(first.source.name, position + 1, total))
        settings = self._settings_for(first)
        try:
            batch = torch.stack([picture.rgb for _, picture, _ in group])
            dreamed = dream(
                self.model.module,
                batch,
                settings=self.model.resolved(settings),
                options=self.options,
                report=self.report,
            )
        except DreamError as exc:
            self._drain(writes, summary, wait=True)
            for job, _, started in group:
                self._finish(summary, _done(job, "failed", started, str(exc)))
            return position + len(group)
        for (job, picture, started), rgb in zip(group, dreamed, strict=True):
            try:
                job.output.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._drain(writes, summary, wait=True)
                error = f"cannot create {job.output.parent}: {exc.strerror or exc}"
                self._finish(summary, _done(job, "failed", started, error))
                continue
            meta = dict(self.metadata, settings=settings.to_dict(), input=job.source.name)
            self._drain(writes, summary, wait=False)
            writes.append((writer.submit(write_image, job.output, rgb, picture.alpha, meta), job, started))
        return position + len(group)

    def _drain(self, writes: list, summary: Summary, wait: bool) -> None:
        """Report finished writes, oldest first; with ``wait``, all of them."""
        while writes and (wait or writes[0][0].done()):
            self._finish(summary, self._write_result(*writes.pop(0)))

    def _settings_for(self, job: Job) -> Settings:
        if self.settings.seed is not None:
            return self.settings
        # Record the seed actually used, so the picture's metadata reproduces it.
        return Settings.from_mapping({"seed": random.randrange(2**32)}, base=self.settings)

    def _write_result(self, future: Future, job: Job, started: float) -> FileDone:
        try:
            future.result()
        except DreamError as exc:
            return _done(job, "failed", started, str(exc))
        except KeyboardInterrupt:
            return _done(job, "failed", started, "interrupted")
        return _done(job, "done", started)

    def _finish(self, summary: Summary, result: FileDone) -> None:
        summary.add(result)
        self.report(result)


def _done(job: Job, status: str, started: float | None = None, error: str | None = None) -> FileDone:
    """How ``job`` ended; ``started`` (a perf_counter time) gives its seconds."""
    seconds = time.perf_counter() - started if started is not None else 0.0
    return FileDone(job.source, job.output, status, seconds, error)
