"""``dream serve`` in a thread of the test process, on a free port, with random weights."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Served:
    config: Any  # dreamcli.web.server.Config
    base: str  # http://127.0.0.1:PORT
    app: Any  # the app, its guard around it
    uvicorn: Any  # the uvicorn server: its connections in .server_state

    @property
    def work(self) -> Any:
        """The server's uploads and jobs (dreamcli.web.work.Work)."""
        return self.app.app.state.work


@contextmanager
def running_server(weights_file: Path, **limits):
    """Yield a ``Served`` server dreaming on the CPU in fp32, as the CLI's tests do; ``limits``
    are ``server.Config``'s (max_size, max_pixels, head_timeout...)."""
    from dreamcli import api
    from dreamcli.engine.devices import run_options
    from dreamcli.web import commands, server

    options = run_options("cpu", "fp32", reproducible=True)
    loaded = api.load_model(weights=weights_file, device="cpu", progress=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = server.Config(
        loaded=loaded,
        options=options,
        metadata={"version": "test", "model": loaded.label, "device": "cpu", "precision": "fp32"},
        machine=commands.Machine("googlenet", str(weights_file), "cpu", "fp32"),
        port=sock.getsockname()[1],
        **limits,
    )
    app = server.make_app(config)
    uv = server.make_server(app, config)  # the limits and protocol dream serve runs with
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Served(config, f"http://127.0.0.1:{config.port}", app, uv)
    finally:
        app.close_streams()
        uv.should_exit = True
        thread.join(timeout=30)
        sock.close()


def events(base: str, token: str, until, timeout: float = 120.0):
    """Read the event stream until ``until(jobs)`` (id -> latest job) is true; every job message seen."""
    latest: dict[str, dict] = {}
    seen: list[dict] = []
    with httpx.stream("GET", f"{base}/api/events", params={"token": token}, timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                for job in data["jobs"] if kind == "jobs" else [data]:
                    latest[job["id"]] = job
                    seen.append(job)
                if until(latest):
                    return latest, seen
    raise AssertionError("the event stream ended early")
