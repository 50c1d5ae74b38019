"""The server's private folder, where the user's uploads and the results lie while it runs.

One folder per server process, named by its pid (and the process's start time, where
the system says it: a pid is reused), under one parent per user in the temporary
folder.  A server that stops removes its own; one killed (``kill -9``, a crash, a power
cut) cannot, so each start removes every folder in the parent whose process is gone.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("dreamcli.web")

PREFIX = "dreamcli-serve"


def parent() -> Path:
    """``$TMPDIR/dreamcli-serve-UID``: this user's, mode 0700."""
    uid = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    return Path(tempfile.gettempdir()) / f"{PREFIX}-{uid}"


def claim() -> Path:
    """A new folder for this process, after removing those of servers that are gone."""
    home = parent()
    with contextlib.suppress(FileExistsError):
        home.mkdir(mode=0o700)
    if not _private(home):
        log.warning(
            "%s is not a folder only you can use; this server's uploads go to a folder of their own, "
            "which a killed server would leave behind",
            home,
        )
        return Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    for folder in home.iterdir():
        if _gone(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
    folder = home / f"{os.getpid()}-{_started(os.getpid())}-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o700)
    return folder


def release(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _private(home: Path) -> bool:
    """A real folder (not a link another user planted), ours, that no one else may enter."""
    try:
        info = home.lstat()
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return False
    return not hasattr(os, "getuid") or (info.st_uid == os.getuid() and not info.st_mode & 0o077)


def _gone(name: str) -> bool:
    """Whether the server that made folder ``name`` (``PID-START-RANDOM``) no longer runs."""
    pid, _, rest = name.partition("-")
    started = rest.rpartition("-")[0]
    if not pid.isdigit() or not rest:
        return False  # not a server's folder: leave it
    if os.name == "nt":
        return False  # os.kill(pid, 0) would end the process there
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False
    return bool(started) and _started(int(pid)) not in ("", started)  # alive, or its pid reused


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux's /proc), else ''."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat_line.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""
