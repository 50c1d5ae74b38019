"""The web server of ``dream serve``: a Starlette app on uvicorn, for one user on this machine.

Every API call needs the token of this start (``?token=`` or the ``X-Dream-Token``
header; state-changing calls only the header); the page's URL carries it.  A
request whose Host is not this server's address, or whose Origin or
``Sec-Fetch-Site`` says another site sent it, is refused.  The server reads
only what was uploaded to it, into its own folder under names it chose; every
error is one line of JSON, never a traceback.  What a request and a connection
may cost is bounded (``limits``, ``connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import secrets
import socket
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dreamcli import presets as preset_files
from dreamcli.run.session import Session
from dreamcli.web import connections, folders, jobs_api, limits
from dreamcli.web.connections import Terminal, protocol
from dreamcli.web.work import Hub, Work

log = logging.getLogger("dreamcli.web")

STATIC = {"app.js": "text/javascript", "inside.js": "text/javascript", "style.css": "text/css"}
HEARTBEAT = 15.0  # seconds between keep-alive comments on the event stream
LOOPBACK = ("127.0.0.1", "localhost", "::1")
FAILED = "the server failed on this request; its terminal says why"


@dataclass
class Config:
    """What ``dream serve`` hands the app: the network, how it runs, the limits."""

    session: Session  # the network loaded, its run options and runtime: what every job shares
    host: str = "127.0.0.1"
    port: int = 8765
    max_size: int = 1024  # uploads with a longer side are dreamed shrunk to this (--max-size)
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = limits.MAX_PIXELS
    max_connections: int = connections.MAX_CONNECTIONS
    head_timeout: float = connections.HEAD_TIMEOUT
    body_timeout: float = limits.BODY_TIMEOUT
    preset_folders: list[tuple[str, Path]] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def answers(self, header: str) -> bool:
        """Whether a request with this Host header is for this server: its port, and one of
        this machine's names (loopback, ``--host``, its host name) or, when it listens beyond
        loopback, an IP address.  A page of another site that has its name resolve here
        (DNS rebinding) sends that name, never an address, and is refused."""
        try:
            parts = urlsplit(f"//{header}")
            name, port = parts.hostname, parts.port or 80
        except ValueError:
            return False
        if not name or port != self.port:
            return False
        host = self.host.strip("[]").lower()
        if name in (*LOOPBACK, host):
            return True
        if loopback(self.host):
            return False
        if name in _machine_names():
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def folders(self) -> list[tuple[str, Path]]:
        return preset_files.search_path(self.preset_folders)


def loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: localhost or a loopback address (127.x, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@functools.cache
def _machine_names() -> frozenset[str]:
    names = {socket.gethostname()}
    with contextlib.suppress(OSError):
        names.add(socket.getfqdn())
    return frozenset(name.lower() for name in names if name)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Guard:
    """ASGI middleware: the Host, the token, where a change comes from; and no traceback out."""

    def __init__(self, app: Any, config: Config):
        self.app, self.config = app, config
        self.terminal = Terminal()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.refusal(Request(scope))
        if refusal is not None:
            return await refusal(scope, receive, send)
        started = False

        async def sending(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("error serving %s", scope.get("path"))
            if not started:
                await error(500, FAILED)(scope, receive, send)

    def close_streams(self) -> None:
        """The server is stopping: end the pages' event streams and the bodies arriving (so it
        need not wait for them), and print nothing more (Ctrl-C during an upload printed a
        40-line traceback: the upload's task, cancelled)."""
        self.terminal.stopping = True
        hub = getattr(self.app.state, "hub", None)
        if hub is not None:
            hub.close()
        stopping = getattr(self.app.state, "stopping", None)
        if hub is not None and stopping is not None and hub.loop is not None and not hub.loop.is_closed():
            hub.loop.call_soon_threadsafe(stopping.set)

    def refusal(self, request: Request) -> Response | None:
        host = request.headers.get("host", "")
        if not self.config.answers(host):
            return error(400, f"this server answers only as {self.config.host}:{self.config.port}")
        path = request.url.path
        if path != "/" and not path.startswith("/api/"):
            return None  # the page's scripts and styles hold nothing secret
        changes = request.method not in ("GET", "HEAD")
        given = request.headers.get("x-dream-token") or ("" if changes else request.query_params.get("token"))
        if not given or not secrets.compare_digest(given.encode(), self.config.token.encode()):
            return error(403, "open the address dream serve printed: it holds this start's token")
        if changes:
            origin = request.headers.get("origin")
            if origin is not None and origin != f"{request.url.scheme}://{host}":
                return error(403, f"requests from {origin[:80]} are refused")
            if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return error(403, "requests from other sites are refused")
        return None


async def page(request: Request) -> Response:
    html = resources.files("dreamcli.web").joinpath("static/index.html").read_text(encoding="utf-8")
    return Response(html, media_type="text/html", headers=_private())


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "sample.jpg":  # the sample photo, shown when the page picks it
        data = resources.files("dreamcli.data").joinpath("sample.jpg").read_bytes()
        return Response(data, media_type="image/jpeg", headers=_private())
    if name not in STATIC:
        return error(404, f"no file {name[:40]!r}")
    text = resources.files("dreamcli.web").joinpath(f"static/{name}").read_text(encoding="utf-8")
    return Response(text, media_type=STATIC[name], headers=_private())


def _private() -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


async def events(request: Request) -> Response:
    """Server-sent events: the whole list first, then each job as it changes."""
    work: Work = request.app.state.work
    hub: Hub = request.app.state.hub
    listener = hub.listen()

    async def stream():
        try:
            yield _event("jobs", {"jobs": work.listing()})
            while True:
                try:
                    message = await asyncio.wait_for(listener.get(), HEARTBEAT)
                except asyncio.TimeoutError:
                    yield ": still here\n\n"
                    continue
                if message is None:  # the server is stopping
                    return
                yield _event(*message)
        finally:
            hub.leave(listener)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


async def not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "") or "not found"
    return error(status, f"{request.url.path[:60]}: {detail}")


async def internal(request: Request, exc: Exception) -> Response:
    """Starlette's answer to an exception (it re-raises it after; ``Guard`` logs it)."""
    return error(500, FAILED)


def make_app(config: Config) -> Guard:
    """The app; its lifespan starts the worker and removes the private folder at the end."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        folder = folders.claim()
        try:
            with guard.terminal.installed():
                hub = Hub()
                hub.loop = asyncio.get_running_loop()
                work = Work(config.session, folder, hub)
                app.state.config, app.state.hub, app.state.work = config, hub, work
                app.state.stopping, app.state.uploading = asyncio.Event(), 0
                jobs_api.add_sample(work)
                try:
                    yield
                finally:
                    await asyncio.to_thread(work.stop)
        finally:
            folders.release(folder)

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/events", events),
        *jobs_api.routes(),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_found, Exception: internal}
    )
    guard = Guard(app, config)
    return guard


def make_server(app: Guard, config: Config) -> Any:
    """The uvicorn server for ``app``: h11 with the connection limits, no WebSocket, quiet."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            app.close_streams()
            super().handle_exit(sig, frame)

    return Server(
        uvicorn.Config(
            app,
            http=protocol(config.max_connections, config.head_timeout),
            # asyncio accepts up to this many connections per wake-up, before any is looked at:
            # uvicorn's 2,048 ran the process out of file descriptors (a flood of 1,200 did).
            backlog=connections.BACKLOG,
            ws="none",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            lifespan="on",
        )
    )


def serve(config: Config, sock: Any) -> None:
    """Serve on ``sock`` (bound by the caller, so a busy port is its error) until Ctrl-C."""
    make_server(make_app(config), config).run(sockets=[sock])
