"""What the worker runs for the page's "Inside the network" (``inside`` makes the jobs).

``explanation``: ``jobs.explain.explain`` on the upload, then the files the page shows (the
photo as the network saw it, each cell's and group's picture, each group's map over the
photo) and the CLI's own (``write_explanation``: the poster, its page and its JSON, which the
page reads).  ``unit``: ``jobs.units.make_units`` for one channel into the session's site of
that layer and those picture settings (``site_name``), so its cache makes each unit once:
a second unit job of the same channel scans the photos again (new uploads count) and makes
no picture.  The unit's examples are copied into the job's own folder (the site's are
rewritten by the next job of that channel); its pictures are the cache's, never rewritten.
Every file is written atomically; the job's folder is removed if the job stops half way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dreamcli.events import Report, Stage
from dreamcli.io.atomic import atomic_write
from dreamcli.jobs.unit_options import ExplainOptions, UnitsOptions
from dreamcli.run.session import Session
from dreamcli.web.work import Upload


def explanation(
    session: Session,
    up: Upload,
    layer: str,
    options: ExplainOptions,
    folder: Path,
    poster: str,
    report: Report,
) -> dict[str, Path]:
    from dreamcli.io.images import to_pil, write_pil
    from dreamcli.jobs.explain import explain
    from dreamcli.jobs.explain_page import map_over, write_explanation

    made = explain(session.loaded, layer, up.path, options, report=report)
    made.data["explain"]["photo"] = up.name  # what the poster and the JSON name: the photo, not our copy
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def picture(name: str, image: Any) -> None:
        write_pil(folder / name, image)
        files[name] = folder / name

    picture("photo.png", to_pil(made.photo))
    size = (made.photo.shape[2], made.photo.shape[1])
    for i, cell in enumerate(made.cell_pictures):
        picture(f"cell{i}.png", to_pil(cell))
    for k, group in enumerate(made.group_pictures):
        picture(f"group{k}.png", to_pil(group))
        picture(f"group{k}_map.png", map_over(made, k, size))
    write_explanation(made, folder / poster)
    files["poster.png"] = folder / poster
    files["explanation.json"] = (folder / poster).with_suffix(".json")
    return files


def site_name(session: Session, layer: str, options: UnitsOptions) -> str:
    """The folder of the session's unit site for ``layer`` at these picture settings."""
    from dreamcli.jobs.units import cache_key

    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in layer)[:60]
    return f"{safe}-{cache_key(session.loaded.label, layer, options)}"


def unit(
    session: Session,
    photos: list[Upload],
    layer: str,
    options: UnitsOptions,
    site: Path,
    folder: Path,
    report: Report,
) -> dict[str, Path]:
    from dreamcli.jobs.units import make_units

    made: list[int] = []

    def heard(event: Any) -> None:
        if isinstance(event, Stage) and event.stage == "pictures" and event.done == 0:
            made.append(event.total)  # units to picture: 0 when the cache had it
        report(event)

    site.mkdir(parents=True, exist_ok=True)
    data = make_units(session.loaded, layer, [up.path for up in photos], site, options, report=heard)
    shown = data["list"][0]
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    pictures = {}
    for name, relative in shown["pictures"].items():
        files[f"{name}.png"] = site / relative
        pictures[name] = f"{name}.png"
    by_path = {str(up.path): up for up in photos}
    examples = []
    for rank, example in enumerate(shown["examples"], start=1):
        for key, suffix in (("crop", ""), ("map", "_map")):
            name = f"example{rank}{suffix}.png"
            _copy(site / example[key], folder / name)
            files[name] = folder / name
        up = by_path[example["photo"]]
        examples.append(
            {
                "photo": up.name,
                "upload": up.id,
                "view": example["view"],
                "value": example["value"],
                "crop": f"example{rank}.png",
                "map": f"example{rank}_map.png",
            }
        )
    skipped = [_named(s["error"], photos) for s in data["skipped"]]
    record = {
        "layer": layer,
        "channel": shown["channel"],
        "channels": data["units"]["channels"],
        "score": shown["score"],
        "values": shown["values"],
        "diverse_similarity": shown.get("diverse_similarity"),
        "pictures": pictures,
        "cached": made[:1] == [0],
        "photos": len(photos) - len(skipped),
        "views": data["units"]["views"],
        "examples": examples,
        "skipped": skipped,
    }
    text = json.dumps(record, indent=1, ensure_ascii=True) + "\n"
    atomic_write(folder / "unit.json", lambda handle: handle.write(text.encode("ascii")))
    files["unit.json"] = folder / "unit.json"
    return files


def _copy(source: Path, target: Path) -> None:
    with open(source, "rb") as handle:
        atomic_write(target, lambda out: shutil.copyfileobj(handle, out))


def _named(message: str, photos: list[Upload]) -> str:
    for up in photos:
        message = message.replace(str(up.path), up.name)
    return message.splitlines()[0] if message else "failed"
