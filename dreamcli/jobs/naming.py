"""Output names: where each dream, sheet, animation, heat map and download goes.  No torch.

The one module that names outputs.  Planned before torch and the model load, so
that a bad name template, colliding outputs or a run with nothing left to do is
told at once.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dreamcli import models
from dreamcli.config import Settings
from dreamcli.errors import DreamError, SettingsError, brief
from dreamcli.events import FileDone
from dreamcli.io.formats import (
    ANIMATIONS,
    DEFAULT_TEMPLATE,
    IMAGE_EXTENSIONS,
    TEMPLATE_FIELDS,
    check_output,
    refuse_inputs,
    shown,
)
from dreamcli.jobs.inputs import Inputs, Job, same_file


def check_template(template: str) -> None:
    """Refuse a ``--name`` template with unknown fields or format specs that cannot apply."""
    fields = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise SettingsError(f"output name template {brief(template)} is not valid: {exc}") from None
    unknown = names - set(TEMPLATE_FIELDS)
    if unknown:
        raise SettingsError(
            f"output name template {brief(template)} uses {{{sorted(unknown)[0]}}}; the fields are {fields}"
        )
    try:
        template.format(
            stem="photo", ext="jpg", preset="classic", layer="inception_4c", index=1, channels="0"
        )
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise SettingsError(
            f"output name template {brief(template)} is not valid ({exc}); {{index}} is a number "
            f"(e.g. {{index:04d}}), the other fields are text"
        ) from None


def output_name(template: str, source: Path, index: int, preset: str | None, settings: Settings) -> str:
    """``template`` filled in for ``source``.  A folder (``/``) or a ``..`` in the result must
    come from the template as typed: a field's value (a file's stem, a preset name read from
    a picture) never puts the output in another folder."""
    first = (settings.layers or models.get(settings.model).settings().layers)[0]  # none: the network's
    values = {
        "stem": source.stem,
        "ext": source.suffix.lstrip(".").lower(),
        "preset": preset or "custom",
        "layer": str(first.name).replace("/", "-").replace(".", "-"),
        "index": index,
        "channels": channel_text(first.channels),
    }
    formatter = string.Formatter()
    pieces: list[tuple[str, bool]] = []  # (text, typed by the user)
    for literal, name, spec, conversion in formatter.parse(template):
        pieces.append((literal, True))
        if name is not None:
            value = formatter.convert_field(values[name], conversion)
            pieces.append((formatter.format_field(value, formatter.format(spec or "", **values)), False))
    components: list[list[tuple[str, bool]]] = [[]]
    for text, typed in pieces:
        if not typed and any(sep and sep in text for sep in ("/", os.sep, os.altsep, "\0")):
            raise SettingsError(
                f"--name {brief(template)}: a field's value for {shown(source)} holds a folder or "
                f"NUL ({brief(text)}); put folders in the template itself"
            )
        for i, part in enumerate(text.split("/") if typed else [text]):
            if i:
                components.append([])
            components[-1].append((part, typed))
    for component in components:
        if "".join(text for text, _ in component) == ".." and not all(typed for _, typed in component):
            raise SettingsError(
                f"--name {brief(template)}: the name of {shown(source)} would climb out of the output "
                "folder ('..' from a field's value); choose another --name"
            )
    return "".join(text for text, _ in pieces)


def channel_text(channels: Sequence[int] | None) -> str:
    """Channels for a file name: ``(0, 1, 2, 3, 12)`` -> ``0-3+12``; none -> ``all``."""
    if not channels:
        return "all"
    runs: list[list[int]] = []
    for c in channels:
        if runs and c == runs[-1][-1] + 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    return "+".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def default_template(guided: bool = False, classes: Sequence[str] = (), channels: bool = False) -> str:
    """The default ``--name`` of each kind of dream, so that a guided dream, a class dream or a
    channel dream after a plain one writes a new file instead of skipping."""
    if guided:
        return "{stem}_guided.png"
    if classes:
        slug = "+".join(re.sub(r"[^A-Za-z0-9_-]+", "-", name.strip()).strip("-") for name in classes)
        return f"{{stem}}_class-{slug[:80]}.png"
    if channels:
        return "{stem}_{layer}-{channels}.png"
    return DEFAULT_TEMPLATE


def plan_jobs(
    inputs: Inputs,
    output: Path | None,
    template: str,
    settings: Settings,
    preset: str | None = None,
    into_folder: bool = False,
    reads: Mapping[str, Path | None] | None = None,
) -> list[Job]:
    """Decide every output path; two inputs that would write one file, or a dream that
    would replace another input, are refused.

    ``output`` is a file for one input, else a folder (``into_folder`` says the
    user asked for a folder, e.g. by ending the path with ``/``).  ``reads``: the other
    files every dream reads, by what they are (``{"guide": path}``; the settings' mask is
    added here): no output may replace one of them.
    """
    check_template(template)
    many = len(inputs.files) > 1 or any(root is not None for _, root in inputs.files)
    folder = output is not None and (many or into_folder or output.is_dir())
    if (
        output is not None
        and folder
        and many
        and not into_folder
        and not output.is_dir()
        and output.suffix.lower() in IMAGE_EXTENSIONS
    ):
        raise SettingsError(
            f"-o {output}: with several inputs -o names a folder, and {output.name} looks like a file; "
            f"give a folder (end it with / to make a new one)"
        )
    jobs = []
    for index, (source, root) in enumerate(inputs.files, start=1):
        name = output_name(template, source, index, preset, settings)
        if output is None:
            target = source.parent / name
        elif folder:
            sub = source.parent.relative_to(root) if root is not None else Path()
            target = output / sub / name
        else:
            target = output
        check_output(target)
        jobs.append(Job(source, target, index))
    _refuse_collisions(jobs)
    read = dict(reads or {}, mask=Path(settings.mask) if settings.mask else None)
    _refuse_replacing(jobs, {name: path for name, path in read.items() if path is not None})
    return jobs


def _refuse_replacing(jobs: Iterable[Job], reads: Mapping[str, Path]) -> None:
    """No dream is written over the mask or the guide it reads, whatever --overwrite says."""
    for job in jobs:
        refuse_inputs(job.output, reads.items())


def _refuse_collisions(jobs: Iterable[Job]) -> None:
    jobs = list(jobs)
    sources = {os.path.abspath(job.source): job for job in jobs}
    writers: dict[str, Job] = {}
    for job in jobs:
        key = os.path.abspath(job.output)
        if key in writers:
            raise SettingsError(
                f"{writers[key].source} and {job.source} would both write {job.output}; "
                "add {ext} or {index} to the --name template"
            )
        other = sources.get(key)
        if other is job or same_file(job.source, job.output):
            raise SettingsError(
                f"{job.output} is the input itself; dreamcli never overwrites an input: choose another -o"
            )
        if other is not None:
            raise SettingsError(
                f"the dream of {job.source} would replace the input {other.source}; "
                "choose another --name or -o"
            )
        writers[key] = job


def skip_reason(job: Job, overwrite: bool) -> str | None:
    """Why ``job`` is not to be dreamed: "skip" (its output exists), an error, or None (dream it)."""
    if not os.path.lexists(job.source):  # said now, before torch and the model load (seconds)
        return f"{job.source} does not exist; check the path"
    if same_file(job.source, job.output):
        return f"{job.output} is the input itself; dreamcli never overwrites an input"
    return output_problem(job.output, overwrite)


def output_problem(output: Path, overwrite: bool = False) -> str | None:
    """ "skip" when ``output`` is a picture already there (and not ``overwrite``), an error
    when something else is in the way or the name cannot be, None when it may be written."""
    too_long = (
        f"cannot write {output}: the output name is too long for the file system; "
        "choose a shorter one with --name"
    )
    if len(os.fsencode(output.name)) > _name_max(output.parent):
        return too_long
    try:
        info = os.stat(output)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return too_long
        return None  # not there (or a broken link, a link loop: the write replaces the link)
    if stat.S_ISDIR(info.st_mode):
        return f"{output} is a folder; remove it or choose another --name"
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket or device"
        return f"{output} is {kind}, not a picture; remove it or choose another --name"
    return None if overwrite else "skip"


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing
    parent, for a folder still to be made) takes."""
    for place in (folder, *folder.parents):
        try:
            return os.pathconf(place, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):  # missing, or no pathconf (Windows)
            continue
    return 255


def triage(jobs: Iterable[Job], overwrite: bool) -> tuple[list[Job], list[FileDone]]:
    """The jobs to dream, and how the others end at once: skipped (the output exists) or
    failed (refused, e.g. the output is the input)."""
    todo, settled = [], []
    for job in jobs:
        reason = skip_reason(job, overwrite)
        if reason is None:
            todo.append(job)
        elif reason == "skip":
            settled.append(FileDone(job.source, job.output, "skipped", error=job.kept))
        else:
            settled.append(FileDone(job.source, job.output, "failed", error=reason))
    return todo, settled


# ---------------------------------------------------------------- one picture or animation


def single_output(
    output: Path | None, into_folder: bool, default: Path, allowed: set[str] | None = None
) -> Path:
    """Where a command that writes one file (a sheet, a zoom, a video, an atlas, a feature
    picture) writes it: ``-o`` as given, or ``default``'s name inside it when it is a folder
    (``-o out/``), else ``default``.  ``allowed``: the extensions it may have ('' = a folder);
    an image format otherwise."""
    path = output or default
    if output is not None and (into_folder or output.is_dir()):
        path = output / default.name
    if allowed is None:
        check_output(path)
    elif path.suffix.lower() not in allowed:
        choices = ", ".join(sorted(s.lstrip(".") or "a folder" for s in allowed))
        raise SettingsError(f"cannot write {path}: use one of {choices}")
    return path


def zoom_output(output: Path | None, into_folder: bool, photo: Path | None, here: bool = False) -> Path:
    """A zoom's file (gif, webp, mp4), or with ``-o frames/`` (or any name without an
    extension) a folder of numbered PNG frames.  ``here``: beside no photo, in the current
    folder (the sample photo lies inside the package)."""
    folder = Path(".") if here or photo is None else photo.parent
    default = folder / (f"{photo.stem}_zoom.gif" if photo else "noise_zoom.gif")
    if output is not None and (into_folder or output.suffix == ""):
        return output  # the folder of frames itself
    return single_output(output, into_folder, default, {*ANIMATIONS, ""})


def sheet_output(output: Path | None, into_folder: bool, photo: Path, here: bool = False) -> Path:
    """A contact sheet: ``PHOTO_sheet.png`` beside the photo (``here``: in the current folder)."""
    folder = Path(".") if here else photo.parent
    return single_output(output, into_folder, folder / f"{photo.stem}_sheet.png")


def features_output(
    output: Path | None,
    into_folder: bool,
    settings: Settings,
    classes: Sequence[str],
    preset: str | None,
    like: str | None = None,
) -> Path:
    """A feature picture: ``features_LAYER.png`` (``-CHANNELS``, or ``_class-NAME``) here;
    ``like`` (``inversion`` or ``caricature``, of ``--like PHOTO``): ``features_LAYER_inversion.png``."""
    if like is not None:
        template = f"features_{{layer}}_{like}.png"
    elif classes:
        template = default_template(classes=classes).replace("{stem}_", "features_")
    elif settings.layers and settings.layers[0].channels:
        template = "features_{layer}-{channels}.png"
    else:
        template = "features_{layer}.png"
    name = output_name(template, Path("features"), 1, preset, settings)
    return single_output(output, into_folder, Path(name))


def explain_output(output: Path | None, into_folder: bool, photo: Path) -> Path:
    """An explanation's page: ``PHOTO_explain.png`` here (its .html and .json beside it)."""
    return single_output(output, into_folder, Path(f"{photo.stem}_explain.png"), {".png"})


def video_output(source: Path, output: Path | None, into_folder: bool = False) -> Path:
    if not source.is_file():
        raise DreamError(f"{source} does not exist; check the path")
    return single_output(output, into_folder, source.with_name(f"{source.stem}_dream.mp4"), {".mp4"})


def heatmap_path(output: Path) -> Path:
    """The heat map written beside a dream: ``photo_dream.png`` -> ``photo_dream_heatmap.png``."""
    return output.with_name(f"{output.stem}_heatmap.png")


def download_name(photo: str, label: str, seed: int | None) -> str:
    """A page tile's download, ``coffee_eyes_123.png``: the photo's stem, the tile's style, its seed."""
    stem = Path(photo).stem or "photo"
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{stem}_{label}").lstrip("-.")
    return f"{safe[:80]}_{seed}.png"


def alpha_path(output: Path) -> Path:
    """A feature picture's transparency map (``--alpha``): ``features_x.png`` -> ``features_x_alpha.png``."""
    return output.with_name(f"{output.stem}_alpha.png")


def changed_path(output: Path) -> Path:
    """Where an accentuation changed the photo: ``photo_dream.png`` -> ``photo_dream_changed.png``."""
    return output.with_name(f"{output.stem}_changed.png")
