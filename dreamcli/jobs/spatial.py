"""What unit pages and explanations share: a photo read at the network's size, a layer's map of
it, and neuron groups by non-negative matrix factorisation.

A layer's map is (C, h, w) for a convolutional layer and for a ViT block alike (a ViT layer
is captured as its grid of patch tokens, ``models.modern_net``).

Groups (Olah et al., "The Building Blocks of Interpretability", Distill 2018): the map's
positions x channels matrix ``A`` is factorised as ``W @ H`` with ``W`` (positions x K) and
``H`` (K x channels) non-negative, by Lee and Seung's multiplicative updates (no new
dependency).  A layer with negative values (no ReLU after it: EfficientNet's blocks, a
ViT's tokens) is factorised as ``[max(A, 0), max(-A, 0)]``, twice the channels, so the
groups still reconstruct ``A`` itself: ``W @ (H+ - H-)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dreamcli.engine.capture import LayerCapture, model_device
from dreamcli.errors import SettingsError
from dreamcli.events import Note, Report, Step
from dreamcli.io.images import read_image, shrink


def read_photo(path: str | Path, size: int, zoom: int = 1) -> torch.Tensor:
    """The photo (3, H, W) in [0, 1], EXIF rotation applied, its long side ``size * zoom`` px."""
    picture = read_image(path, max_size=size * zoom * 2)  # decoded at a reduced scale where it can be
    return shrink(picture.rgb, size * zoom)


def layer_map(module: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """``layer``'s output for ``images`` (N, 3, H, W): (N, C, h, w) float32 on the CPU."""
    with LayerCapture(module, [layer]) as capture, torch.no_grad():
        act = capture(images.to(model_device(module)))[layer]
    return spatial(act, layer).float().cpu()


def spatial(act: torch.Tensor, layer: str) -> torch.Tensor:
    if act.dim() != 4:
        raise SettingsError(
            f"layer {layer!r} has no spatial positions (its output is {tuple(act.shape)}); "
            "pick a convolutional layer or a ViT block"
        )
    return act


@dataclass(frozen=True)
class Groups:
    """A factorisation of a map: ``maps`` (K, h, w) >= 0 and ``directions`` (K, C), signed
    where the layer is, with ``maps`` x ``directions`` ~ the map; ``share``: the share of the
    map's sum of squares that they reconstruct."""

    maps: torch.Tensor
    directions: torch.Tensor
    share: float


def nmf(
    matrix: torch.Tensor, rank: int, iterations: int = 300, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``matrix`` (P, C) >= 0 ~ ``W @ H``, W (P, rank) and H (rank, C) >= 0 (Frobenius loss)."""
    if matrix.dim() != 2 or bool((matrix < 0).any()):
        raise ValueError("nmf needs a non-negative matrix")
    generator = torch.Generator().manual_seed(seed)
    x = matrix.double()
    scale = (x.mean() / rank).sqrt().clamp_min(1e-12)
    w = torch.rand(x.shape[0], rank, generator=generator, dtype=torch.float64) * scale + 1e-6
    h = torch.rand(rank, x.shape[1], generator=generator, dtype=torch.float64) * scale + 1e-6
    tiny = 1e-12
    for _ in range(iterations):
        h *= (w.t() @ x) / (w.t() @ w @ h + tiny)
        w *= (x @ h.t()) / (w @ (h @ h.t()) + tiny)
    return w.float(), h.float()


def groups_of(act: torch.Tensor, rank: int, iterations: int = 300, seed: int = 0) -> Groups:
    """Neuron groups of a map ``act`` (C, h, w), the strongest first."""
    channels, rows, cols = act.shape
    a = act.float().flatten(1).t()  # (P, C)
    signed = bool((a < 0).any())
    x = torch.cat([a.clamp_min(0), (-a).clamp_min(0)], 1) if signed else a
    rank = max(1, min(rank, min(x.shape)))
    w, h = nmf(x, rank, iterations, seed)
    directions = h[:, :channels] - h[:, channels:] if signed else h
    norms = directions.norm(dim=1).clamp_min(1e-12)
    w, directions = w * norms, directions / norms[:, None]  # unit directions; W carries the size
    order = torch.argsort(w.sum(0), descending=True, stable=True)
    w, directions = w[:, order], directions[order]
    residual = a - w @ directions
    share = 1.0 - float(residual.pow(2).sum() / a.pow(2).sum().clamp_min(1e-12))
    return Groups(w.t().reshape(-1, rows, cols), directions, share)


def estimating(report: Report, steps: int, say: Callable[[float], str]) -> Report:
    """A listener to the Step events of a run's first batch: after its third step, ``report``
    hears ``say(minutes)``, the minutes that ``steps`` such steps take at that pace."""
    timing: dict[str, float] = {}

    def listen(event) -> None:
        if not isinstance(event, Step):
            return
        if event.iteration == 1:
            timing["start"] = time.perf_counter()
        elif event.iteration == 4 and "start" in timing:
            report(Note(say((time.perf_counter() - timing["start"]) / 3 * steps / 60)))

    return listen
