"""Adversarial patches: testing a picture pasted into photos, and making one (``patch_training``).

Brown et al., "Adversarial Patch" (2017): a small picture that, pasted anywhere
in a photo, makes the network say one class.  ``evaluate_patch`` pastes a picture
into every photo at seeded random places, sizes and rotations
(``engine.placement``) and reports, per photo, how often the top-1 becomes
the target and the top-5 before and after; ``contact_sheet`` shows examples.

Photos are seen as ``size``-pixel squares (short side scaled to ``size``, then
centre-cropped, as ImageNet networks are evaluated).  A photo that cannot be
read is reported (``events.PhotoSkipped``) and left out; the others go on.
The placements of photo *i* come from ``seed`` and *i* alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from dreamcli.engine.capture import LayerCapture, model_device
from dreamcli.engine.devices import DTYPES
from dreamcli.engine.placement import Placements, draw, paste
from dreamcli.engine.steps import network_precision
from dreamcli.errors import DreamError, ImageError, SettingsError
from dreamcli.events import PhotoSkipped, Report, Stage, ignore, text_fields
from dreamcli.io.images import fit_label, label_font, read_image, shrink
from dreamcli.jobs.requests import PatchOptions
from dreamcli.models import Loaded

TOP = 5  # classes listed before and after
CHUNK = 32  # pasted photos per forward pass when testing
SHEET_TILE = 160  # pixels a side of each example on the contact sheet
SHEET_PHOTOS = 24  # examples on the sheet at most
PATCH_SIDE = 1024  # a --patch picture's long side is read at most this large


@dataclass
class Classifier:
    """A network's logits for a batch of RGB squares in [0, 1], and its class names."""

    module: nn.Module
    logits: str  # the logits' module, '' = the module's output
    names: list[str] | None
    label: str  # how reports name the model
    precision: str = "fp32"

    @classmethod
    def of(
        cls, model: Loaded | nn.Module, class_names: Sequence[str] | None = None, precision: str = "fp32"
    ) -> Classifier:
        if isinstance(model, Loaded):
            if model.network.logits is None:
                raise SettingsError(f"{model.network.name} has no classifier: a patch needs class scores")
            names = class_names or model.network.class_names()
            module, logits, label = model.module, model.network.logits, model.label
            model.resolve(logits)  # weights that left the head out (a fine-tuned one) are refused here
        else:
            module, logits, label, names = model, "", type(model).__name__, class_names
        if logits:
            LayerCapture(module, [logits])  # raises for an unknown module
        return cls(module, logits, list(names) if names is not None else None, label, precision)

    @property
    def device(self) -> torch.device:
        return model_device(self.module)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C) float32 logits; differentiable when grad is enabled."""
        with network_precision(images.device, DTYPES[self.precision]):
            if self.logits:
                with LayerCapture(self.module, [self.logits]) as capture:
                    out = capture(images)[self.logits]
            else:
                out = self.module(images)
        return out.float().flatten(1)

    def name(self, index: int) -> str:
        return self.names[index] if self.names is not None and index < len(self.names) else f"class {index}"

    def index(self, model: Loaded | nn.Module, target: str) -> int:
        """The target class by name (with "did you mean") or index."""
        if isinstance(model, Loaded):
            return model.network.class_index(target)
        text = target.strip()
        if self.names is not None and text in self.names:
            return self.names.index(text)
        if text.isdecimal():
            return int(text)
        raise SettingsError(f"unknown class {target!r}: give a class index")

    def top(self, probabilities: torch.Tensor, k: int = TOP) -> list[dict[str, Any]]:
        values, indices = probabilities.topk(min(k, probabilities.shape[-1]))
        return [
            {"class": int(i), "name": self.name(int(i)), "p": round(float(v), 4)}
            for v, i in zip(values, indices, strict=True)
        ]


def target_index(model: Loaded | nn.Module, target: str, class_names: Sequence[str] | None = None) -> int:
    """The target class, checked before any photo is read (unknown names get suggestions)."""
    if isinstance(model, Loaded):
        return model.network.class_index(target)
    return Classifier(model, "", list(class_names) if class_names else None, "").index(model, target)


# ---------------------------------------------------------------------------------------------
# Reading


def square(rgb: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) -> (3, size, size): the short side scaled to ``size``, then centre-cropped."""
    height, width = rgb.shape[-2:]
    scale = size / min(height, width)
    shape = (max(size, round(height * scale)), max(size, round(width * scale)))
    if shape != (height, width):
        rgb = F.interpolate(rgb[None], size=shape, mode="bicubic", antialias=True, align_corners=False)[0]
    top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
    return rgb[:, top : top + size, left : left + size].clamp(0.0, 1.0).contiguous()


def read_photos(
    paths: Sequence[Path], size: int, on_error: Callable[[Path, str], None]
) -> Iterator[tuple[Path, torch.Tensor]]:
    """Each photo that can be read, as (path, (3, size, size)), one at a time: only one is held
    while it is scored.  Each one that cannot goes to ``on_error`` with its one-line message."""
    for path in paths:
        try:
            picture = square(read_image(path).rgb, size)
        except ImageError as exc:
            on_error(path, str(exc))
        else:
            yield path, picture


def read_patch(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A patch picture: RGB (3, h, w) and its alpha (1, h, w) if it has one.  SettingsError
    (exit 2) for a file that is not a picture."""
    try:
        picture = read_image(path, max_size=PATCH_SIDE)
    except ImageError as exc:
        raise SettingsError(f"--patch: {exc}") from None
    if min(picture.rgb.shape[-2:]) < 2:
        width, height = _header_size(path)
        if min(width, height) >= 2:  # long and thin: under 2 pixels across once the long side is 1024
            raise SettingsError(
                f"--patch: {path} is {width}x{height}, too thin for a patch: its sides may differ at most "
                f"{PATCH_SIDE // 2} times (its long side is read at {PATCH_SIDE} px); crop it"
            )
        raise SettingsError(
            f"--patch: {path} is {width}x{height}, too small for a patch (at least 2x2 pixels)"
        )
    return picture.rgb, picture.alpha


def _header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as the file says, without decoding it."""
    with Image.open(path) as img:
        return img.size


def drawn_side(options: PatchOptions) -> int:
    """The largest side the patch is drawn at, in pixels (its area share's maximum)."""
    return max(2, round(options.size * options.area[1] ** 0.5))


# ---------------------------------------------------------------------------------------------
# Testing


@dataclass
class PatchReport:
    """Per photo: top-5 before and after, successes over the placements; then the summary."""

    photos: list[dict[str, Any]]
    summary: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    examples: list[tuple[torch.Tensor, dict[str, Any]]] = field(default_factory=list)  # for the sheet

    def lines(self) -> list[dict[str, Any]]:
        """The ``--json`` lines: one per photo, then the summary."""
        return [json_line(photo) for photo in self.photos] + [{"summary": True, **self.summary}]


def json_line(photo: dict[str, Any]) -> dict[str, Any]:
    """A photo's ``--json`` line, strict JSON whatever its name (``events.text_fields``)."""
    return {**text_fields("path", photo["path"]), **{k: v for k, v in photo.items() if k != "path"}}


def placements_for(index: int, options: PatchOptions, salt: int = 0) -> Placements:
    """Photo ``index``'s placements: from the seed and the index alone (and ``salt``)."""
    generator = torch.Generator().manual_seed(options.seed * 1_000_003 + index * 7_919 + salt)
    return draw(options.placements, options.area, options.rotate, generator)


def score(
    classifier: Classifier,
    photos: Iterable[tuple[Path, torch.Tensor]],
    count: int,
    patch: torch.Tensor,
    alpha: torch.Tensor | None,
    target: int,
    options: PatchOptions,
    *,
    salt: int = 0,
    indices: Sequence[int] | None = None,
    report: Report = ignore,
    on_photo: Callable[[dict[str, Any]], None] | None = None,
    result: PatchReport | None = None,
) -> PatchReport:
    """The patch pasted into each of ``count`` photos (path, (3, size, size)) at its placements:
    top-1 success rate and top-5s.  Photos come one at a time; each one's result goes to
    ``result`` (made here unless given: a caller interrupted keeps what was done) and
    ``on_photo`` as soon as it is scored."""
    device = classifier.device
    patch = shrink(patch, drawn_side(options)) if max(patch.shape[-2:]) > drawn_side(options) else patch
    if alpha is not None and alpha.shape[-2:] != patch.shape[-2:]:
        alpha = F.interpolate(alpha[None], size=patch.shape[-2:], mode="bilinear", antialias=True)[0]
    result = result if result is not None else PatchReport([], {})
    successes = 0
    report(Stage("testing", 0, count))
    with torch.no_grad():
        for n, (path, photo) in enumerate(photos):
            index = indices[n] if indices is not None else n
            where = placements_for(index, options, salt)
            clean = classifier(photo[None].to(device)).softmax(1)[0].cpu()
            hits, mean = 0, torch.zeros_like(clean)
            first = None
            for start in range(0, len(where), CHUNK):
                part = where.subset(slice(start, start + CHUNK))
                batch = paste(photo[None].expand(len(part), -1, -1, -1).to(device), patch, part, alpha)
                probabilities = classifier(batch).softmax(1).cpu()
                hits += int((probabilities.argmax(1) == target).sum())
                mean += probabilities.sum(0)
                if first is None:
                    first = (batch[0].cpu(), probabilities[0])
            mean /= len(where)
            successes += hits
            line = {
                "path": str(path),
                "target": classifier.name(target),
                "before": classifier.top(clean),
                "after": classifier.top(mean),
                "target_before": round(float(clean[target]), 4),
                "target_after": round(float(mean[target]), 4),
                "successes": hits,
                "placements": len(where),
                "success_rate": round(hits / len(where), 4),
            }
            result.photos.append(line)
            if first is not None and len(result.examples) < SHEET_PHOTOS:
                top1 = int(first[1].argmax())
                label = {"name": classifier.name(top1), "p": float(first[1][top1]), "hit": top1 == target}
                result.examples.append((first[0], label))
            if on_photo is not None:
                on_photo(line)
            report(Stage("testing", n + 1, count))
    total = len(result.photos) * options.placements
    result.summary.update(
        {
            "target": classifier.name(target),
            "class": target,
            "model": classifier.label,
            "photos": len(result.photos),
            "placements": total,
            "successes": successes,
            "success_rate": round(successes / total, 4) if total else 0.0,
            "area": list(options.area),
            "rotate": options.rotate,
            "size": options.size,
            "seed": options.seed,
        }
    )
    return result


def evaluate_patch(
    model: Loaded | nn.Module,
    paths: Sequence[str | Path],
    patch: torch.Tensor,
    target: str,
    options: PatchOptions | None = None,
    *,
    alpha: torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    precision: str = "fp32",
    report: Report = ignore,
    on_photo: Callable[[dict[str, Any]], None] | None = None,
    result: PatchReport | None = None,
) -> PatchReport:
    """``patch`` (3, h, w) in [0, 1] pasted into every photo at ``options.placements`` seeded
    placements: how often the network's top-1 becomes ``target``, and the top-5 before and
    after (the mean of the placements' probabilities) per photo.

    Photos are read, scored and let go one at a time (memory does not grow with their
    number); ``on_photo`` gets each one's line at once, and ``result`` (if given) holds
    what was done when the run is interrupted."""
    options = options or PatchOptions()
    classifier = Classifier.of(model, class_names, precision)
    goal = classifier.index(model, target)
    started = time.perf_counter()
    photo_paths = [Path(p) for p in paths]
    if not photo_paths:
        raise SettingsError("no photos to paste the patch into")
    result = result if result is not None else PatchReport([], {})

    def skip(path: Path, error: str) -> None:
        result.skipped.append({"path": str(path), "error": error})
        report(PhotoSkipped(path, error))

    photos = read_photos(photo_paths, options.size, skip)
    score(classifier, photos, len(photo_paths), patch, alpha, goal, options, report=report,
          on_photo=on_photo, result=result)  # fmt: skip
    if not result.photos:
        raise DreamError(f"none of the {len(photo_paths)} photos could be read (each is named above)")
    result.summary["skipped"] = len(result.skipped)
    result.summary["seconds"] = round(time.perf_counter() - started, 2)
    return result


# ---------------------------------------------------------------------------------------------
# The contact sheet


def contact_sheet(result: PatchReport, columns: int = 6) -> Image.Image:
    """One example per photo (its first placement), the top-1 under it: green where it is the
    target, red where not."""
    count = len(result.examples)
    if count == 0:
        return Image.new("RGB", (SHEET_TILE, SHEET_TILE), (255, 255, 255))
    columns = min(columns, count)
    rows = -(-count // columns)
    font_size = 12
    band = font_size + 6
    sheet = Image.new("RGB", (columns * SHEET_TILE, rows * (SHEET_TILE + band)), (255, 255, 255))
    draw_on = ImageDraw.Draw(sheet)
    font = label_font(font_size)
    for k, (picture, label) in enumerate(result.examples):
        x, y = (k % columns) * SHEET_TILE, (k // columns) * (SHEET_TILE + band)
        tile = shrink(picture, SHEET_TILE) if picture.shape[-1] != SHEET_TILE else picture
        if tile.shape[-1] < SHEET_TILE:
            tile = F.interpolate(tile[None], size=(SHEET_TILE, SHEET_TILE), mode="bilinear")[0]
        pixels = tile.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        sheet.paste(Image.fromarray(np.ascontiguousarray(pixels), "RGB"), (x, y))
        colour = (20, 130, 40) if label["hit"] else (170, 30, 30)
        draw_on.rectangle((x, y + SHEET_TILE, x + SHEET_TILE - 1, y + SHEET_TILE + band - 1), fill=colour)
        text = fit_label(draw_on, f"{label['name'].split(',')[0]} {label['p']:.2f}", font, SHEET_TILE - 4)
        draw_on.text((x + 2, y + SHEET_TILE + 2), text, fill=(255, 255, 255), font=font)
    return sheet
