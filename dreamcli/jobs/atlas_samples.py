"""An activation atlas's first stage: sampled activations of a layer over many photos.

Every photo is read (EXIF rotation applied), scaled so that its long side is
``size`` pixels, and run through the network up to the layer only; a seeded
random sample of its positions is kept, and all samples go through a seeded
reservoir, so memory is bounded whatever the number of photos.  Photos stream
through one at a time, decoded a little ahead in a thread; one that cannot be
read or run is reported and left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dreamcli.engine.capture import LayerCapture, model_device
from dreamcli.errors import DreamError, SettingsError, describe
from dreamcli.events import Report, Stage, ignore
from dreamcli.io.images import Picture, decode_image, fit


class SamplingOptions(Protocol):
    """What ``collect`` reads of an atlas's options (``atlas.AtlasOptions``)."""

    @property
    def size(self) -> int: ...
    @property
    def samples_per_image(self) -> int: ...
    @property
    def max_samples(self) -> int: ...
    @property
    def seed(self) -> int: ...


@dataclass
class Samples:
    """The kept samples: activation vectors, and where each came from."""

    vectors: torch.Tensor  # (N, C) float32
    photo: torch.Tensor  # (N,) int64: index into the paths
    xy: torch.Tensor  # (N, 2) float32: x, y in the photo's own pixels (after EXIF rotation)
    seen: int  # samples drawn before the reservoir's cap
    attribution: torch.Tensor | None = None  # (N, 2): toward class A and B, where compared


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


def _shape(future: Future) -> tuple[int, ...]:
    """(width, height) of a read-ahead photo as decoded."""
    picture = future.result()[0]
    return picture.size


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
        self.scores: torch.Tensor | None = None

    def add(
        self, vectors: torch.Tensor, photo: int, xy: torch.Tensor, scores: torch.Tensor | None = None
    ) -> None:
        if self.vectors is None:
            self.vectors = torch.zeros(self.cap, vectors.shape[1])
        if scores is not None and self.scores is None:
            self.scores = torch.zeros(self.cap, scores.shape[1])
        for k in range(vectors.shape[0]):
            slot = self.seen if self.seen < self.cap else int(self.rng.integers(0, self.seen + 1))
            self.seen += 1
            if slot < self.cap:
                self.vectors[slot], self.photo[slot], self.xy[slot] = vectors[k], photo, xy[k]
                if scores is not None and self.scores is not None:
                    self.scores[slot] = scores[k]

    def result(self) -> Samples:
        n = min(self.seen, self.cap)
        if self.vectors is None:
            return Samples(torch.zeros(0, 0), self.photo[:0], self.xy[:0], 0)
        scores = self.scores[:n].clone() if self.scores is not None else None
        return Samples(
            self.vectors[:n].clone(), self.photo[:n].clone(), self.xy[:n].clone(), self.seen, scores
        )


@dataclass(frozen=True)
class Attribution:
    """What to attribute each sampled activation to: class ``a`` and class ``b`` of the logits
    (module ``logits``, '' = the network's output)."""

    logits: str
    a: int
    b: int


def _attributed(
    module: nn.Module, layer: str, attribution: Attribution, image: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's activation (1, C, h, w) and, per position, activation x gradient of logit A
    and of logit B, summed over channels: (2, h, w) (Carter et al.'s attribution; its
    difference is the attribution to logit A - logit B)."""
    target = dict(module.named_modules())[layer]
    kept: dict[str, torch.Tensor] = {}

    def leaf(_module, _inputs, output):  # the rest of the network runs from a leaf we can ask about
        kept["act"] = output.detach().requires_grad_(True)
        return kept["act"]

    handle = target.register_forward_hook(leaf)
    try:
        with torch.enable_grad():
            if attribution.logits:
                with LayerCapture(module, [attribution.logits]) as capture:
                    logits = capture(image)[attribution.logits]
            else:
                logits = module(image)
            logits = logits.float().flatten(1)[0]
            act = kept["act"]
            grad_a = torch.autograd.grad(logits[attribution.a], act, retain_graph=True)[0]
            grad_b = torch.autograd.grad(logits[attribution.b], act)[0]
    finally:
        handle.remove()
    act = act.detach()
    scores = torch.stack([(act * grad_a).sum(1)[0], (act * grad_b).sum(1)[0]]).float()
    return act, scores


def collect(
    module: nn.Module,
    layer: str,
    paths: Sequence[Path],
    options: SamplingOptions,
    *,
    report: Report = ignore,
    on_error: Callable[[Path, str], None] | None = None,
    attribution: Attribution | None = None,
) -> Samples:
    """Stage 1: sampled activations of ``layer`` (a module name) over the photos, streamed;
    with ``attribution``, each sample's attribution to its two classes too (a gradient pass
    from the layer to the logits per photo)."""
    device = model_device(module)
    # Never more room than the photos can fill: 100,000 x 2048 floats would be 800 MB.
    reservoir = _Reservoir(min(options.max_samples, len(paths) * options.samples_per_image), options.seed)
    report(Stage("activations", 0, len(paths)))
    with LayerCapture(module, [layer]) as capture, torch.no_grad():
        for index, (path, future) in enumerate(_read_ahead(paths, options.size)):
            try:
                rgb, (width, height) = _read(future.result(), options.size)
                scores = None
                if attribution is None:
                    act = capture(rgb[None].to(device))[layer]
                else:
                    act, scores = _attributed(module, layer, attribution, rgb[None].to(device))
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
                if isinstance(exc, RuntimeError) and "too small" in str(exc):  # pooling's "Given input size"
                    message = (
                        f"cannot use {path}: it is {'x'.join(map(str, _shape(future)))} px, too thin for "
                        f"layer {layer} once its long side is {options.size} px; crop it closer to square"
                    )
                if on_error is not None:
                    on_error(path, message)
            else:
                generator = torch.Generator().manual_seed(options.seed * 1_000_003 + index)
                keep = torch.randperm(act.shape[0], generator=generator)[: options.samples_per_image]
                r, c = keep // cols, keep % cols
                # The centre of each position's cell of the map, in the photo's own pixels.
                xy = torch.stack([(c + 0.5) * width / cols, (r + 0.5) * height / rows], 1).float()
                kept = scores.flatten(1).t().cpu()[keep] if scores is not None else None
                reservoir.add(act[keep], index, xy, kept)
            report(Stage("activations", index + 1, len(paths)))
    if reservoir.seen == 0:
        raise DreamError(f"none of the {len(paths)} photos could be used for an atlas (each is named above)")
    return reservoir.result()
