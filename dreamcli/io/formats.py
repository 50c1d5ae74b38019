"""File kinds and output names, torch-free, so the CLI can route inputs before loading torch."""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from dreamcli.errors import ImageError, SettingsError

# Output formats by extension; JPEG cannot keep alpha, the others can.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
KEEPS_ALPHA = {"PNG", "WEBP", "TIFF"}
# Extensions that batch mode treats as images when it walks a folder.
IMAGE_EXTENSIONS = set(FORMATS) | {".bmp", ".gif", ".jfif", ".ppm", ".pgm", ".tga"}
# An input with one of these is a video to dream frame by frame.
VIDEO_INPUTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
# Animation outputs (a zoom may also write a folder of PNGs).
ANIMATIONS = {".gif", ".webp", ".mp4"}
# Batch output names: the --name default and the fields a template may use.
DEFAULT_TEMPLATE = "{stem}_dream.png"
TEMPLATE_FIELDS = ("stem", "ext", "preset", "layer", "channels", "index")


def shown(path: str | Path) -> str:
    """``path`` for a message: as it is, or quoted the way bash writes it ($'...') when it has
    control characters (a newline) or bytes that are not UTF-8, so the message stays one line
    and names the file exactly."""
    text = str(path)
    try:
        text.encode("utf-8")
        plain = text.isprintable()
    except UnicodeEncodeError:  # os.fsdecode kept undecodable bytes as surrogates
        plain = False
    if plain:
        return text
    escaped = "".join(
        chr(b) if 32 <= b < 127 and b not in (39, 92) else f"\\x{b:02x}" for b in os.fsencode(text)
    )
    return f"$'{escaped}'"


def output_format(path: str | Path) -> str:
    """The Pillow format for an output path, or an error that lists the choices."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        choices = ", ".join(sorted({s.lstrip(".") for s in FORMATS}))
        raise ImageError(
            f"cannot write {path}: unknown image extension {suffix or '(none)'!r}; use one of {choices}"
        )
    return FORMATS[suffix]


def check_output(path: str | Path) -> None:
    """``output_format`` as a usage error (exit 2), for outputs checked before any work."""
    try:
        output_format(path)
    except ImageError as exc:
        hint = "; to write into a folder, end the path with /" if not Path(path).suffix else ""
        raise SettingsError(f"{exc}{hint}") from None


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (links followed); False where either is not there."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def refuse_inputs(output: str | Path, inputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """Refuse to write ``output`` over a file the command reads, whatever ``--overwrite`` says.

    ``inputs``: (what it is, e.g. "--start", its path); a path is compared as it is and
    as the file a link points to, so a link or a second name of the file is caught too.
    """
    for what, source in inputs:
        if source is not None and same_file(source, output):
            raise SettingsError(
                f"{shown(output)} is the {what} {shown(source)} this command reads; dreamcli never "
                "overwrites an input: choose another -o"
            )


FRAME = re.compile(r"frame_(\d{5,})\.png")  # a zoom's frames in a folder: frame_00001.png ...


def frame_names(count: int) -> Iterator[str]:
    """The names of a zoom's ``count`` PNG frames in a folder."""
    return (f"frame_{index:05d}.png" for index in range(1, count + 1))


def refuse_frames_over(folder: Path, count: int, inputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """A folder of ``count`` frames must not replace a file the command reads (the photo
    zoomed into, among its own earlier frames)."""
    for what, source in inputs:
        if source is None:
            continue
        for path in {Path(source), Path(os.path.realpath(source))}:
            found = FRAME.fullmatch(path.name)
            if found and 1 <= int(found[1]) <= count and same_file(path.parent, folder):
                raise SettingsError(
                    f"{shown(folder)} would get a frame {path.name}, the {what} {shown(source)} this "
                    "command reads; dreamcli never overwrites an input: choose another -o"
                )


def check_output_path(raw: str | None, path: Path) -> None:
    """Refuse, before any work, an ``-o`` that names nothing (``-o ''`` would write into the
    current folder) or that goes through a file (``notes.txt/out.png``)."""
    if raw is not None and not raw.strip():
        raise SettingsError(f"-o {raw!r} names no file; give a file, or a folder ending with /")
    for parent in path.parents:
        if os.path.lexists(parent) and not parent.is_dir():
            raise SettingsError(f"cannot write {shown(path)}: {shown(parent)} is a file, not a folder")


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` is no file to read, said after its name (``does not exist``, ``is a folder``,
    ``is a FIFO, not a regular file``), or None for a regular file.  The one check of every
    picture a flag names (--mask, --guide, --like) and of every input; only regular files are
    read: opening a FIFO would wait forever for a writer."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"is a link to {os.readlink(path)}, which does not exist"
        return "does not exist"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link that leads back to itself (a link loop)"
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a folder"
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"is {kind}, not a regular file"
    return None
