"""An activation atlas of the user's own photos (Carter et al., "Activation Atlas", Distill 2019).

Four stages, each reported through the callback as ``events.Stage``:

1. *activations*: every photo is read (EXIF rotation applied), scaled so that
   its long side is ``size`` pixels (smaller photos are enlarged, so every
   photo is seen at the same scale), and run through the network up to the
   layer only.  A seeded random sample of its spatial positions is kept
   (``samples_per_image``), and all samples go through a seeded reservoir of
   ``max_samples``: memory is bounded whatever the number of photos, and the
   photos stream through one at a time, decoded a little ahead in a thread.
   A photo that cannot be read or run is reported (``events.PhotoSkipped``) and left
   out; the others go on.
2. *layout*: the samples are laid out in 2-D by UMAP (the ``dreamcli[atlas]``
   extra), t-SNE (scikit-learn, which comes with the same extra) or PCA (torch
   only).  UMAP and t-SNE first see the samples projected on their 50 main
   (uncentred) directions, which keeps cosine similarity and makes the
   neighbour search fast; their metric is cosine.
3. *render*: the layout is scaled to the unit square (the 1st-99th percentile
   of each axis; outliers go to the border cells) and binned into a grid; the
   mean activation of each cell with at least ``min_count`` samples is drawn by
   feature visualisation (``featurevis``, the Fourier parameterisation) of
   that direction (``objectives.Direction``), ``batch`` cells at a time.
4. *labels* (optional): each cell's picture is classified by the whole network
   (the model's logits), and the top class is written under it.  Classifying
   the picture works for any layer and any network with a classifier; running
   the rest of the network from an averaged activation would need a network cut
   in two at every layer.

``make_atlas`` returns an ``Atlas`` (the picture and a JSON-ready description:
per cell its place, sample count, label and the photos and positions that fell
in it, most typical first); ``write_atlas`` writes both atomically.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from dreamcli.config import Settings
from dreamcli.engine.capture import LayerCapture, model_device
from dreamcli.engine.featurevis import STEPS_PER_ITERATION, visualize
from dreamcli.engine.objectives import Direction
from dreamcli.errors import DreamError, SettingsError, describe
from dreamcli.events import PhotoSkipped, Report, Stage, ignore
from dreamcli.io.atomic import atomic_write, remove_stale_parts
from dreamcli.io.images import Picture, decode_image, fit, fit_label, label_font, write_pil
from dreamcli.models import Loaded

METHODS = ("umap", "tsne", "pca")
EXTRA = "pip install 'dreamcli[atlas]'"
# UMAP's and t-SNE's neighbour graphs need some samples (UMAP failed on 2, measured).
MIN_SAMPLES_EMBEDDED = 16
# UMAP and t-SNE see the samples projected on this many main directions.
REDUCED_DIMS = 50
# The layout's percentiles that map to the square's edges.
EDGE_QUANTILE = 0.01
BACKGROUND = (255, 255, 255)
# The side the labelling classifier sees a cell's picture at (ImageNet's 224).
CLASSIFY_SIDE = 224


@dataclass(frozen=True)
class AtlasOptions:
    """How an atlas is made.  Every stage is seeded by ``seed``: the same options give the same atlas."""

    grid: int = 20  # cells a side
    cell_size: int = 64  # pixels a side of each cell's picture
    size: int = 256  # each photo's long side, in pixels, as the network sees it
    samples_per_image: int = 32  # spatial positions kept per photo
    max_samples: int = 100_000  # at most this many in all (a seeded reservoir)
    method: str = "umap"  # umap, tsne or pca
    min_count: int = 3  # cells with fewer samples stay empty
    steps: int = 128  # Adam steps of each cell's feature picture (rounded up to a multiple of 8)
    step_size: float = 1.5  # featurevis's rate scale (1.5 = Lucid's 0.05)
    power: float = 1.0  # the exponent of the cosine in the direction objective
    batch: int = 16  # cells drawn together
    labels: bool = False  # write each cell's top class under it (networks with a classifier)
    photos_per_cell: int = 8  # photos listed per cell in the JSON
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SettingsError(f"atlas method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        for name, low in (
            ("grid", 1),
            ("cell_size", 16),
            ("size", 16),
            ("samples_per_image", 1),
            ("max_samples", 2),
            ("min_count", 1),
            ("steps", 1),
            ("batch", 1),
            ("photos_per_cell", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SettingsError(f"atlas {name}: expected a whole number of at least {low}, got {value!r}")
        if not (self.step_size > 0 and self.power >= 0):
            raise SettingsError("atlas step_size must be above 0 and power at least 0")


@dataclass
class Samples:
    """The kept samples: activation vectors, and where each came from."""

    vectors: torch.Tensor  # (N, C) float32
    photo: torch.Tensor  # (N,) int64: index into the paths
    xy: torch.Tensor  # (N, 2) float32: x, y in the photo's own pixels (after EXIF rotation)
    seen: int  # samples drawn before the reservoir's cap


@dataclass
class Atlas:
    """The atlas picture and what it shows: ``to_json()`` is the file written beside it."""

    image: Image.Image
    cells: list[dict[str, Any]]
    metadata: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    layout: torch.Tensor | None = None  # (N, 2) in the unit square, one point per sample

    def to_json(self) -> dict[str, Any]:
        return {"atlas": self.metadata, "cells": self.cells, "skipped": self.skipped}


def make_atlas(
    model: Loaded | nn.Module,
    layer: str,
    paths: Sequence[str | Path],
    options: AtlasOptions | None = None,
    *,
    report: Report = ignore,
    class_names: Sequence[str] | None = None,
) -> Atlas:
    """The atlas of ``layer`` over the photos ``paths``.

    ``model`` is a loaded network (its layer names and class names are used) or
    any module that takes RGB in [0, 1] and whose output is logits (then
    ``layer`` is a module name, and labels say ``class N`` unless
    ``class_names`` are given).  Raises SettingsError for a bad layer or
    method, a missing extra, or when no photo could be used.
    """
    options = options or AtlasOptions()
    module, layer_name, logits, names = _unpack(model, layer, class_names, options.labels)
    paths = [Path(p) for p in paths]
    if not paths:
        raise SettingsError("no photos to make an atlas of")
    require_layout(options.method)  # a missing extra is found before any work
    started = time.perf_counter()
    skipped: list[dict[str, str]] = []

    def skip(path: Path, error: str) -> None:
        skipped.append({"path": str(path), "error": error})
        report(PhotoSkipped(path, error))

    samples = collect(module, layer_name, paths, options, report=report, on_error=skip)
    count = samples.vectors.shape[0]
    if count < (2 if options.method == "pca" else MIN_SAMPLES_EMBEDDED):
        raise DreamError(
            f"too few samples for a {options.method} atlas: {count} from {len(paths)} photos; "
            "add photos or raise the samples per photo"
            + ("" if options.method == "pca" else f" (to {MIN_SAMPLES_EMBEDDED}), or use the pca method")
        )
    timings = {"activations_s": time.perf_counter() - started}
    t0 = time.perf_counter()
    report(Stage("layout", 0, samples.vectors.shape[0]))
    points = normalised(layout(samples.vectors, options.method, options.seed))
    report(Stage("layout", samples.vectors.shape[0], samples.vectors.shape[0]))
    timings["layout_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cells = bin_cells(points, samples, options)
    if not cells:
        raise DreamError(
            f"no cell of the {options.grid}x{options.grid} grid has {options.min_count} of the {count} "
            "samples; add photos, raise the samples per photo, or make the grid smaller"
        )
    pictures = render_cells(module, layer_name, [c.pop("_mean") for c in cells], options, report=report)
    timings["render_s"] = time.perf_counter() - t0
    if logits is not None:
        t0 = time.perf_counter()
        for cell, label in zip(cells, classify(module, logits, pictures, names, report), strict=True):
            cell.update(label)
        timings["labels_s"] = time.perf_counter() - t0
    for cell in cells:
        cell["photos"] = [
            {"path": str(paths[i]), "x": round(x), "y": round(y)} for i, x, y in cell.pop("_photos")
        ]
    image = assemble(pictures, cells, options)
    metadata = {
        "model": model.label if isinstance(model, Loaded) else type(model).__name__,
        "layer": layer,
        **{k: v for k, v in asdict(options).items()},
        "photos": len(paths),
        "photos_used": len(paths) - len(skipped),
        "samples": int(samples.vectors.shape[0]),
        "samples_seen": samples.seen,
        "channels": int(samples.vectors.shape[1]),
        "cells": len(cells),
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    return Atlas(image, cells, metadata, skipped, points)


def write_atlas(atlas: Atlas, image_path: str | Path, json_path: str | Path | None = None) -> None:
    """Write the picture (its format from the extension) and the JSON, each atomically; the
    JSON names the picture (``atlas.image``).

    ``json_path`` defaults to the picture's path with ``.json`` for its extension.
    """
    image_path = Path(image_path)
    json_path = Path(json_path) if json_path is not None else image_path.with_suffix(".json")
    for folder in {image_path.parent, json_path.parent}:
        remove_stale_parts(folder)  # left by a run killed while writing
    # ensure_ascii: a file name that is not UTF-8 (surrogate escapes) still makes valid JSON,
    # and os.fsencode(path) gives its bytes back.  The JSON first: an existing picture (which
    # a rerun skips) then always has its JSON.
    described = atlas.to_json()
    described["atlas"] = {"image": image_path.name, **described["atlas"]}  # whose map this is
    text = json.dumps(described, indent=1, ensure_ascii=True) + "\n"
    atomic_write(json_path, lambda handle: handle.write(text.encode("ascii")))
    write_pil(image_path, atlas.image)


# ---------------------------------------------------------------------------------------------
# 1. Activations


def _unpack(model, layer: str, class_names, labels: bool):
    """The module, the layer's module name, the logits' module ('' = the output) and the class names."""
    if isinstance(model, Loaded):
        module, name = model.module, model.resolve(layer)
        logits = model.network.logits if labels else None
        if labels and logits is None:
            raise SettingsError(
                f"{model.network.name} has no classifier to label the atlas with; leave out labels"
            )
        names = class_names or model.network.class_names()
    else:
        module, name, logits, names = model, layer, ("" if labels else None), class_names
    LayerCapture(module, [name])  # raises for an unknown layer, with suggestions
    return module, name, logits, (list(names) if names is not None else None)


def _decoded(path: Path, size: int) -> tuple[Picture, tuple[int, int]]:
    """The photo decoded (no torch kernel: this runs in the read-ahead thread), and its own
    (width, height)."""
    picture = decode_image(path, max_size=size)  # JPEGs are decoded at a reduced scale where they can be
    with Image.open(path) as img:  # the header only: the photo's size before any scaling
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1)
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: exif_transpose swaps the sides
        width, height = height, width
    return picture, (width, height)


def _read(decoded: tuple[Picture, tuple[int, int]], size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The photo with its long side at ``size`` px (on the calling thread), and its own size."""
    picture, (width, height) = decoded
    rgb = fit(picture, size).rgb
    h, w = rgb.shape[-2:]
    if max(h, w) != size:
        scale = size / max(h, w)
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        rgb = F.interpolate(rgb[None], size=shape, mode="bicubic", antialias=True, align_corners=False)[0]
        rgb = rgb.clamp(0.0, 1.0)
    return rgb, (width, height)


def _read_ahead(paths: Sequence[Path], size: int, ahead: int = 2) -> Iterator[tuple[Path, Future]]:
    """Each path with a future of its decoded photo; decoding runs ``ahead`` photos in front."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        futures: dict[int, Future] = {}
        try:
            for i, path in enumerate(paths):
                for j in range(i, min(i + ahead + 1, len(paths))):
                    if j not in futures:
                        futures[j] = pool.submit(_decoded, paths[j], size)
                yield path, futures.pop(i)
        finally:
            for future in futures.values():
                future.cancel()


class _Reservoir:
    """A seeded uniform sample of at most ``cap`` rows from a stream (Vitter's algorithm R)."""

    def __init__(self, cap: int, seed: int):
        self.cap, self.seen = cap, 0
        self.rng = np.random.default_rng(seed)
        self.vectors: torch.Tensor | None = None
        self.photo = torch.zeros(cap, dtype=torch.int64)
        self.xy = torch.zeros(cap, 2)

    def add(self, vectors: torch.Tensor, photo: int, xy: torch.Tensor) -> None:
        if self.vectors is None:
            self.vectors = torch.zeros(self.cap, vectors.shape[1])
        for k in range(vectors.shape[0]):
            slot = self.seen if self.seen < self.cap else int(self.rng.integers(0, self.seen + 1))
            self.seen += 1
            if slot < self.cap:
                self.vectors[slot], self.photo[slot], self.xy[slot] = vectors[k], photo, xy[k]

    def result(self) -> Samples:
        n = min(self.seen, self.cap)
        if self.vectors is None:
            return Samples(torch.zeros(0, 0), self.photo[:0], self.xy[:0], 0)
        return Samples(self.vectors[:n].clone(), self.photo[:n].clone(), self.xy[:n].clone(), self.seen)


def collect(
    module: nn.Module,
    layer: str,
    paths: Sequence[Path],
    options: AtlasOptions,
    *,
    report: Report = ignore,
    on_error: Callable[[Path, str], None] | None = None,
) -> Samples:
    """Stage 1: sampled activations of ``layer`` (a module name) over the photos, streamed."""
    device = model_device(module)
    # Never more room than the photos can fill: 100,000 x 2048 floats would be 800 MB.
    reservoir = _Reservoir(min(options.max_samples, len(paths) * options.samples_per_image), options.seed)
    report(Stage("activations", 0, len(paths)))
    with LayerCapture(module, [layer]) as capture, torch.no_grad():
        for index, (path, future) in enumerate(_read_ahead(paths, options.size)):
            try:
                rgb, (width, height) = _read(future.result(), options.size)
                act = capture(rgb[None].to(device))[layer]
                if act.dim() != 4:
                    raise SettingsError(
                        f"layer {layer!r} has no spatial positions (its output is {tuple(act.shape)}); "
                        "an atlas maps a convolutional layer: pick an earlier one"
                    )
                rows, cols = act.shape[-2:]
                act = act[0].float().flatten(1).t().cpu()  # (positions, C)
            except SettingsError:
                raise
            except Exception as exc:  # one bad photo never stops the others: reported, then left out
                message = str(exc) if isinstance(exc, DreamError) else f"cannot use {path}: {describe(exc)}"
                if on_error is not None:
                    on_error(path, message)
            else:
                generator = torch.Generator().manual_seed(options.seed * 1_000_003 + index)
                keep = torch.randperm(act.shape[0], generator=generator)[: options.samples_per_image]
                r, c = keep // cols, keep % cols
                # The centre of each position's cell of the map, in the photo's own pixels.
                xy = torch.stack([(c + 0.5) * width / cols, (r + 0.5) * height / rows], 1).float()
                reservoir.add(act[keep], index, xy)
            report(Stage("activations", index + 1, len(paths)))
    if reservoir.seen == 0:
        raise DreamError(f"none of the {len(paths)} photos could be used for an atlas (each is named above)")
    return reservoir.result()


# ---------------------------------------------------------------------------------------------
# 2. Layout


def require_layout(method: str) -> None:
    """Raise SettingsError, naming the extra, when ``method``'s library is not installed."""
    if method != "pca":
        _import_layout(method)


def _import_layout(method: str):
    try:
        if method == "umap":
            import umap

            return umap.UMAP
        from sklearn.manifold import TSNE

        return TSNE
    except ImportError:
        what = "UMAP (umap-learn)" if method == "umap" else "t-SNE (scikit-learn)"
        raise SettingsError(
            f"the atlas's {what} layout is an optional extra: {EXTRA}, or use the pca method"
        ) from None


def _main_directions(x: torch.Tensor, k: int, center: bool) -> torch.Tensor:
    """``x`` (N, C) projected on its ``k`` main directions: exact, deterministic signs."""
    x64 = x.double()
    if center:
        x64 = x64 - x64.mean(0)
    _values, vectors = torch.linalg.eigh(x64.t() @ x64)
    vectors = vectors.flip(1)[:, :k]  # largest first
    signs = torch.sign(vectors.gather(0, vectors.abs().argmax(0, keepdim=True)))
    return (x64 @ (vectors * signs)).float()


def layout(vectors: torch.Tensor, method: str, seed: int = 0) -> torch.Tensor:
    """Stage 2: one 2-D point per row of ``vectors``, seeded and reproducible: (N, 2)."""
    if method == "pca":
        points = _main_directions(vectors, 2, center=True)
        return points if points.shape[1] == 2 else F.pad(points, (0, 2 - points.shape[1]))
    cls = _import_layout(method)
    n = vectors.shape[0]
    reduced = _main_directions(vectors, min(REDUCED_DIMS, vectors.shape[1]), center=False).numpy()
    if method == "umap":
        reducer = cls(
            n_components=2,
            n_neighbors=max(2, min(15, n - 1)),
            min_dist=0.01,
            metric="cosine",
            random_state=seed,
            init="spectral" if n > 16 else "random",
        )
    else:
        reducer = cls(
            n_components=2,
            perplexity=max(1.0, min(30.0, (n - 1) / 3)),
            metric="cosine",
            init="pca",
            random_state=seed,
        )
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*random_state.*", category=UserWarning
        )  # seeded: one thread
        points = reducer.fit_transform(reduced)
    return torch.from_numpy(np.asarray(points, dtype=np.float32))


def normalised(points: torch.Tensor) -> torch.Tensor:
    """Each axis scaled so that its 1st-99th percentiles span [0, 1]; the rest clipped to the edges."""
    low = torch.quantile(points, EDGE_QUANTILE, dim=0)
    high = torch.quantile(points, 1 - EDGE_QUANTILE, dim=0)
    return ((points - low) / (high - low).clamp_min(1e-12)).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# 3. Cells and their pictures


def bin_cells(points: torch.Tensor, samples: Samples, options: AtlasOptions) -> list[dict[str, Any]]:
    """The grid's cells with at least ``min_count`` samples, row by row (row 0 at the top).

    Each has its row, column, count and (private) mean vector and most typical photos.
    """
    grid = options.grid
    col = (points[:, 0] * grid).long().clamp(0, grid - 1)
    row = ((1 - points[:, 1]) * grid).long().clamp(0, grid - 1)  # y up, as a plot
    cell_of = row * grid + col
    counts = torch.bincount(cell_of, minlength=grid * grid)
    cells = []
    for index in torch.nonzero(counts >= options.min_count).flatten().tolist():
        members = torch.nonzero(cell_of == index).flatten()
        vectors = samples.vectors[members]
        mean = vectors.mean(0)
        # The most typical samples first (closest in direction to the mean), one per photo.
        similarity = F.cosine_similarity(vectors, mean[None], dim=1)
        photos, seen = [], set()
        for k in torch.argsort(similarity, descending=True, stable=True).tolist():
            photo = int(samples.photo[members[k]])
            if photo not in seen and len(photos) < options.photos_per_cell:
                seen.add(photo)
                x, y = samples.xy[members[k]].tolist()
                photos.append((photo, x, y))
        cells.append(
            {
                "row": index // grid,
                "col": index % grid,
                "count": int(counts[index]),
                "_mean": mean,
                "_photos": photos,
            }
        )
    return cells


def render_cells(
    module: nn.Module,
    layer: str,
    directions: Sequence[torch.Tensor],
    options: AtlasOptions,
    *,
    report: Report = ignore,
) -> torch.Tensor:
    """Stage 3: one feature picture per direction, ``batch`` at a time: (N, 3, cell, cell) on the CPU."""
    iterations = max(1, math.ceil(options.steps / STEPS_PER_ITERATION))
    settings = Settings(octaves=1, iterations=iterations, step_size=options.step_size, seed=options.seed)
    size = (options.cell_size, options.cell_size)
    pictures = []
    report(Stage("render", 0, len(directions)))
    for start in range(0, len(directions), options.batch):
        chunk = torch.stack(list(directions[start : start + options.batch]))
        goal = Direction(layer, chunk, power=options.power)
        pictures.append(visualize(module, size, settings=settings, goal=goal, batch=len(chunk)).cpu())
        report(Stage("render", start + len(chunk), len(directions)))
    return torch.cat(pictures) if pictures else torch.zeros(0, 3, *size)


def classify(
    module: nn.Module,
    logits: str,
    pictures: torch.Tensor,
    names: Sequence[str] | None,
    report: Report = ignore,
) -> list[dict[str, Any]]:
    """Stage 4: each picture's top class by the whole network (``logits``: its module, '' = the output)."""
    device = model_device(module)
    labels = []
    report(Stage("labels", 0, len(pictures)))
    with torch.no_grad():
        for start in range(0, len(pictures), 16):
            x = F.interpolate(
                pictures[start : start + 16], size=(CLASSIFY_SIDE, CLASSIFY_SIDE), mode="bilinear"
            )
            x = x.to(device)
            if logits:
                with LayerCapture(module, [logits]) as capture:
                    out = capture(x)[logits]
            else:
                out = module(x)
            out = out.float().flatten(1)
            probability, top = out.softmax(1).max(1)
            for p, k in zip(probability.tolist(), top.tolist(), strict=True):
                name = names[k] if names is not None and k < len(names) else f"class {k}"
                labels.append({"label": name, "class": k, "probability": round(p, 4)})
            report(Stage("labels", min(start + 16, len(pictures)), len(pictures)))
    return labels


# ---------------------------------------------------------------------------------------------
# 4. The picture


def assemble(pictures: torch.Tensor, cells: Sequence[dict[str, Any]], options: AtlasOptions) -> Image.Image:
    """The grid of cell pictures (empty cells in the background colour), labels under them if any."""
    side = options.cell_size
    atlas = Image.new("RGB", (options.grid * side, options.grid * side), BACKGROUND)
    data = pictures.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    draw = ImageDraw.Draw(atlas)
    font_size = max(8, side // 8)
    font = label_font(font_size)
    for cell, pixels in zip(cells, data, strict=True):
        x, y = cell["col"] * side, cell["row"] * side
        atlas.paste(Image.fromarray(np.ascontiguousarray(pixels), "RGB"), (x, y))
        if "label" in cell:
            text = fit_label(draw, cell["label"].split(",")[0], font, side - 4)
            band = y + side - font_size - 4
            draw.rectangle((x, band, x + side - 1, y + side - 1), fill=(0, 0, 0))
            draw.text((x + 2, band + 1), text, fill=(255, 255, 255), font=font)
    return atlas
