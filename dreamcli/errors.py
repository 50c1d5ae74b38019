"""Exceptions the engine raises for problems a user can fix.

Each message is one line that names the thing at fault and says how to fix it;
the CLI prints it as ``Error: <message>`` and exits with ``exit_code``.
"""

from __future__ import annotations

import reprlib
from typing import Any

# Exit codes, documented in README.md ("Troubleshooting / exit codes").
EXIT_OK = 0
EXIT_FAILED = 1  # a file could not be dreamed, or the model could not be loaded
EXIT_USAGE = 2  # bad flag, preset or layer: nothing was started (Click uses 2 too)
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, the shell convention
EXIT_TERMINATED = 143  # SIGTERM (timeout, systemd, Slurm): 128 + SIGTERM


class DreamError(Exception):
    """A problem the user can fix; the message says how."""

    exit_code = EXIT_FAILED


class SettingsError(DreamError):
    """A setting, preset or layer name is not valid; found before any work starts.

    ``key`` names the setting at fault where one value was (``model``, ``layers``...): the
    CLI names its flag, the page its field.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class ImageError(DreamError):
    """An input image cannot be read, or an output image cannot be written.

    ``storage`` is True when the output's disk or folder refused the write (full,
    read-only, no permission): a batch stops after a few of those in a row.
    """

    def __init__(self, message: str, storage: bool = False):
        super().__init__(message)
        self.storage = storage


class WeightsError(DreamError):
    """Model weights cannot be downloaded or loaded."""


class ImageTooLargeError(DreamError):
    """The image would not fit in memory on the chosen device."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as for Ctrl-C (a KeyboardInterrupt), but exit with 143."""

    exit_code = EXIT_TERMINATED


def describe(exc: BaseException) -> str:
    """An unexpected error as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# A value read from a file (a preset, a picture's metadata) may be huge: a YAML alias bomb,
# a 50 MB string, an integer of a million digits.  Messages show at most this much of it.
BRIEF_CHARS = 60
_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 2, BRIEF_CHARS, BRIEF_CHARS
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = 4


def brief(value: Any, limit: int = BRIEF_CHARS) -> str:
    """``repr(value)`` for a message, cut to about ``limit`` characters, in time and memory
    bounded whatever ``value`` is (nested lists that share themselves, huge numbers)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        digits = int(value.bit_length() * 0.30103) + 1  # log10(2): no str() of a huge int
        return f"a {'negative ' if value < 0 else ''}number of about {digits} digits"
    try:
        text = _BRIEF.repr(value)
    except Exception:  # a repr that raises: say what it is instead
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"
