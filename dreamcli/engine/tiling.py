"""Tiled gradients, so that images larger than memory can be dreamed without seams.

The whole image is rolled by the step's jitter as usual; then the gradient is
computed tile by tile.  Each tile is run with a margin of the layer's receptive
field around it, and its windows start on multiples of the network's stride, so
every activation that reaches a tile's pixels is computed exactly as it would
be on the whole image: the stitched gradient equals the untiled one (up to
float rounding), and the step is normalised over the whole image as before.
Each window's size is also the whole image's modulo the stride, so networks that
pad by the input's size (TensorFlow's SAME) pad each window as the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dreamcli.engine.capture import LayerCapture, meta_copy, model_device
from dreamcli.engine.objectives import Objective
from dreamcli.engine.steps import gradient
from dreamcli.errors import ImageTooLargeError


@dataclass(frozen=True)
class Geometry:
    """The context a tile needs (``margin``, pixels on each side) and the layers' ``stride``."""

    margin: int
    stride: int


def _probe_outputs(capture, image: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return capture(image)


def geometry(capture, device: torch.device, probe: int = 256) -> Geometry:
    """Measure the requested layers' stride and the margin a tile needs on this model.

    Stride: how much the output grows when the input grows by ``probe`` pixels.
    Radius: the farthest input pixel whose gradient reaches the centre activation;
    the margin is twice that.  Measured, not looked up, so any model works.
    """
    small = _probe_outputs(capture, torch.zeros(1, 3, probe, probe, device=device))
    large = _probe_outputs(capture, torch.zeros(1, 3, 2 * probe, 2 * probe, device=device))
    stride = max(probe // max(1, large[name].shape[-1] - small[name].shape[-1]) for name in capture.names)
    stride = 1 << max(0, round(math.log2(stride)))
    side = 2 * probe
    while True:
        radius = _radius(capture, device, side)
        if radius < side // 2 - stride or side >= 4096:
            # A pixel's gradient sums over every activation within ``radius`` of it, and
            # each of those activations reads pixels up to ``radius`` further out.
            return Geometry(_round_up(2 * radius + stride, stride), stride)
        side *= 2


def _radius(capture, device: torch.device, side: int, samples: int = 2) -> int:
    # Max pooling passes gradient along one path per window, so one image shows only
    # part of the receptive field; the union over several random images shows all of it.
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(samples, 3, side, side, generator=gen).to(device).requires_grad_(True)
    with torch.enable_grad():
        outputs = capture(image)
        total = sum(out[..., out.shape[-2] // 2, out.shape[-1] // 2].sum() for out in outputs.values())
        (grad,) = torch.autograd.grad(total, image)
    reached = grad.abs().sum(dim=(0, 1)).nonzero()
    if len(reached) == 0:
        return 0
    centre = torch.tensor([side // 2, side // 2], device=reached.device)
    return int((reached - centre).abs().max())


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def full_sizes(capture, size: tuple[int, int]) -> dict[str, int]:
    """Elements per image of each layer's output for a whole image of ``size``.

    Computed on the meta device (shapes only, no memory); the objective divides
    by these so that tiles add up to the whole image's mean squared activation.
    """
    meta = meta_copy(capture.model)  # without copying the weights first
    try:
        with LayerCapture(meta, capture.names) as probe:
            outputs = probe(torch.zeros(1, 3, *size, device="meta"))
        return {name: out[0].numel() for name, out in outputs.items()}
    except (RuntimeError, NotImplementedError):
        return _sizes_from_strips(capture, size)


def _sizes_from_strips(capture, size: tuple[int, int]) -> dict[str, int]:
    """For models the meta device cannot run: the output height from a thin full-height
    strip, the width from a thin full-width strip (cheap, even for 8K)."""
    device = model_device(capture.model)
    thin = 512
    tall = _probe_outputs(capture, torch.zeros(1, 3, size[0], min(thin, size[1]), device=device))
    wide = _probe_outputs(capture, torch.zeros(1, 3, min(thin, size[0]), size[1], device=device))
    return {name: tall[name].shape[1] * tall[name].shape[2] * wide[name].shape[3] for name in capture.names}


def windows(length: int, tile: int, margin: int, stride: int = 1) -> list[tuple[int, int, int, int]]:
    """(window start, window end, tile start, tile end) along one axis.

    Each window's length is congruent to ``length`` modulo ``stride`` (a window
    ends up to ``stride - 1`` pixels later): a network whose padding depends on
    its input's size (TensorFlow's "SAME", as in inception5h and EfficientNet)
    then pads every window as it pads the whole image, and samples the same
    lattice.  For ordinary padding this is only a little more context.
    """
    spans = []
    for start in range(0, length, tile):
        end = min(start + tile, length)
        window_start, window_end = max(0, start - margin), min(length, end + margin)
        window_end = min(length, window_end + (length - window_end) % stride)
        spans.append((window_start, window_end, start, end))
    return spans


class TiledGradient:
    """A drop-in for ``steps.gradient`` that works tile by tile."""

    def __init__(self, tile: int, geom: Geometry, dtype: torch.dtype = torch.float32):
        self.tile = max(geom.stride, _round_up(tile, geom.stride))
        self.geom, self.dtype = geom, dtype
        self._sizes: dict[tuple[int, int], dict[str, int]] = {}

    def __call__(self, capture, image: torch.Tensor, goal: Objective):
        # A random view transform per tile would misalign the tiles: tiled steps go without it.
        goal = goal.untransformed()

        height, width = image.shape[-2:]
        size = (height, width)
        if size not in self._sizes:
            self._sizes[size] = full_sizes(capture, size)
        sizes = self._sizes[size]
        grad = torch.zeros_like(image)
        loss = None
        margin, stride = self.geom.margin, self.geom.stride
        for ya, yb, y0, y1 in windows(height, self.tile, margin, stride):
            for xa, xb, x0, x1 in windows(width, self.tile, margin, stride):
                part, part_loss = gradient(capture, image[..., ya:yb, xa:xb], goal, sizes, self.dtype)
                grad[..., y0:y1, x0:x1] = part[..., y0 - ya : y1 - ya, x0 - xa : x1 - xa]
                loss = part_loss if loss is None else loss + part_loss
        return grad, loss  # the loss over-counts the margins: for progress display only


def bytes_per_pixel(capture, device: torch.device, probe: int = 128) -> float:
    """Memory one input pixel costs for a forward+backward pass to the requested layers.

    Sums every module output on the way (what autograd keeps for the backward
    pass) on a small probe, times 3 for the backward pass's own buffers.
    """
    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * 4  # float32

    leaves = [m for m in capture.model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        _probe_outputs(capture, torch.zeros(1, 3, probe, probe, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return 3.0 * total / (probe * probe)


def choose_tile(
    size: tuple[int, int], per_pixel: float, budget: float, geom: Geometry, batch: int = 1
) -> int | None:
    """None when the whole image fits in ``budget`` bytes, else the largest tile that does.

    Raises ImageTooLargeError, with the largest size that would fit untiled, when
    not even the smallest useful tile fits.
    """
    height, width = size
    if batch * height * width * per_pixel <= budget:
        return None
    side = math.isqrt(int(budget / (batch * per_pixel)))
    tile = (side - 2 * geom.margin) // geom.stride * geom.stride
    if tile < max(geom.stride, 32):
        fits = math.isqrt(int(budget / per_pixel))
        raise ImageTooLargeError(
            f"a {width}x{height} image does not fit in the {_size(budget)} free for it, "
            f"even in tiles; use --max-size {fits} (about {fits}x{fits} px) or free some memory"
        )
    return tile


def _size(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 1e6:.1f} MB"
