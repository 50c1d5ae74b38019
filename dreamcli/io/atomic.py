"""Atomic writes, claims on outputs, and what killed runs leave behind.

Every file dreamcli writes goes through ``atomic_write``: a temporary file in
the target folder, then a rename, so a kill at any moment leaves the old file
(or none) or the whole new one.  Temporaries carry the writer's process and
host in their names, so a later run can remove what a killed one left.

A batch claims an output before it dreams it (``claim``): a hidden
``.NAME.claim`` file beside it, made with O_CREAT|O_EXCL, so that a second run
into the same folder leaves that file to the first.  A claim names its process
and host; one left by a killed run expires at once on this host (its process is
gone) and after ``CLAIM_MAX_AGE_S`` from another host.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamcli.errors import DreamError, ImageError, describe


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask is process-wide and writes happen in a worker thread.
FILE_MODE = 0o666 & ~_current_umask()


# Temporaries are named .NAME.<pid>@<host>.XXXXXXXX.part, so that a later run can tell one
# left by a killed process on this machine from one that another run is writing now.  Only
# names of this shape (NAME ending in a picture's, a video's or an atlas's JSON extension)
# are ever removed.
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:16] or "host"
_OUTPUTS = r"\.(?:png|jpe?g|webp|tiff?|gif|mp4|json)"
# A run on a cluster adds its own name (RUN, 8 hex digits: .NAME.<pid>@<host>.XXXXXXXX.RUN.part),
# so that at its end it can remove what its killed workers left, on any node, and nothing else.
_PART = re.compile(
    rf"^\..+{_OUTPUTS}\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]+)\.[a-z0-9_]{{8}}(?:\.(?P<run>[0-9a-f]{{8}}))?\.part$",
    re.I,
)
_OLD_PART = re.compile(rf"^\..+{_OUTPUTS}\.[a-z0-9_]{{8}}\.part$", re.I)  # dreamcli before the pid was in it
# A temporary whose process is gone is left this long still: another container with the
# same host name (and its own process numbers) may be writing it.
PART_GRACE_S = 600.0


def atomic_write(path: str | Path, write: Callable[[Any], None], suffix: str = ".part") -> None:
    """Call ``write(file)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    A kill at any moment leaves either the old file (or none) or the whole new
    one; on an error the temporary file is removed and an ImageError names the path.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        # The name is cut so that the temporary stays within a file name's 255 bytes.
        prefix = f".{path.name[:160]}.{os.getpid()}@{_HOST}."
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed or removed
            dir=folder, prefix=prefix, suffix=suffix, delete=False
        )
    except FileNotFoundError:
        raise ImageError(f"cannot write {path}: the folder {folder} does not exist", storage=True) from None
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc} in {folder}", storage=True) from None
    temp = Path(handle.name)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, FILE_MODE)  # mkstemp makes 0600; a normal file honours the umask
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise ImageError(f"cannot write {path}: {exc.strerror or exc}", storage=True) from None
        if isinstance(exc, Exception) and not isinstance(exc, DreamError):
            raise ImageError(f"cannot write {path}: the encoder failed ({describe(exc)})") from None
        raise


def remove_stale_parts(folder: Path, max_age: float = 86400.0) -> None:
    """Delete the temporaries and claims that killed dreamcli runs left in ``folder``.

    Only names of dreamcli's shape are considered.  A temporary of this machine's
    whose process is gone is stale after ``PART_GRACE_S``; another machine's, or an
    older dreamcli's, once it is ``max_age`` seconds old.  Claims: see ``claim``.
    """
    for entry in _temporaries(folder):
        if _CLAIM.match(entry.name):
            _remove_if_stale(Path(entry.path))
            continue
        ours, old = _PART.match(entry.name), _OLD_PART.match(entry.name)
        if not (ours or old):
            continue  # not a name dreamcli makes: a user's own file
        try:
            age = time.time() - entry.stat(follow_symlinks=False).st_mtime
            if ours and ours["host"] == _HOST:
                stale = age > PART_GRACE_S and not _alive(int(ours["pid"]))
            else:
                stale = age > max_age
            if stale:
                os.unlink(entry.path)
        except OSError:
            continue  # gone already, or not ours to delete


def remove_run_parts(folder: Path, run: str) -> None:
    """Delete the temporaries and claims of the finished run ``run`` (see ``write_pil``) in
    ``folder``: its workers are done, so any left were made by a worker that was killed."""
    for entry in _temporaries(folder):
        ours = _PART.match(entry.name)
        if (ours and ours["run"] == run) or (_CLAIM.match(entry.name) and _run_of(Path(entry.path)) == run):
            with contextlib.suppress(OSError):  # gone already, or not ours to delete after all
                os.unlink(entry.path)


def _temporaries(folder: Path) -> list[os.DirEntry]:
    """The hidden ``*.part`` and ``*.claim`` files in ``folder``; none when it is missing or unreadable."""
    try:
        return [
            e for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith((".part", ".claim"))
        ]
    except OSError:
        return []  # no folder yet (or unreadable): nothing of ours to clean


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # os.kill(pid, 0) is no probe on Windows: leave it to max_age
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def is_ours(name: str) -> bool:
    """Whether a hidden file name is one dreamcli makes (a temporary or a claim)."""
    return bool(_PART.match(name) or _OLD_PART.match(name) or _CLAIM.match(name))


# ---------------------------------------------------------------- claims

# A claim whose process cannot be probed (another host) expires after this long: longer
# than any one picture takes to dream, short enough that a killed cluster run's files
# are dreamed by the next run of the day.
CLAIM_MAX_AGE_S = 3600.0
_CLAIM = re.compile(rf"^\..+{_OUTPUTS}(?:\.[0-9a-f]{{16}})?\.claim$", re.I)


def claim_path(output: Path) -> Path:
    """The hidden claim file of ``output``; a long name is cut and told apart by a hash."""
    name = output.name
    if len(os.fsencode(name)) > 180:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:16]
        name = os.fsdecode(os.fsencode(name)[:150]) + output.suffix + "." + digest
    return output.with_name(f".{name}.claim")


def claim(output: Path, run: str | None = None) -> Path | bool | None:
    """Claim ``output`` for this process: the claim file's path, None when another live run
    holds it, or True when no claim could be made (a read-only folder: the write will say).
    ``run`` names a cluster run, whose end removes the claims of its killed workers."""
    path = claim_path(output)
    for _ in range(3):
        _MAKING.add(str(path))
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _MAKING.discard(str(path))  # another run's: never ours to remove
            if _remove_if_stale(path):
                continue  # a killed run's: taken over
            return None
        except FileNotFoundError:  # the output folder is made now, as the write would make it
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                _MAKING.discard(str(path))
                return True
            continue
        except OSError:
            _MAKING.discard(str(path))
            return True
        with contextlib.suppress(OSError), os.fdopen(fd, "w") as file:
            file.write(_OWNER + (f"{run}\n" if run else ""))
        _HELD.add(str(path))
        _MAKING.discard(str(path))
        return path
    _MAKING.discard(str(path))
    return None


def release(path: Path | bool | None) -> None:
    """Remove a claim this process made (after the write, or the failure)."""
    if isinstance(path, Path) and (_owner(path) or "").startswith(_OWNER):
        _HELD.discard(str(path))
        with contextlib.suppress(OSError):
            path.unlink()


def release_all(folders) -> None:
    """Remove every claim this process left in ``folders``, tracked or not: a signal can land
    between a claim's creation and its bookkeeping (and between a take-over's two steps)."""
    for folder in folders:
        try:
            entries = [e for e in os.scandir(folder) if e.name.startswith(".")]
        except OSError:
            continue
        for entry in entries:
            owner = (_owner(Path(entry.path)) or "") if entry.name.endswith(".claim") else None
            # ours, or one this process was making when the signal landed, before its owner was written
            mine = owner is not None and (owner.startswith(_OWNER) or (not owner and entry.path in _MAKING))
            if mine or entry.name.endswith(f".claim.{os.getpid()}.stale"):
                _HELD.discard(entry.path)
                _MAKING.discard(entry.path)
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


_OWNER = f"{os.getpid()}@{_HOST}\n"
# The claims this process holds: a claim with this process's number that is not among them
# was left by an earlier process of the same number (a container's pid 1, a reused pid).
_HELD: set[str] = set()
# The claim being made now: created, its owner perhaps not yet written (``release_all``).
_MAKING: set[str] = set()


def _owner(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read(200)
    except OSError:
        return None


def _run_of(path: Path) -> str | None:
    """The cluster run named in a claim, if any."""
    lines = (_owner(path) or "").splitlines()
    return lines[1].strip() if len(lines) > 1 else None


def _remove_if_stale(path: Path) -> bool:
    """Remove a claim left by a killed run: this host's with its process gone, any other
    after ``CLAIM_MAX_AGE_S``.  True when it was removed (or is gone)."""
    owner = _owner(path)
    if owner is None:
        return not path.exists()
    pid, _, host = owner.partition("\n")[0].strip().partition("@")
    try:
        seen = path.stat()
    except OSError:
        return True
    probe = host == _HOST and pid.isdecimal()
    if probe and int(pid) == os.getpid():
        stale = str(path) not in _HELD  # an earlier process of this number left it
    else:
        stale = not _alive(int(pid)) if probe else time.time() - seen.st_mtime > CLAIM_MAX_AGE_S
    return stale and _take_over(path, seen)


def _take_over(path: Path, seen: os.stat_result) -> bool:
    """Remove the stale claim ``seen`` at ``path``, unless another run replaced it meanwhile:
    it is moved aside first (one run wins the move), and put back if it is not the one judged."""
    aside = path.with_name(f"{path.name}.{os.getpid()}.stale")
    try:
        os.rename(path, aside)
    except OSError:
        return not path.exists()
    try:
        if os.stat(aside).st_ino != seen.st_ino:  # a fresh claim of another run: put it back
            with contextlib.suppress(OSError):
                os.link(aside, path)
            return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(aside)
