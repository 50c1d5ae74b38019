"""What one request to ``dream serve`` may cost: its body, its JSON, an upload's pixels and decode.

Every limit of the page has its home here (the connections' own are in
``connections``); ``server.Config`` takes them as defaults.  A request over a
limit is refused in one line (``Refused``) before the work it would cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

MAX_BODY_DEPTH = 8  # nesting of a job's JSON: the page's are 2 deep ({"settings": {...}})
BODY_TIMEOUT = 30.0  # seconds a request's body may send nothing before it is refused
MAX_UPLOADING = 4  # uploads arriving at once; the page sends one at a time
# Pixels an upload may have as decoded (a JPEG is decoded at 1/2, 1/4 or 1/8 scale when that is
# still over --max-size, so it is counted at that scale): a 6K screenshot or a 24 MP camera TIFF.
MAX_PIXELS = 24_000_000
# Peak memory of decoding one upload, per decoded pixel, measured (VmHWM over VmRSS, pictures of
# one colour, io.images.decode_image then fit): RGB PNG/TIFF 36 B, RGBA PNG 44 B, RGBA lossless
# WebP 52 B, grey 24-30 B; in dream serve, two 6000x4000 RGBA PNGs uploaded at once peaked 1,258
# MiB over its resting size (55 B a pixel of one, as decodes take turns).  With room: one decode
# at MAX_PIXELS needs at most ~1.5 GB.
DECODE_BYTES_PER_PIXEL = 64
_DECODING = threading.Lock()  # one decode at a time in this process: uploads and the worker's


class Refused(Exception):
    """A request the page refuses: its HTTP status and one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def decoding() -> Iterator[None]:
    """Hold the one decode slot: two uploads (or an upload and a job) never decode at once."""
    with _DECODING:
        yield


async def body(request: Any, limit: int, too_big: str, timeout: float = BODY_TIMEOUT) -> AsyncIterator[bytes]:
    """The request's body, chunk by chunk: at most ``limit`` bytes, never ``timeout`` seconds
    without a byte, and cut short (503) when the server stops."""
    stopping: asyncio.Event = request.app.state.stopping
    stop = asyncio.ensure_future(stopping.wait())
    size = 0
    try:
        while True:
            receive = asyncio.ensure_future(request.receive())
            done, _ = await asyncio.wait(
                {receive, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if receive not in done:
                receive.cancel()
                if stop in done:
                    raise Refused(503, "the server is stopping; start it again and resend")
                raise Refused(408, f"nothing arrived for {timeout:g} s; send the request again")
            message = receive.result()
            if message["type"] == "http.disconnect":
                raise Refused(400, "the request was cut off before its end")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Refused(413, too_big)
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
    finally:
        stop.cancel()


_SPECIAL = re.compile(rb'[\[\]{}"\\]')


def json_depth(data: bytes) -> int:
    """How deeply ``data``'s arrays and objects nest, counted in one pass, without parsing (the
    parser recurses: a deep body raised RecursionError inside it)."""
    deepest = level = 0
    in_string, escaped_at = False, -2
    for match in _SPECIAL.finditer(data):
        char, at = match.group(), match.start()
        if in_string:
            if escaped_at == at - 1:
                escaped_at = -2  # this character is escaped
            elif char == b"\\":
                escaped_at = at
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            level += 1
            deepest = max(deepest, level)
        elif char in (b"]", b"}"):
            level -= 1
    return deepest


def check_pixels(path: Path, name: str, max_size: int, max_pixels: int) -> None:
    """Refuse, from its header alone, a picture that would decode to more than ``max_pixels``.

    Anything wrong with the file is left to the decoder, which says it in its own words.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            img = Image.open(path)
        except Exception:
            return
    with img:
        width, height = img.size
        if img.format == "JPEG":
            img.draft("RGB", (max_size, max_size))  # what decode_image will do; it reads no pixel
        decoded = img.size[0] * img.size[1]
    if decoded > max_pixels:
        scale = "" if decoded == width * height else f", {decoded / 1e6:.0f} decoded"
        raise Refused(
            400,
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} megapixels{scale}); the page takes "
            f"up to {max_pixels / 1e6:.0f} megapixels: shrink it first, or dream it with the CLI "
            f"(dream PHOTO --max-size {max_size})",
        )


# What one explanation or unit request from the page may ask for at most: each value stays within
# a few times its default (``jobs.unit_options``; the CLI takes more), and the pictures' work,
# pictures x steps x pixels, within ``MOST_WORK`` times the default's, so that no request holds
# the one worker for hours while the page waits.  Larger: the command line the page shows.
EXPLAIN_MOST = {"grid": 16, "groups": 16, "classes": 10, "steps": 1024, "cell_size": 256, "photo_size": 512}
UNIT_MOST = {"steps": 1024, "size": 256, "diverse": 8, "examples": 16, "photo_size": 512}
MOST_WORK = 8.0


def check_most(what: str, values: dict[str, Any], most: dict[str, int]) -> None:
    """Refuse a whole number over the page's bound (other values are the options' to check)."""
    for name, high in most.items():
        value = values.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > high:
            raise Refused(
                400,
                f"{what} {name}: the page takes at most {high}, got {value}; "
                f"for more, run the command line with dream {what}",
            )


def check_work(what: str, work: float, default: float, lower: str) -> None:
    """Refuse pictures that would take over ``MOST_WORK`` times the default's work."""
    if work > MOST_WORK * default:
        raise Refused(
            400,
            f"{what}: these settings ask for {work / default:.1f} times the default's work; the page "
            f"takes up to {MOST_WORK:g} times: lower {lower}, or run the command line with dream {what}",
        )
