"""Which files a command takes: files, folders (walked, ``-r``), shards.  No torch.

Inside folders only image files are taken, and dreamcli's own earlier outputs
(their metadata marks them) are left out unless asked for; files named directly
are always tried, and a bad one fails with its own error.  Where each one's
dream goes is ``naming``'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dreamcli.errors import SettingsError, brief
from dreamcli.events import FileDone
from dreamcli.io.atomic import is_ours
from dreamcli.io.formats import IMAGE_EXTENSIONS
from dreamcli.io.metadata import is_dream


@dataclass(frozen=True)
class Job:
    """One input file and where its dream goes."""

    source: Path
    output: Path
    index: int  # 1-based position among all inputs (before sharding), for {index}
    name: str | None = None  # the input's name to record, where it is not the file's (the page's upload)
    kept: str | None = None  # why an output already there is skipped (jobs.reruns), when known

    @property
    def input_name(self) -> str:
        return self.name if self.name is not None else self.source.name


@dataclass
class Inputs:
    """Files to dream, each with the folder it was found under (for ``-r`` structure)."""

    files: list[tuple[Path, Path | None]] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)  # in folders, without an image extension
    dreams: list[Path] = field(default_factory=list)  # in folders, written by dreamcli: left out
    hidden: list[Path] = field(default_factory=list)  # hidden files in folders, not dreamcli's own
    refused: list[FileDone] = field(default_factory=list)  # paths no file can have: they fail alone


def collect_inputs(args: Sequence[str | Path], recursive: bool = False, dreams: bool = False) -> Inputs:
    """Expand files and folders into image files, sorted by path within each folder.

    Hidden files and folders are skipped; hidden files not of dreamcli's making
    (``.NAME.part`` temporaries, ``.NAME.claim`` claims) are counted in
    ``Inputs.hidden`` (the files inside hidden folders are not).  With ``dreams`` False, pictures dreamcli
    wrote are left out of folders, so a second run does not dream its own
    outputs; they are counted in ``Inputs.dreams``.  A file reached twice by
    the same path is taken once; a link and its target are two inputs.
    """
    found = Inputs()
    seen: set[str] = set()
    for arg in args:
        path = Path(arg)
        if "\0" in str(arg):  # read from stdin without -0: a NUL cannot be in a file's name
            reason = f"{path} holds a NUL byte; for NUL-separated paths on stdin add -0 (find -print0)"
            found.refused.append(FileDone(path, path, "failed", error=reason))
            continue
        if not path.is_dir():
            _add(found, seen, path, None)
            continue
        walker = path.rglob("*") if recursive else path.glob("*")
        for child in sorted(walker):
            parts = child.relative_to(path).parts
            if any(part.startswith(".") for part in parts[:-1]):
                continue  # inside a hidden folder (ours: .NAME.frames)
            if child.is_dir():
                continue
            if parts[-1].startswith("."):
                if not is_ours(parts[-1]):
                    found.hidden.append(child)
                continue
            if child.suffix.lower() not in IMAGE_EXTENSIONS:
                found.not_images.append(child)
            elif not dreams and is_dream(child):
                found.dreams.append(child)
            else:
                _add(found, seen, child, path)  # FIFOs and broken links fail alone, with their reason
    return found


def _add(found: Inputs, seen: set[str], path: Path, root: Path | None) -> None:
    # abspath, not resolve: a symlink loop must not raise here, and a link is its own input.
    key = os.path.abspath(path)
    if key not in seen:
        seen.add(key)
        found.files.append((path, root))


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N) with 1 <= K <= N."""
    k, slash, n = text.partition("/")
    k, n = k.strip(), n.strip()
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if not slash or not k.isdecimal() or not n.isdecimal() or not 1 <= int(k) <= int(n):
        raise SettingsError(f"shard {brief(text)} is not valid: write K/N with 1 <= K <= N, e.g. 2/4")
    return int(k), int(n)


def take_shard(jobs: Sequence[Job], k: int, n: int) -> list[Job]:
    """A stable 1/N share: the K-th of every N jobs in sorted-path order.

    Every machine sorts the same paths the same way, so N shards cover every
    job exactly once, and round-robin keeps the shares within one file in size.
    """
    ordered = sorted(jobs, key=lambda job: str(job.source))
    return ordered[k - 1 :: n]


def one_photo(names: Sequence[str], command: str) -> Path:
    """The one photo a command takes (a sheet, a zoom of a photo, a video)."""
    if len(names) != 1:
        raise SettingsError(f"dream {command} takes one PHOTO; got {len(names)}")
    return Path(names[0])


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
