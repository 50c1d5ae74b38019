"""An explanation's files: one poster PNG, one offline HTML page (its pictures inline) and JSON.

The poster: the photo with the grid, the cells' pictures laid out over it (each as opaque
as its activation is strong: weak background cells fade), the groups (map over the photo,
picture, attribution to the top class), and the chosen cell's Hinton diagram (a square per
channel, its side the magnitude, blue positive, red negative).
"""

from __future__ import annotations

import base64
import io
import json
import os
from html import escape
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from dreamcli.io.atomic import atomic_write, remove_stale_parts
from dreamcli.io.images import label_font, shrink, to_pil, write_pil
from dreamcli.jobs.explain import Explanation

POSITIVE, NEGATIVE = (40, 90, 200), (200, 50, 40)
PANEL = 384  # the long side of the photo's panels, pixels


def _grid_picture(made: Explanation, size: tuple[int, int], fade: bool) -> Image.Image:
    """The cells' pictures in their places over the photo's panel of ``size`` (width, height)."""
    rows, cols = made.data["explain"]["grid"]
    base = to_pil(shrink(made.photo, max(size))).resize(size)
    canvas = Image.new("RGB", size, (255, 255, 255)) if fade else base.copy()
    norms = torch.tensor([c["norm"] for c in made.data["cells"]])
    strength = (norms / norms.max().clamp_min(1e-12)).tolist()
    for i, picture in enumerate(made.cell_pictures):
        r, c = divmod(i, cols)
        box = (
            round(c * size[0] / cols),
            round(r * size[1] / rows),
            round((c + 1) * size[0] / cols),
            round((r + 1) * size[1] / rows),
        )
        tile = to_pil(picture).resize((box[2] - box[0], box[3] - box[1]))
        if fade:
            tile = Image.blend(Image.new("RGB", tile.size, (255, 255, 255)), tile, 0.15 + 0.85 * strength[i])
        canvas.paste(tile, box[:2])
    return canvas


def map_over(made: Explanation, k: int, size: tuple[int, int]) -> Image.Image:
    """Group ``k``'s map over the photo (dark where the group is weak), at ``size`` (width, height)."""
    photo = shrink(made.photo, max(size))
    level = made.group_maps[k] / made.group_maps[k].max().clamp_min(1e-12)
    up = F.interpolate(level[None, None], size=photo.shape[-2:], mode="bilinear", align_corners=False)[0]
    return to_pil((photo * (0.15 + 0.85 * up)).clamp(0, 1)).resize(size)


def hinton(channels: list[dict[str, Any]], side: int = 40, columns: int = 6) -> Image.Image:
    """A Hinton diagram: one square per channel, side by magnitude, colour by sign, number under it."""
    rows = -(-len(channels) // columns)
    image = Image.new("RGB", (columns * side, rows * (side + 12)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = label_font(10)
    top = max((abs(c["value"]) for c in channels), default=1.0) or 1.0
    for i, c in enumerate(channels):
        x, y = (i % columns) * side, (i // columns) * (side + 12)
        half = max(1.0, (side - 6) * (abs(c["value"]) / top) ** 0.5 / 2)  # area by magnitude
        cx, cy = x + side / 2, y + side / 2
        draw.rectangle(
            (cx - half, cy - half, cx + half, cy + half), fill=POSITIVE if c["value"] >= 0 else NEGATIVE
        )
        draw.text((x + 2, y + side), str(c["channel"]), fill=(0, 0, 0), font=font)
    return image


def poster(made: Explanation) -> Image.Image:
    data = made.data
    w, h = data["explain"]["size"]
    scale = PANEL / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    photo = to_pil(shrink(made.photo, PANEL)).resize(size)
    draw_photo = ImageDraw.Draw(photo)
    rows, cols = data["explain"]["grid"]
    for r in range(1, rows):
        draw_photo.line((0, r * size[1] / rows, size[0], r * size[1] / rows), fill=(255, 255, 255))
    for c in range(1, cols):
        draw_photo.line((c * size[0] / cols, 0, c * size[0] / cols, size[1]), fill=(255, 255, 255))
    cell = data["cell"]
    box = (
        cell["col"] * size[0] / cols,
        cell["row"] * size[1] / rows,
        (cell["col"] + 1) * size[0] / cols,
        (cell["row"] + 1) * size[1] / rows,
    )
    draw_photo.rectangle(box, outline=(255, 200, 0), width=3)
    group_side = 128
    groups = len(made.group_pictures)
    diagram = hinton(cell["channels"])
    font = label_font(14)
    width = max(3 * size[0] + 40, groups * (group_side + 8) + 10, 400)
    height = 30 + size[1] + 40 + 2 * group_side + 50 + diagram.height + 30
    out = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    title = f"{Path(data['explain']['photo']).name} at {data['explain']['layer']}"
    if data["classes"]:
        title += ": " + ", ".join(
            f"{c['name'].split(',')[0]} {c['probability']:.2f}" for c in data["classes"]
        )
    draw.text((10, 6), title, fill=(0, 0, 0), font=font)
    y = 30
    out.paste(photo, (10, y))
    out.paste(_grid_picture(made, size, fade=False), (20 + size[0], y))
    out.paste(_grid_picture(made, size, fade=True), (30 + 2 * size[0], y))
    y += size[1] + 10
    share = data["groups"]["share"]
    draw.text((10, y), f"{groups} neuron groups ({share:.0%} of the activation)", fill=(0, 0, 0), font=font)
    y += 24
    first = data["classes"][0]["name"] if data["classes"] else None
    for k in range(groups):
        x = 10 + k * (group_side + 8)
        out.paste(map_over(made, k, (group_side, max(1, round(group_side * size[1] / size[0])))), (x, y))
        out.paste(to_pil(made.group_pictures[k]).resize((group_side, group_side)), (x, y + group_side + 4))
        attr = data["groups"]["list"][k]["attribution"].get(first) if first else None
        text = f"{k + 1}" + (f": {attr:+.3g}" if attr is not None else "")
        draw.text((x, y + 2 * group_side + 6), text, fill=(0, 0, 0), font=label_font(11))
    y += 2 * group_side + 26
    draw.text((10, y), f"cell {cell['row']},{cell['col']}: strongest channels", fill=(0, 0, 0), font=font)
    out.paste(diagram, (10, y + 22))
    return out


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def page(made: Explanation, html_path: Path, units: Path | None = None) -> str:
    """The page: the poster's pieces inline, tables of attribution, links to unit pages in ``units``."""
    data = made.data
    names = [c["name"] for c in data["classes"]]
    head = "".join(f"<th>{escape(n.split(',')[0])}</th>" for n in names)
    groups = "".join(
        f"<tr><td>{g['group']}</td>"
        f'<td><img src="{_data_uri(to_pil(made.group_pictures[g["group"] - 1]))}" width="96"></td>'
        f'<td><img src="{_data_uri(map_over(made, g["group"] - 1, (128, 128)))}" width="128"></td>'
        + "".join(f"<td>{g['attribution'][n]:+.4g}</td>" for n in names)
        + "</tr>"
        for g in data["groups"]["list"]
    )

    def channel(c: dict[str, Any]) -> str:
        text = f"{c['channel']}: {c['value']:+.4g}"
        if units is not None and (units / f"unit_{c['channel']:04d}.html").is_file():
            href = os.path.relpath(units / f"unit_{c['channel']:04d}.html", html_path.parent)
            return f'<li><a href="{escape(Path(href).as_posix())}">{text}</a></li>'
        return f"<li>{text}</li>"

    cell = data["cell"]
    title = f"{Path(data['explain']['photo']).name} at {data['explain']['layer']}"
    classes = ", ".join(f"{escape(c['name'])} ({c['probability']:.2f})" for c in data["classes"])
    described = html_path.with_suffix(".json").name
    w, h = data["explain"]["size"]
    size = (PANEL, max(1, round(PANEL * h / w))) if w >= h else (max(1, round(PANEL * w / h)), PANEL)
    body = (
        f"<h1>{escape(title)}</h1><p>Top classes: {classes or 'none'}. Data: "
        f'<a href="{escape(described)}">{escape(described)}</a></p>'
        f'<h2>Activation grid</h2><img src="{_data_uri(to_pil(shrink(made.photo, PANEL)))}"> '
        f'<img src="{_data_uri(_grid_picture(made, size, fade=False))}"> '
        f'<img src="{_data_uri(_grid_picture(made, size, fade=True))}">'
        f"<h2>Neuron groups ({data['groups']['share']:.0%} of the activation)</h2>"
        f"<table><tr><th>#</th><th>picture</th><th>map</th>{head}</tr>{groups}</table>"
        f"<h2>Cell {cell['row']},{cell['col']}</h2>"
        f'<img src="{_data_uri(hinton(cell["channels"]))}">'
        f"<ul>{''.join(channel(c) for c in cell['channels'])}</ul>"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        "<style>body{font:14px system-ui,sans-serif;margin:1.5em}td,th{padding:4px 8px}</style>"
        f"</head><body>\n{body}\n</body></html>\n"
    )


def write_explanation(made: Explanation, output: str | Path, units: Path | None = None) -> None:
    """The poster at ``output``, the page and the JSON beside it; the JSON first, the poster last
    (a rerun that finds the poster skips, and then has the rest)."""
    output = Path(output)
    remove_stale_parts(output.parent)
    text = json.dumps({**made.data, "poster": output.name}, indent=1, ensure_ascii=True) + "\n"
    atomic_write(output.with_suffix(".json"), lambda handle: handle.write(text.encode("ascii")))
    html = page(made, output.with_suffix(".html"), units)
    atomic_write(output.with_suffix(".html"), lambda handle: handle.write(html.encode("utf-8")))
    write_pil(output, poster(made))
