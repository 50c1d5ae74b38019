"""Unit pages: what each chosen channel of a layer responds to, beside examples from your photos.

As Distill's "Feature Visualization" (Olah et al. 2017) and OpenAI Microscope show a unit:

1. *scan*: every photo (and, with ``crops``, its four corner crops of half its side, seen
   at the same size: the photo zoomed in twice) goes through the network up to the layer;
   per view and channel the highest activation and where it is.  A photo that cannot be
   read is reported and left out.
2. *channels*: the ones asked for, or the ``top`` that the views drive hardest (the mean
   over views of each channel's highest activation).
3. *examples*: per unit the ``examples`` views with the highest activation, one each, and
   a crop of the photo around that position, with the channel's map over the photo.
4. *pictures*: per unit its feature picture (signed mean, as ``dream features``), its
   diverse pictures and its negative picture (``unit_pictures``), ``batch`` units at a
   time.  They do not depend on the photos: they are cached in the site under a key of
   the network, its weights, the layer and the picture settings, and a rerun with more
   photos or more channels makes only the units it lacks.

After each batch the site (``unit_site``) is written again, atomically page by page, so an
interrupted run leaves a valid site of the units that were finished.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dreamcli.errors import DreamError, SettingsError, describe
from dreamcli.events import PhotoSkipped, Report, Stage, ignore
from dreamcli.io.atomic import atomic_write
from dreamcli.io.images import to_pil, write_pil
from dreamcli.jobs import unit_site
from dreamcli.jobs.spatial import layer_map, read_photo
from dreamcli.jobs.unit_options import UnitsOptions
from dreamcli.jobs.unit_pictures import make_unit_pictures, plan
from dreamcli.models import Loaded

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
CACHE_FORMAT = 1  # bump when what a cached unit holds changes


@dataclass(frozen=True)
class View:
    """One image of the scan: a photo, or a corner of it; ``box`` in fractions of the photo."""

    photo: int
    name: str  # whole, or a corner
    box: tuple[float, float, float, float]  # left, top, right, bottom


@dataclass
class Scan:
    """Per view (V) and channel (C): the highest activation and its place (fractions of the photo)."""

    paths: list[Path]
    views: list[View]
    peak: torch.Tensor  # (V, C)
    x: torch.Tensor  # (V, C)
    y: torch.Tensor  # (V, C)
    skipped: list[dict[str, str]]
    sizes: dict[int, tuple[int, int]]  # each photo's (width, height) as read

    def score(self) -> torch.Tensor:
        """How strongly the photos drive each channel: the mean over views of its peak."""
        return self.peak.mean(0)


def views_of(rgb: torch.Tensor, size: int, crops: bool) -> list[tuple[str, tuple[float, ...], torch.Tensor]]:
    """The whole photo at ``size`` and (``crops``) its four half-side corners, each at ``size``;
    with each, its box in fractions of the photo."""
    from dreamcli.io.images import shrink

    out: list[tuple[str, tuple[float, ...], torch.Tensor]] = [
        ("whole", (0.0, 0.0, 1.0, 1.0), shrink(rgb, size))
    ]
    if crops:
        h, w = rgb.shape[-2:]
        hh, hw = (h + 1) // 2, (w + 1) // 2
        for name, (x0, y0) in zip(CORNERS, ((0, 0), (w - hw, 0), (0, h - hh), (w - hw, h - hh)), strict=True):
            box = (x0 / w, y0 / h, (x0 + hw) / w, (y0 + hh) / h)
            out.append((name, box, shrink(rgb[:, y0 : y0 + hh, x0 : x0 + hw], size)))
    return out


def scan(
    module: nn.Module, layer: str, paths: Sequence[Path], options: UnitsOptions, report: Report = ignore
) -> Scan:
    """Stage 1: every view's highest activation per channel, and where."""
    views: list[View] = []
    peaks, xs, ys, skipped = [], [], [], []
    sizes: dict[int, tuple[int, int]] = {}
    report(Stage("scan", 0, len(paths)))
    for index, path in enumerate(paths):
        try:
            rgb = read_photo(path, options.photo_size, zoom=2 if options.crops else 1)
            sizes[index] = (rgb.shape[2], rgb.shape[1])
            for name, box, image in views_of(rgb, options.photo_size, options.crops):
                act = layer_map(module, layer, image[None])[0]  # (C, h, w)
                rows, cols = act.shape[-2:]
                best, where = act.flatten(1).max(1)
                left, top, right, bottom = box
                xs.append(left + (right - left) * ((where % cols).float() + 0.5) / cols)
                ys.append(top + (bottom - top) * ((where // cols).float() + 0.5) / rows)
                peaks.append(best)
                views.append(View(index, name, (left, top, right, bottom)))
        except SettingsError:
            raise
        except Exception as exc:  # one bad photo never stops the others
            message = str(exc) if isinstance(exc, DreamError) else f"cannot use {path}: {describe(exc)}"
            skipped.append({"path": str(path), "error": message})
            report(PhotoSkipped(path, message))
        report(Stage("scan", index + 1, len(paths)))
    if not views:
        raise DreamError(f"none of the {len(paths)} photos could be used (each is named above)")
    return Scan(list(paths), views, torch.stack(peaks), torch.stack(xs), torch.stack(ys), skipped, sizes)


def examples_of(found: Scan, channel: int, options: UnitsOptions) -> list[dict[str, Any]]:
    """A unit's dataset examples: the views with its highest activation, the highest first,
    each with a square box around that position (fractions of the photo) inside its view."""
    order = torch.argsort(found.peak[:, channel], descending=True, stable=True)[: options.examples]
    examples = []
    for v in order.tolist():
        view = found.views[v]
        width, height = found.sizes[view.photo]
        x, y = float(found.x[v, channel]), float(found.y[v, channel])
        left, top, right, bottom = view.box
        side = options.example_share * max((right - left) * width, (bottom - top) * height)
        box = []
        for centre, low, high, scale in ((x, left, right, width), (y, top, bottom, height)):
            half = min(side / scale, high - low) / 2
            middle = min(max(centre, low + half), high - half)
            box.append((middle - half, middle + half))
        examples.append(
            {
                "photo": str(found.paths[view.photo]),
                "view": view.name,
                "value": round(float(found.peak[v, channel]), 5),
                "x": round(x, 5),
                "y": round(y, 5),
                "box": [round(box[0][0], 5), round(box[1][0], 5), round(box[0][1], 5), round(box[1][1], 5)],
                "_view": int(v),
            }
        )
    return examples


def cache_key(model_label: str, layer: str, options: UnitsOptions) -> str:
    text = json.dumps(
        {"format": CACHE_FORMAT, "model": model_label, "layer": layer, **options.picture_key}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def make_units(
    model: Loaded | nn.Module,
    layer: str,
    paths: Sequence[str | Path],
    folder: str | Path,
    options: UnitsOptions | None = None,
    *,
    report: Report = ignore,
    label: str | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Write the unit site of ``layer`` over ``paths`` into ``folder``; returns its JSON.

    ``model`` is a loaded network or any module taking RGB in [0, 1] (then ``layer`` is
    a module's name and ``label`` names the network and weights for the cache's key).
    ``fresh``: make every unit's pictures again, whatever the cache holds.
    """
    options = options or UnitsOptions()
    module, name = (model.module, model.resolve(layer)) if isinstance(model, Loaded) else (model, layer)
    label = label or (model.label if isinstance(model, Loaded) else type(model).__name__)
    folder = Path(folder)
    photos = [Path(p) for p in paths]
    if not photos:
        raise SettingsError("no photos to find dataset examples in")
    found = scan(module, name, photos, options, report)
    count = found.peak.shape[1]
    if options.channels is not None and max(options.channels) >= count:
        raise SettingsError(
            f"layer {layer!r} has {count} channels (0-{count - 1}); "
            f"channel {max(options.channels)} does not exist"
        )
    score = found.score()
    chosen = (
        list(options.channels)
        if options.channels is not None
        else torch.argsort(score, descending=True, stable=True)[: options.top].tolist()
    )
    key = cache_key(label, layer, options)
    store = folder / "pictures" / key
    store.mkdir(parents=True, exist_ok=True)
    site = {
        "units": {
            "layer": layer,
            "model": label,
            "key": key,
            "photos": [str(p) for p in photos],
            "views": len(found.views),
            "channels": count,
            **_public(options),
        },
        "list": [],
        "skipped": found.skipped,
    }
    units = {c: cached for c in chosen if not fresh and (cached := _cached(store, c)) is not None}
    missing = [c for c in chosen if c not in units]
    examples = {c: examples_of(found, c, options) for c in chosen}
    sources = {c: [found.views[e.pop("_view")].photo for e in examples[c]] for c in chosen}
    maps = _maps(module, name, found, sorted({p for c in chosen for p in sources[c]}), chosen, options)
    unit_site.write_examples(folder, found.paths, examples, sources, maps, options)
    _publish(folder, site, chosen, units, examples, score)
    batches = [missing[i : i + options.batch] for i in range(0, len(missing), options.batch)]
    report(Stage("pictures", 0, len(missing)))
    done = 0
    for number, chunk in enumerate(batches):
        left = (len(batches) - number, len(missing) - done)
        made = make_unit_pictures(
            module, name, chunk, options, report=report, estimate=left if number == 0 else None
        )
        for channel in chunk:
            units[channel] = _store(store, channel, made, plan(chunk, options.diverse))
        done += len(chunk)
        _publish(folder, site, chosen, units, examples, score)
        report(Stage("pictures", done, len(missing)))
    return site


def _public(options: UnitsOptions) -> dict[str, Any]:
    return {
        k: getattr(options, k)
        for k in (
            "photo_size",
            "crops",
            "examples",
            "example_share",
            "size",
            "steps",
            "diverse",
            "diversity",
            "param",
            "seed",
        )
    }


def _maps(
    module, layer: str, found: Scan, wanted: list[int], chosen: list[int], options: UnitsOptions
) -> dict[int, torch.Tensor]:
    """Each photo among the units' examples: the chosen channels' maps over the whole photo."""
    maps = {}
    for photo in wanted:
        rgb = read_photo(found.paths[photo], options.photo_size)
        maps[photo] = layer_map(module, layer, rgb[None])[0][chosen]
    return maps


def _publish(folder: Path, site: dict, chosen: list[int], units: dict, examples: dict, score) -> None:
    """The index and pages of the units finished so far, strongest first."""
    listed = []
    for channel in sorted((c for c in chosen if c in units), key=lambda c: -float(score[c])):
        shown = [
            dict(e, crop=unit_site.crop_name(channel, rank), map=unit_site.map_name(channel, rank))
            for rank, e in enumerate(examples[channel], start=1)
        ]
        listed.append(
            {
                "channel": channel,
                "score": round(float(score[channel]), 5),
                **units[channel],
                "examples": shown,
            }
        )
    site["list"] = listed
    unit_site.write_site(folder, site)


def _store(store: Path, channel: int, made, slots) -> dict[str, Any]:
    """One unit's pictures and values into the cache; its JSON last, which marks it complete."""
    record: dict[str, Any] = {"pictures": {}, "values": {}}
    for i, slot in enumerate(slots):
        if slot.channel != channel:
            continue
        name = slot.kind if slot.kind != "diverse" else f"diverse{slot.index}"
        path = store / f"c{channel:04d}_{name}.png"
        write_pil(path, to_pil(made.images[i]))
        record["pictures"][name] = f"pictures/{store.name}/{path.name}"
        record["values"][name] = {"mean": round(made.mean[i], 5), "max": round(made.peak[i], 5)}
    if channel in made.similarity:
        record["diverse_similarity"] = round(made.similarity[channel], 5)
    text = json.dumps(record, indent=1) + "\n"
    atomic_write(store / f"c{channel:04d}.json", lambda handle: handle.write(text.encode()))
    return record


def _cached(store: Path, channel: int) -> dict[str, Any] | None:
    """A unit made by an earlier run with the same key, if whole; anything odd is made again."""
    try:
        record = json.loads((store / f"c{channel:04d}.json").read_text(encoding="utf-8"))
        pictures = record["pictures"]
        ok = (
            isinstance(pictures, dict)
            and pictures
            and all(
                isinstance(p, str) and (store / Path(p).name).is_file() and Path(p).parent.name == store.name
                for p in pictures.values()
            )
        )
        return record if ok and isinstance(record.get("values"), dict) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
