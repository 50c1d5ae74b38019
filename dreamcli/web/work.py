"""The server's state: uploads, jobs, and the one thread that runs them in turn.

One worker per server, so one job at a time on its device; the network stays
loaded between jobs.  A job dreams a photo, or (``task``: ``inside``) makes an
explanation or a unit's pictures, which it writes into a folder of its own.  A
job reports as it goes (``Hub``): every page listening hears of every job, so a
second page sees the queue.  A job is cancelled from inside the engine's own
report callback (and, for a task, at the network's next forward pass); a dream's
picture is written only once whole (the session's pipeline, ``jobs.batch``,
writes atomically), and a task's folder is removed when it stops half way, so a
stopped job leaves no file.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamcli.config import Settings
from dreamcli.errors import DreamError, describe
from dreamcli.events import FileDone, Note, OctaveDone, PhotoSkipped, Report, Stage, Step
from dreamcli.run.session import Session

log = logging.getLogger("dreamcli.web")

MAX_JOBS = 200  # finished jobs beyond these are forgotten, oldest first, with their files
MAX_UPLOADS = 32
PROGRESS_EVERY = 0.2  # seconds between progress messages within an octave


class Cancelled(BaseException):
    """Raised in the engine's report callback to stop a job (not an Exception: nothing catches it)."""


@dataclass
class Upload:
    id: str
    path: Path  # in the server's private folder, under a name the server chose
    name: str  # the photo's own name (jobs_api.upload_name): shown and quoted, never opened
    width: int
    height: int
    sample: bool = False
    used: bool = False  # a job named it (the sample is then among a unit's photos)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "width": self.width, "height": self.height}


FAILED = {
    "dream": "dreaming failed",
    "explain": "the explanation could not be made",
    "unit": "the unit could not be made",
}


@dataclass
class Job:
    id: str
    number: int
    upload: Upload
    settings: Settings | None  # a dream's, with the user's layer names and the seed drawn
    preset: str | None
    label: str
    command: str
    download: str  # the file name a download gets
    replaces: str | None = None
    kind: str = "dream"  # dream, explain, unit
    # Other kinds than a dream: what the worker runs (``report`` -> the files it wrote, by the
    # names the page asks for them), into ``folder``; what the page shows of the request.
    task: Callable[[Report], dict[str, Path]] | None = None
    folder: Path | None = None
    photos: tuple[Upload, ...] = ()  # every photo the job reads besides ``upload``
    about: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    stage: str = ""
    done: int = 0
    total: int = 0
    left: float | None = None  # seconds the stage has left, at its pace so far
    state: str = "queued"  # queued, running, done, failed, cancelled
    octave: int = 0
    octaves: int = 0
    iteration: int = 0
    iterations: int = 0
    preview: int = 0  # the octave whose picture ``picture`` holds
    picture: bytes | None = None  # that picture, as PNG
    result: Path | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)
    stage_started: float = 0.0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "upload": self.upload.public(),
            "settings": None if self.settings is None else self.settings.to_dict(),
            "kind": self.kind,
            "about": self.about,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "left": None if self.left is None else round(self.left),
            "files": sorted(self.files),
            "preset": self.preset,
            "label": self.label,
            "command": self.command,
            "download": self.download,
            "replaces": self.replaces,
            "state": self.state,
            "octave": self.octave,
            "octaves": self.octaves,
            "iteration": self.iteration,
            "iterations": self.iterations,
            "preview": self.preview,
            "error": self.error,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


class Hub:
    """Messages to every page listening, from any thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.listeners: set[asyncio.Queue] = set()

    def listen(self) -> asyncio.Queue:
        self.loop = asyncio.get_running_loop()
        listener: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self.listeners.add(listener)
        return listener

    def leave(self, listener: asyncio.Queue) -> None:
        self.listeners.discard(listener)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        if self.loop is None or self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self._deliver, (kind, data))

    def close(self) -> None:
        """End every page's stream (the server is stopping: it need not wait for them)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._deliver, None)

    def _deliver(self, message: tuple[str, dict[str, Any]] | None) -> None:
        for listener in list(self.listeners):
            try:
                listener.put_nowait(message)
            except asyncio.QueueFull:  # a page that stopped reading: it reloads the list when it reconnects
                self.leave(listener)


class Work:
    """Uploads and jobs, and the worker thread that dreams the jobs one at a time."""

    def __init__(self, session: Session, folder: Path, hub: Hub):
        self.session, self.folder, self.hub = session, folder, hub
        (folder / "uploads").mkdir(exist_ok=True)
        (folder / "results").mkdir(exist_ok=True)
        self.uploads: dict[str, Upload] = {}
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.todo: queue.Queue[Job | None] = queue.Queue()
        self.numbers = itertools.count(1)
        self.thread = threading.Thread(target=self._work, name="dreamcli-web-worker", daemon=True)
        self.thread.start()

    # -- uploads ------------------------------------------------------------------------------

    def upload_path(self, suffix: str) -> tuple[str, Path]:
        key = secrets.token_hex(8)
        return key, self.folder / "uploads" / f"{key}{suffix}"

    def add_upload(self, upload: Upload) -> None:
        with self.lock:
            self.uploads[upload.id] = upload
            busy = {
                up.id
                for job in self.jobs.values()
                if job.state in ("queued", "running")
                for up in (job.upload, *job.photos)
            }
            spare = [key for key, up in self.uploads.items() if key not in busy and not up.sample]
            for key in spare[: max(0, len(self.uploads) - MAX_UPLOADS)]:
                self.uploads.pop(key).path.unlink(missing_ok=True)

    # -- jobs ---------------------------------------------------------------------------------

    def photos(self) -> list[Upload]:
        """The photos of this session, in the order they came: every upload kept, and the
        sample once a job used it."""
        with self.lock:
            return [up for up in self.uploads.values() if up.used or not up.sample]

    def submit(self, job: Job) -> Job:
        with self.lock:
            job.upload.used = True
            self.jobs[job.id] = job
            self._forget_old()
        self.todo.put(job)
        self._tell(job)
        return job

    def waiting(self) -> int:
        with self.lock:
            return sum(job.state == "queued" for job in self.jobs.values())

    def new_number(self) -> int:
        return next(self.numbers)

    def cancel(self, job: Job) -> None:
        job.cancel.set()
        with self.lock:
            if job.state == "queued":
                job.state = "cancelled"
        self._tell(job)

    def listing(self) -> list[dict[str, Any]]:
        with self.lock:
            return [job.public() for job in self.jobs.values()]

    def _forget_old(self) -> None:
        finished = [job for job in self.jobs.values() if job.state not in ("queued", "running")]
        for job in finished[: max(0, len(self.jobs) - MAX_JOBS)]:
            del self.jobs[job.id]
            if job.result is not None:
                job.result.unlink(missing_ok=True)
            if job.folder is not None:
                shutil.rmtree(job.folder, ignore_errors=True)

    def _tell(self, job: Job) -> None:
        self.hub.publish("job", job.public())

    def stop(self) -> None:
        with self.lock:
            for job in self.jobs.values():
                job.cancel.set()
        self.todo.put(None)
        self.thread.join(timeout=30)

    # -- the worker thread --------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self.todo.get()
            if job is None:
                return
            if job.cancel.is_set():
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        started = time.perf_counter()
        with self.lock:
            job.state = "running"
        self._tell(job)
        try:
            if job.task is None:
                self._dream(job)
            else:
                with _stoppable(self.session.loaded.module, job.cancel):
                    files = job.task(self._reporter(job))
                job.files = files
            if job.cancel.is_set():
                raise Cancelled
            state, job.picture = "done", None  # the page shows the result now; memory is kept for it
        except Cancelled:
            state = "cancelled"
        except DreamError as exc:
            state, job.error = "failed", _cleaned(str(exc), job)
        except Exception as exc:  # anything else: one line for the page, the traceback for the terminal
            log.exception("job %s failed", job.id)
            state, job.error = "failed", f"{FAILED[job.kind]}: {_cleaned(describe(exc), job)}"
        if state != "done" and job.folder is not None:
            shutil.rmtree(job.folder, ignore_errors=True)  # a job stopped half way leaves no file
        with self.lock:
            job.state, job.seconds = state, time.perf_counter() - started
        self._tell(job)

    def _reporter(self, job: Job) -> Report:
        """What the job hears from the engine and the jobs: steps, octaves, stages, notes (each
        told to the pages), and where a cancel stops it."""
        last = [0.0]

        def report(event: Any) -> None:
            if job.cancel.is_set() and not isinstance(event, FileDone):  # a file's end is always heard
                raise Cancelled
            if isinstance(event, Step):
                job.octave, job.octaves = event.octave, event.octaves
                job.iteration, job.iterations = event.iteration, event.iterations
                now = time.perf_counter()
                if event.iteration == 0 or now - last[0] >= PROGRESS_EVERY:
                    last[0] = now
                    self._tell(job)
            elif isinstance(event, OctaveDone):
                job.picture, job.preview = _png(event.image[0]), event.octave
                self._tell(job)
            elif isinstance(event, Stage):
                now = time.perf_counter()
                if event.stage != job.stage or event.done == 0:
                    job.stage_started, job.left = now, None
                elif event.done:
                    job.left = (now - job.stage_started) / event.done * (event.total - event.done)
                job.stage, job.done, job.total = event.stage, event.done, event.total
                self._tell(job)
            elif isinstance(event, Note) and event.message not in job.notes:
                job.notes.append(event.message)
                self._tell(job)
            elif isinstance(event, PhotoSkipped):
                job.notes.append(_cleaned(event.error, job))

        return report

    def _dream(self, job: Job) -> None:
        """The job's picture, through the session's pipeline (the CLI's own): read, dream, write."""
        from dreamcli.jobs.inputs import Job as File

        assert job.settings is not None  # a dream's job has its settings
        path = self.folder / "results" / f"{job.id}.png"
        file = File(job.upload.path, path, 1, name=job.upload.name)
        summary = self.session.dream_files(
            [file], job.settings, preset=job.preset, report=self._reporter(job), decode=_decode_one
        )
        done = summary.results[-1]
        if job.cancel.is_set():  # cancelled while its picture was written: no file stays
            path.unlink(missing_ok=True)
            raise Cancelled
        if done.status != "done":
            raise DreamError(done.error or f"{job.upload.name} was {done.status}")
        job.result = path


def _decode_one(path: Path, max_size: int | None) -> Any:
    """A job's decode, in the one decode slot of uploads and jobs (limits.DECODE_BYTES_PER_PIXEL)."""
    from dreamcli.io.images import decode_image
    from dreamcli.web.limits import decoding

    with decoding():
        return decode_image(path, max_size)


def _png(image: Any) -> bytes:
    """An octave's picture as PNG bytes, made on the worker thread (torch stays on one thread)."""
    from dreamcli.io.images import to_pil

    buffer = io.BytesIO()
    to_pil(image.clamp(0, 1)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@contextlib.contextmanager
def _stoppable(module: Any, cancel: threading.Event) -> Iterator[None]:
    """A cancel stops the job at the network's next forward pass (a step of a picture, a photo
    scanned), not only between the stages it reports."""

    def check(_module: Any, _inputs: Any) -> None:
        if cancel.is_set():
            raise Cancelled

    handle = module.register_forward_pre_hook(check)
    try:
        yield
    finally:
        handle.remove()


def _cleaned(message: str, job: Job) -> str:
    """A message for the page: the server's private paths become the names the page gave."""
    if not message:
        return "failed"
    for up in (job.upload, *job.photos):
        message = message.replace(str(up.path), up.name)
    return message.splitlines()[0]
