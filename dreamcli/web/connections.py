"""The server's connections and what it prints: limits that no flood of clients gets past.

uvicorn (0.54) waits for ever for a request that never finishes its head, and accepts
connections until the process runs out of file descriptors; then asyncio prints a
traceback for each refused ``accept`` and every client, the page's too, is locked out
(1,200 connections that sent one request line did it, with the usual 1,024 descriptors).
``protocol`` is uvicorn's h11 protocol with two limits more: a connection must send a whole
request head within ``HEAD_TIMEOUT`` of opening (or of its last answer); and past
``MAX_CONNECTIONS`` a new connection closes the one that has waited longest without a
request in progress (an attacker's idle one, never a page's event stream or an upload
arriving), so a page that asks is answered.  ``Terminal`` keeps the server's lines to the
terminal few: each kind at most once a minute, and none once the server is stopping.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_CONNECTIONS = 100  # open at once; a page needs about 7 (six requests and its event stream)
BACKLOG = 64  # connections waiting to be accepted, and accepted at once (``make_server``)
HEAD_TIMEOUT = 10.0  # seconds to send a request's head (its line and headers, h11's 16 KB at most)
REPEAT_AFTER = 60.0  # seconds before the terminal shows a line of the same kind again
LOGGERS = ("uvicorn.error", "asyncio", "dreamcli.web")


class Limited(H11Protocol):
    """h11 with a head timeout and a cap on connections that drops the longest idle first."""

    max_connections = MAX_CONNECTIONS
    head_timeout = HEAD_TIMEOUT

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.idle_since = time.monotonic()
        self.head_timer: Any = None
        self._await_head()
        live = [c for c in self.connections if not c.transport.is_closing()]
        if len(live) > self.max_connections:
            idle = [c for c in live if isinstance(c, Limited) and c.idle()]
            victim = min(idle, key=lambda c: c.idle_since) if idle else self
            victim.drop()

    def idle(self) -> bool:
        """No request in progress: none yet, or the last one answered."""
        return self.cycle is None or self.cycle.response_complete

    def _await_head(self) -> None:
        self._stop_waiting()
        self.head_timer = self.loop.call_later(self.head_timeout, self.drop)

    def _stop_waiting(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def handle_events(self) -> None:
        super().handle_events()
        if not self.idle():
            self._stop_waiting()  # a whole head came: the app answers it in its own time

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.idle_since = time.monotonic()
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def drop(self) -> None:
        """Close without a word: a client that sent no whole request gets no answer."""
        self._stop_waiting()
        if not self.transport.is_closing():
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()


def protocol(max_connections: int, head_timeout: float) -> type[Limited]:
    """The protocol class for one server's limits (uvicorn takes a class, not an instance)."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            max_connections = min(max_connections, soft // 2)  # leave the rest to the process
    limits = {"max_connections": max(1, max_connections), "head_timeout": head_timeout}
    return type("Limited", (Limited,), limits)


class Terminal(logging.Filter):
    """The server's lines: each kind (logger and message) at most once per ``REPEAT_AFTER``
    seconds, saying how many were held back; none at all once the server is stopping."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False
        self.shown: dict[tuple[str, str], float] = {}
        self.held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.stopping:
            return False
        kind = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self.shown.get(kind, -REPEAT_AFTER) < REPEAT_AFTER:
            self.held[kind] = self.held.get(kind, 0) + 1
            return False
        self.shown[kind] = now
        held = self.held.pop(kind, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it held back)"
        return True

    @contextlib.contextmanager
    def installed(self) -> Any:
        loggers = [logging.getLogger(name) for name in LOGGERS]
        for logger in loggers:
            logger.addFilter(self)
        try:
            yield self
        finally:
            for logger in loggers:
                logger.removeFilter(self)
