"""A unit site's files: the examples' crops and maps, ``units.json``, ``index.html`` and a page
per unit.  Offline (no script, no CDN), every link relative, every file written atomically;
the JSON and the index are written last, so they only ever name files that exist.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import ImageDraw

from dreamcli.io.atomic import atomic_write
from dreamcli.io.images import shrink, to_pil, write_pil

EXAMPLE_SIDE = 128  # pixels of an example's crop on its page
MAP_SIDE = 224  # long side of a photo with a unit's map over it

STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
a{color:#1a5fb4}.grid{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;padding:6px;
border:1px solid #ddd;border-radius:4px;text-align:center}.card img{display:block;margin:auto}
img.px{image-rendering:auto}table{border-collapse:collapse}td,th{padding:4px 8px;text-align:left}
.small{color:#666;font-size:12px}"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def unit_page(channel: int) -> str:
    return f"unit_{channel:04d}.html"


def crop_name(channel: int, rank: int) -> str:
    return f"examples/c{channel:04d}_{rank}.png"


def map_name(channel: int, rank: int) -> str:
    return f"examples/c{channel:04d}_{rank}_map.png"


def write_examples(
    folder: Path,
    paths: list[Path],
    examples: dict[int, list[dict[str, Any]]],
    photos: dict[int, list[int]],
    maps: dict[int, torch.Tensor],
    options,
) -> None:
    """Each unit's example crops, and the unit's map over each example's photo (``maps``: per
    photo, the units' maps in the order of ``examples``)."""
    from dreamcli.jobs.spatial import read_photo

    (folder / "examples").mkdir(parents=True, exist_ok=True)
    read: dict[int, torch.Tensor] = {}
    for position, channel in enumerate(examples):
        for rank, (example, photo) in enumerate(
            zip(examples[channel], photos[channel], strict=True), start=1
        ):
            if photo not in read:
                read[photo] = read_photo(paths[photo], options.photo_size, zoom=2 if options.crops else 1)
            rgb = read[photo]
            height, width = rgb.shape[-2:]
            left, top, right, bottom = example["box"]
            y0, x0 = round(top * height), round(left * width)
            crop = rgb[:, y0 : max(round(bottom * height), y0 + 1), x0 : max(round(right * width), x0 + 1)]
            write_pil(folder / crop_name(channel, rank), to_pil(shrink(crop, EXAMPLE_SIDE)))
            image = to_pil(activation_overlay(shrink(rgb, MAP_SIDE), maps[photo][position]))
            w, h = image.size
            box = (left * w, top * h, right * w - 1, bottom * h - 1)
            ImageDraw.Draw(image).rectangle(box, outline=(0, 200, 255), width=2)
            write_pil(folder / map_name(channel, rank), image)


def write_site(folder: Path, site: dict[str, Any]) -> None:
    """The pages of the units in ``site["list"]``, then ``units.json`` and ``index.html``."""
    meta = site["units"]
    for unit in site["list"]:
        _write_text(folder / unit_page(unit["channel"]), _unit_html(meta, unit))
    text = json.dumps(site, indent=1, ensure_ascii=True) + "\n"
    _write_text(folder / "units.json", text)
    _write_text(folder / "index.html", _index_html(meta, site["list"], site.get("skipped", [])))


def _index_html(meta: dict[str, Any], units: list[dict[str, Any]], skipped: list[dict[str, str]]) -> str:
    cards = "\n".join(
        f'<a class="card" href="{unit_page(u["channel"])}"><img src="{escape(u["pictures"]["feature"])}" '
        f'width="128" height="128" alt="unit {u["channel"]}"><b>{u["channel"]}</b>'
        f'<div class="small">{u["score"]:.3g}</div></a>'
        for u in units
    )
    missing = "".join(f"<li>{escape(s['error'])}</li>" for s in skipped)
    return _page(
        f"{meta['layer']}: units",
        f"<h1>{escape(meta['layer'])}</h1><p>{escape(meta['model'])}: "
        f"{len(units)} units of {meta['channels']}, "
        f"sorted by how strongly {len(meta['photos'])} photos ({meta['views']} views) drive them "
        "(the mean of each view's highest activation).  Data: "
        '<a href="units.json">units.json</a>.</p>\n'
        f'<div class="grid">{cards}</div>'
        + (f"<h2>Photos left out</h2><ul>{missing}</ul>" if missing else ""),
    )


def _figure(src: str, caption: str, side: int = 128) -> str:
    return (
        f'<div class="card"><img src="{escape(src)}" width="{side}" height="{side}" alt="{escape(caption)}">'
        f'<div class="small">{escape(caption)}</div></div>'
    )


def _unit_html(meta: dict[str, Any], unit: dict[str, Any]) -> str:
    pictures, values = unit["pictures"], unit["values"]
    channel = unit["channel"]
    top = _figure(pictures["feature"], f"feature picture: mean {values['feature']['mean']:.3g}", 192)
    top += _figure(pictures["negative"], f"negative: mean {values['negative']['mean']:.3g}", 192)
    diverse = "".join(
        _figure(pictures[k], f"diverse {k[7:]}: mean {values[k]['mean']:.3g}")
        for k in sorted(pictures)
        if k.startswith("diverse")
    )
    rows = "\n".join(
        f'<tr><td>{rank}</td><td><img src="{escape(e["crop"])}" width="{EXAMPLE_SIDE}" '
        f'alt="example {rank}"></td><td><img src="{escape(e["map"])}" '
        f'alt="map over {escape(Path(e["photo"]).name)}" style="max-width:{MAP_SIDE}px"></td>'
        f"<td>{e['value']:.4g}</td><td>{escape(Path(e['photo']).name)}"
        f'<div class="small">{escape(e["view"])}</div></td></tr>'
        for rank, e in enumerate(unit["examples"], start=1)
    )
    similarity = unit.get("diverse_similarity")
    note = f" (mean Gram cosine between them {similarity:.3f})" if similarity is not None else ""
    return _page(
        f"{meta['layer']} unit {channel}",
        f'<p><a href="index.html">&larr; all units of {escape(meta["layer"])}</a></p>'
        f"<h1>{escape(meta['layer'])}, unit {channel}</h1>"
        f'<div class="grid">{top}</div>'
        + (f'<h2>Diverse pictures{note}</h2><div class="grid">{diverse}</div>' if diverse else "")
        + '<h2>Dataset examples</h2><p class="small">The views of your photos that drive this unit '
        "hardest, the crop around the highest activation, and the unit's map over the photo.</p>"
        f"<table><tr><th>#</th><th>crop</th><th>map</th><th>activation</th><th>photo</th></tr>{rows}</table>",
    )


def activation_overlay(rgb: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """The photo (3, H, W) darkened where ``act`` (h, w) is low: the map over the photo."""
    up = F.interpolate(act[None, None].float(), size=rgb.shape[-2:], mode="bilinear", align_corners=False)[0]
    top = float(act.max())
    level = (up / top).clamp(0, 1) if top > 0 else torch.zeros_like(up)
    heat = torch.stack([level[0], 0.5 * level[0], 0.2 * (1 - level[0])])
    return (rgb * (0.25 + 0.75 * level) * 0.8 + 0.2 * heat).clamp(0, 1)
