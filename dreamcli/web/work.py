"""The server's state: uploads, jobs, and the one thread that dreams them in turn.

One worker per server, so one job at a time on its device; the network stays
loaded between jobs.  A job reports as it goes (``Hub``): every page listening
hears of every job, so a second page sees the queue.  A job is cancelled from
inside the engine's own report callback; its picture is written only once
whole (``io.images.write_image``: atomic), so a stopped job leaves no file.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamcli.config import Settings
from dreamcli.errors import DreamError, describe
from dreamcli.events import Note, OctaveDone, Step

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

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "width": self.width, "height": self.height}


@dataclass
class Job:
    id: str
    number: int
    upload: Upload
    settings: Settings  # with the user's layer names and the seed drawn
    preset: str | None
    label: str
    command: str
    download: str  # the file name a download gets
    replaces: str | None = None
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

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "upload": self.upload.public(),
            "settings": self.settings.to_dict(),
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

    def __init__(self, loaded: Any, options: Any, metadata: dict[str, Any], folder: Path, hub: Hub):
        self.loaded, self.options, self.metadata = loaded, options, metadata
        self.folder, self.hub = folder, hub
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
            busy = {job.upload.id for job in self.jobs.values() if job.state in ("queued", "running")}
            spare = [key for key, up in self.uploads.items() if key not in busy and not up.sample]
            for key in spare[: max(0, len(self.uploads) - MAX_UPLOADS)]:
                self.uploads.pop(key).path.unlink(missing_ok=True)

    # -- jobs ---------------------------------------------------------------------------------

    def submit(self, job: Job) -> Job:
        with self.lock:
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
            rgb, alpha = self._dream(job)
            if job.cancel.is_set():
                raise Cancelled
            self._write(job, rgb, alpha)
            state, job.picture = "done", None  # the page shows the result now; memory is kept for it
        except Cancelled:
            state = "cancelled"
        except DreamError as exc:
            state, job.error = "failed", _cleaned(str(exc), job.upload)
        except Exception as exc:  # anything else: one line for the page, the traceback for the terminal
            log.exception("job %s failed", job.id)
            state, job.error = "failed", f"dreaming failed: {_cleaned(describe(exc), job.upload)}"
        with self.lock:
            job.state, job.seconds = state, time.perf_counter() - started
        self._tell(job)

    def _dream(self, job: Job):
        from dreamcli.api import dream
        from dreamcli.io.images import decode_image, fit
        from dreamcli.web.limits import decoding

        with decoding():  # one decode at a time, uploads' and jobs' (limits.DECODE_BYTES_PER_PIXEL)
            decoded = decode_image(job.upload.path, job.settings.max_size)
        picture = fit(decoded, job.settings.max_size)
        last = [0.0]

        def report(event: Any) -> None:
            if job.cancel.is_set():
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
            elif isinstance(event, Note):
                job.notes.append(event.message)

        rgb = dream(self.loaded, picture, settings=job.settings, options=self.options, report=report)
        return rgb, picture.alpha

    def _write(self, job: Job, rgb: Any, alpha: Any) -> None:
        from dreamcli.io.images import write_image

        path = self.folder / "results" / f"{job.id}.png"
        metadata = dict(
            self.metadata,
            preset=job.preset,
            guide=None,
            settings=job.settings.to_dict(),
            input=job.upload.name,
        )
        write_image(path, rgb, alpha, metadata)
        job.result = path


def _png(image: Any) -> bytes:
    """An octave's picture as PNG bytes, made on the worker thread (torch stays on one thread)."""
    from dreamcli.io.images import to_pil

    buffer = io.BytesIO()
    to_pil(image.clamp(0, 1)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _cleaned(message: str, upload: Upload) -> str:
    """A message for the page: the server's private path becomes the name the page gave."""
    return message.replace(str(upload.path), upload.name).splitlines()[0] if message else "failed"
