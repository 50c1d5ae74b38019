"""A batch run again over outputs that exist: finish what is missing, and never do nothing in silence.

An output already there is skipped when its picture records the settings of this run: running
the same command again finishes what an interrupted run left.  Made with other settings
(another preset, layer, step count), it is kept, and under the default name the new dream goes
beside it under a name that says what differs: ``photo_dream-eyes.png`` (the preset, else the
first layer), then ``photo_dream-eyes-1a2b3c4d.png`` (a hash of the settings), so that trying
styles on a folder gives every style its pictures and a rerun of any of them skips what it made.
Under a name the user chose (``--name``, ``-o FILE``) nothing is renamed: the skip says why, and
how to replace it.  Pillow only, no torch: planned before the model loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dreamcli.config import FIELDS, Settings
from dreamcli.io.metadata import read_metadata
from dreamcli.jobs.outputs import Job

SAME = "already dreamed with these settings: --overwrite dreams again"
OTHER = "made with {what}: --overwrite replaces, or choose another --name"


def comparable(settings: Settings) -> dict[str, Any]:
    """What makes two dreams the same picture: every setting, the seed only when one was given."""
    values = settings.to_dict()
    if settings.seed is None:
        values.pop("seed")
    return values


def recorded(path: Path) -> dict[str, Any] | None:
    """The metadata of a picture dreamcli made at ``path``, or None (not there, or not ours)."""
    return read_metadata(path) if os.path.isfile(path) else None


def difference(record: dict[str, Any], settings: Settings, preset: str | None) -> str | None:
    """None when ``record`` (a picture's metadata) is a dream of ``settings``, else what differs,
    in a few words: ``preset preview``, or ``another --iterations, --octaves``."""
    try:  # anyone's file: settings this version cannot read are other settings
        old = Settings.from_mapping(record["settings"])
    except Exception:
        return "settings this version cannot read"
    want, have = comparable(settings), old.to_dict()
    changed = [key for key in want if want[key] != have.get(key)]
    if not changed:
        return None
    if record.get("preset") != preset:
        return f"preset {record['preset']}" if record.get("preset") else "no preset"
    flags = [FIELDS[key].flag if key in FIELDS else f"--{key.removesuffix('s')}" for key in changed]
    return "another " + ", ".join(flags[:3]) + (" ..." if len(flags) > 3 else "")


def _label(settings: Settings, preset: str | None) -> str:
    """What names a dream of these settings: the preset, else its first layer."""
    text = preset or str(settings.layers[0].name)
    return "".join(c if c.isalnum() or c in "_-" else "-" for c in text).strip("-")[:60] or "custom"


def candidates(output: Path, settings: Settings, preset: str | None) -> list[Path]:
    """Where a dream of ``settings`` goes when ``output`` holds one of other settings."""
    digest = hashlib.sha256(json.dumps(comparable(settings), sort_keys=True).encode()).hexdigest()[:8]
    label = _label(settings, preset)
    return [
        output.with_name(f"{output.stem}-{label}{output.suffix}"),
        output.with_name(f"{output.stem}-{label}-{digest}{output.suffix}"),
    ]


def settle(
    jobs: Sequence[Job], settings: Settings, preset: str | None, renamable: Callable[[Job], bool]
) -> tuple[list[Job], list[str]]:
    """The jobs, each whose output exists either told why it is skipped (``Job.kept``) or moved
    to a settings-aware name (``renamable(job)``: its name is dreamcli's default); and the notes
    to show (what was renamed, once for the run).  Not for --overwrite, which replaces."""
    taken = {os.path.abspath(p) for job in jobs for p in (job.source, job.output)}
    settled: list[Job] = []
    moved: list[tuple[Job, Job, str]] = []
    for job in jobs:
        record = recorded(job.output)
        what = difference(record, settings, preset) if record is not None else None
        if record is None or what is None:  # a user's file (skipped as ever), or this very dream
            settled.append(dataclasses.replace(job, kept=SAME) if record is not None else job)
            continue
        target = None
        if renamable(job):
            for path in candidates(job.output, settings, preset):
                if os.path.abspath(path) in taken:
                    continue
                there = recorded(path)
                if not os.path.lexists(path) or (
                    there is not None and difference(there, settings, preset) is None
                ):
                    target = path
                    break
        if target is None:
            settled.append(dataclasses.replace(job, kept=OTHER.format(what=what)))
            continue
        taken.add(os.path.abspath(target))
        new = dataclasses.replace(job, output=target, kept=SAME if os.path.lexists(target) else None)
        settled.append(new)
        if new.kept is None:
            moved.append((job, new, what))
    return settled, _notes(moved)


def _notes(moved: list[tuple[Job, Job, str]]) -> list[str]:
    if not moved:
        return []
    old, new, what = moved[0]
    if len(moved) == 1:
        return [
            f"{old.output} was made with {what}: this dream is {new.output.name} "
            "(--overwrite replaces the old one instead)"
        ]
    return [
        f"{len(moved)} outputs were made with {what}: these dreams go beside them, "
        f"named like {new.output.name} (--overwrite replaces the old ones instead)"
    ]
