"""A batch spread over a Ray cluster with Ray Data: the same files, names and promises as a local run.

The driver plans the jobs as a local run does (``jobs.naming``), reports the ones to
skip, and hands the rest to Ray Data as rows.  Each Ray worker is an actor that
opens the driver's session once (``session.Runtime.open``: one per GPU, or CPU
workers where there is none) and runs every row it gets through
``Session.dream_files``, as a local run does: the same decoding, seeds,
metadata, atomic writes, skip-if-exists and per-file errors.  Results
stream back as ``FileDone`` events, so bars, ``--json`` lines, the summary and
the exit code are a local run's.  A worker that dies is restarted by Ray and
its rows run again; a row whose output was written before the death finds it
and is skipped, so nothing is written twice or lost.

Ray is an optional extra: ``pip install 'dreamcli[ray]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dreamcli.errors import EXIT_INTERRUPTED, DreamError, SettingsError
from dreamcli.events import FileDone, Report, Summary, ignore
from dreamcli.jobs.inputs import Job
from dreamcli.run.session import Runtime

INSTALL = "pip install 'dreamcli[ray]'"
# Ray retries an unreachable head for minutes; a plain TCP connect answers in this many seconds.
PROBE_SECONDS = 5.0


class ClusterError(DreamError):
    """No Ray cluster where the user said there is one (exit 1: nothing was dreamed)."""


def require_ray():
    """Import Ray (with Ray Data), or say which command installs it (exit 2)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise SettingsError(f"--ray needs the ray extra, which is not installed: {INSTALL}") from None
    return ray


@dataclass(frozen=True)
class WorkerSpec:
    """The driver's request, in plain values: each worker opens the same session with it.

    ``runtime`` is the driver's ``Runtime`` as a dict (``device`` is resolved on each
    worker: its GPU, if it has one; ``weights`` a path every node can read, or None
    for the download); ``settings`` the resolved ``Settings`` as a dict."""

    runtime: dict[str, Any]
    settings: dict[str, Any]
    preset: str | None
    reproducible: bool
    overwrite: bool
    batch_size: int
    threads: int = 0  # torch's CPU threads on each worker; 0: the CPUs Ray gave it (OMP_NUM_THREADS)
    run: str | None = None  # this run's name, in its temporaries' names; set by run()


class Worker:
    """A Ray Data actor: the session opened once, every row dreamed by ``Session.dream_files``."""

    def __init__(self, spec: dict):
        self.failure: str | None = None
        self.spec = WorkerSpec(**spec)
        try:
            self._open()
        except DreamError as exc:  # no weights, no device...: each row fails with the reason
            self.failure = str(exc)  # (raised here, Ray would retry the actor and print its traceback)

    def _open(self) -> None:
        import torch

        from dreamcli import models
        from dreamcli.config import Settings

        if self.spec.threads:
            torch.set_num_threads(self.spec.threads)
        self.settings = Settings.from_mapping(self.spec.settings)
        network = models.get(self.settings.model)
        runtime = Runtime(**self.spec.runtime)
        self.session = runtime.open(network, reproducible=self.spec.reproducible, progress=False)

    def __call__(self, rows: dict) -> dict:
        jobs = [
            Job(Path(source), Path(output), int(index))
            for source, output, index in zip(rows["source"], rows["output"], rows["index"], strict=True)
        ]
        if self.failure is not None:
            results = [FileDone(job.source, job.output, "failed", error=self.failure) for job in jobs]
        else:
            spec = self.spec
            results = self.session.dream_files(
                jobs,
                self.settings,
                preset=spec.preset,
                overwrite=spec.overwrite,
                batch_size=spec.batch_size,
                run_name=spec.run,
            ).results
        return {
            "source": [str(r.source) for r in results],
            "output": [str(r.output) for r in results],
            "status": [r.status for r in results],
            "seconds": [r.seconds for r in results],
            "error": [r.error or "" for r in results],  # "": no error (a None column comes back as NaN)
        }


def connect(address: str):
    """``auto``: the cluster ``ray start`` or ``RAY_ADDRESS`` names; ``local``: a new Ray on this
    machine; anything else: the address of a head node."""
    ray = require_ray()
    _quiet(ray)
    named = address if address != "auto" else os.environ.get("RAY_ADDRESS", "")
    if named not in ("", "auto", "local"):
        _probe(named, address if address != "auto" else f"auto (RAY_ADDRESS={named})")
    if ray.is_initialized():  # a Python caller already connected: its cluster it is
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address != "local":
        kwargs["address"] = address
    else:
        # Ray starts workers at nice 15; a local run's workers are the whole job, and at nice
        # 15 any other busy process starves them (measured: ~3 % of a core under two busy
        # loops, the Ray tests >10 min instead of ~30 s).
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        with _stderr_silenced(), _signals_kept():
            ray.init(**kwargs)
    except ConnectionError as exc:
        raise ClusterError(f"--ray {address}: {_no_cluster(address)} ({exc})") from None
    return ray


@contextlib.contextmanager
def _signals_kept():
    """Ray's C++ core installs a SIGTERM handler that aborts the driver (exit -6, measured);
    put back the CLI's, which stops the run like Ctrl-C and exits 143."""
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)


def _no_cluster(address: str) -> str:
    if address == "auto":
        return (
            "no running Ray cluster here; start one with 'ray start --head', set RAY_ADDRESS, "
            "or use --ray local"
        )
    return f"no Ray head answers at {address}; start one there with 'ray start --head' or check the address"


def _probe(address: str, label: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at a head node's address."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdecimal():
        raise SettingsError(
            f"--ray {label}: give a head node as HOST:PORT (e.g. 10.0.0.5:6379), auto or local"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise ClusterError(f"--ray {label}: {_no_cluster(address)} ({exc.strerror or exc})") from None


@contextlib.contextmanager
def _stderr_silenced():
    """Ray's C++ core announces its log level on stderr as it starts: point file descriptor 2
    at /dev/null for a moment (exceptions still come back as exceptions)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _quiet(ray) -> None:
    """Ray Data's progress logs and bars would mix with dreamcli's own bar and --json lines."""
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Ray's C++ core logs a harmless warning about actor arguments as an error line on stderr.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    _notices_to_stderr()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def _notices_to_stderr() -> None:
    """Ray's driver prints cluster notices ("(raylet) A worker died ...") on stdout, where they
    would break --json lines (seen when a worker is killed); send them to stderr instead.
    Ray has no setting for this, so its printer is wrapped; if it moves, notices stay on stdout."""
    import ray._private.worker as ray_worker

    printer = getattr(ray_worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "to_stderr", False):
        return

    def to_stderr(data, *args, **kwargs):
        # The first line of each notice: a dead worker's full traceback ran to ~260 lines.
        lines = [
            str(line).strip().splitlines()[0][:300] for line in data.get("lines", []) if str(line).strip()
        ]
        return printer({**data, "lines": lines, "is_err": True}, *args, **kwargs)

    to_stderr.to_stderr = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr


def workers_for(ray, requested: int | None) -> tuple[int, dict[str, float]]:
    """How many workers, and what each asks Ray for: a GPU each where the cluster has GPUs,
    else an equal share of its CPUs."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return (requested or gpus), {"num_gpus": 1}
    cpus = max(1, int(resources.get("CPU", 1)))
    count = requested or 1
    return count, {"num_cpus": max(1, cpus // count)}


def run(
    ray,
    jobs: Sequence[Job],
    spec: WorkerSpec,
    workers: int | None = None,
    report: Report = ignore,
) -> Summary:
    """Dream ``jobs`` on the cluster; skipped and refused jobs are reported here, the rest by the workers."""
    from dreamcli.jobs.naming import triage

    summary = Summary()
    todo, settled = triage(jobs, spec.overwrite)
    for done in settled:
        summary.add(done)
        report(done)
    rows = [{"source": str(job.source), "output": str(job.output), "index": job.index} for job in todo]
    if not rows:
        return summary
    spec = replace(spec, run=secrets.token_hex(4))
    count, resources = workers_for(ray, workers)
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        Worker,
        fn_constructor_kwargs={"spec": asdict(spec)},
        batch_size=spec.batch_size,
        compute=ray.data.ActorPoolStrategy(size=min(count, len(rows))),
        **resources,
    )
    try:
        # Each block as it lands: iter_rows() prefetches, so its reports lag a file behind (measured).
        for block in dataset.iter_batches(batch_size=None, prefetch_batches=0, batch_format="numpy"):
            for done in _results(block):
                summary.add(done)
                report(done)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the workers stop; finished files stay
        summary.interrupted = getattr(exc, "exit_code", EXIT_INTERRUPTED)
        with contextlib.suppress(Exception):
            ray.shutdown()
    except Exception as exc:  # the workers could not run (no weights, no device...): one line per file
        reason = _worker_failure(exc)
        reported = {str(done.source) for done in summary.results}
        for row in rows:
            if row["source"] not in reported:
                done = FileDone(
                    Path(str(row["source"])),
                    Path(str(row["output"])),
                    "failed",
                    error=f"not dreamed: {reason}",
                )
                summary.add(done)
                report(done)
    finally:
        _remove_killed_workers_parts({job.output.parent for job in todo}, spec.run or "")
    if summary.interrupted:
        ended = {str(done.output) for done in summary.results}
        summary.not_reached = sum(row["output"] not in ended for row in rows)
    return summary


def _remove_killed_workers_parts(folders, run: str) -> None:
    """A worker killed mid-write (or stopped by Ctrl-C) leaves its temporary: its file was
    retried elsewhere or is reported unfinished, so this run's leftovers go now rather than
    a day later."""
    from dreamcli.io.atomic import remove_run_parts  # torch: not before --ray is checked

    for folder in folders:
        remove_run_parts(folder, run)


def _worker_failure(exc: BaseException) -> str:
    """What stopped the workers: dreamcli's own message where one is inside Ray's errors."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen or error is None:
            continue
        seen.add(id(error))
        if isinstance(error, DreamError):
            return str(error)
        todo += [getattr(error, "cause", None), error.__cause__, error.__context__]
    text = str(exc).strip().splitlines()
    return f"a Ray worker failed: {text[0][:300] if text else type(exc).__name__}"


def _results(block: dict) -> list[FileDone]:
    return [
        FileDone(Path(source), Path(output), str(status), float(seconds), str(error) or None)
        for source, output, status, seconds, error in zip(
            block["source"], block["output"], block["status"], block["seconds"], block["error"], strict=True
        )
    ]
