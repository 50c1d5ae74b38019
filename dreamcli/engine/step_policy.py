"""How each step of a dream is computed: whole, in tiles, or replayed as a CUDA graph.

``StepPolicy`` decides per octave size whether to tile (forced by
``RunOptions.tile_size``, or because the octave would not fit
``RunOptions.memory``), records and replays untiled steps on CUDA where the
objective allows, and retries in smaller tiles after running out of memory.
Probes of the model (smallest input, tile geometry, memory per pixel) are
measured once per model and layers, not once per image.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence

import torch

from dreamcli.engine import cuda_graphs as graphs
from dreamcli.engine import tiling
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.devices import DTYPES, choose_precision
from dreamcli.engine.objectives import Objective
from dreamcli.engine.shaping import Shaping
from dreamcli.engine.steps import gradient, step
from dreamcli.errors import ImageTooLargeError
from dreamcli.events import Note, Report
from dreamcli.run_options import RunOptions

# Probes depend only on the model and the layers: measured once per model.
_MEASURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# torch.OutOfMemoryError is torch >= 2.5; older releases only have the CUDA one.
OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def measured(capture: LayerCapture, what: str, measure: Callable[[], object]):
    """``measure()``, run once per model and set of layers and then remembered."""
    per_model = _MEASURED.setdefault(capture.model, {})
    key = (what, tuple(capture.names))
    if key not in per_model:
        per_model[key] = measure()
    return per_model[key]


def remembered(model: torch.nn.Module, names: Sequence[str], what: str):
    """What ``measured`` keeps for this model and these layers, or None if nothing yet."""
    return _MEASURED.get(model, {}).get((what, tuple(names)))


class StepPolicy:
    """Runs the steps of one dream on ``capture``'s model as ``options`` says."""

    def __init__(
        self,
        capture: LayerCapture,
        device: torch.device,
        options: RunOptions,
        batch: int = 1,
        shaping: Shaping | None = None,
    ):
        self.capture, self.device, self.batch, self.shaping = capture, device, batch, shaping
        self.dtype = DTYPES[choose_precision(options.precision, device)]
        self.forced, self.memory, self.graphs = options.tile_size, options.memory, options.graphs
        self._chosen: dict[tuple[int, int], int | None] = {}
        # One TiledGradient per tile side: it caches the whole-image layer sizes, which
        # cost a meta-device copy of the model to measure; once per octave, not per step.
        self._tilers: dict[int, tiling.TiledGradient] = {}

    def geometry(self) -> tiling.Geometry:
        return measured(self.capture, "geometry", lambda: tiling.geometry(self.capture, self.device))

    def grad_fn(self, tile: int | None) -> Callable:
        if tile is None:
            return functools.partial(gradient, dtype=self.dtype)
        if tile not in self._tilers:
            self._tilers[tile] = tiling.TiledGradient(tile, self.geometry(), self.dtype)
        return self._tilers[tile]

    def for_size(self, size: tuple[int, int]) -> int | None:
        """The tile side for this octave size, or None for a whole-image step."""
        if size not in self._chosen:
            tile = self.forced
            if tile is None and self.memory is not None:
                per_pixel = measured(
                    self.capture, "per_pixel", lambda: tiling.bytes_per_pixel(self.capture, self.device)
                )
                if self.batch * size[0] * size[1] * per_pixel > self.memory:
                    tile = tiling.choose_tile(size, per_pixel, self.memory, self.geometry(), self.batch)
            self._chosen[size] = tile
        return self._chosen[size]

    def octave(
        self,
        image: torch.Tensor,
        goal: Objective,
        step_size: float,
        shifts: Sequence[tuple[int, int]],
        report: Report,
        stepped: Callable[[int, torch.Tensor], None],
    ) -> torch.Tensor:
        """One octave, a step per jitter shift; ``stepped(iteration, loss)`` after each."""
        if not shifts:
            return image
        graphed = self._graphed(image, goal, step_size)
        buffer = graphed.static.image if graphed is not None else None
        if graphed is not None:
            # One upload per octave; each replay then copies its shift on the device, no sync.
            table = torch.tensor(shifts, dtype=torch.long).reshape(-1, 2).to(self.device, non_blocking=True)
        for k, shift in enumerate(shifts):
            if graphed is not None:
                try:
                    image, loss = graphed(image, table[k])
                except OUT_OF_MEMORY:
                    self._drop_graphs()
                    graphed = None
                    report(Note("out of memory while recording a CUDA graph: going on without graphs"))
                else:
                    if graphed.failed:
                        report(Note(f"CUDA graphs are off for this octave: {graphed.failed}"))
                        graphed = None
                    stepped(k + 1, loss)
                    continue
            shape = None
            if self.shaping is not None:
                shape = functools.partial(self.shaping, iteration=k, iterations=len(shifts))
            image, loss = self.step(image, goal, step_size, shift, report, shape)
            stepped(k + 1, loss)
        if image is buffer:
            image = image.clone()  # the buffer is overwritten by the next replay of this size
        return image

    def _graphed(self, image: torch.Tensor, goal: Objective, step_size: float):
        """The recorded step for this octave, or None where graphs cannot or should not be used."""
        if not (self.graphs and graphs.supported(self.device) and goal.graphable) or self.shaping:
            return None  # a shaped gradient (smoothing grows per step) is not one fixed recording
        if any(tile is not None for tile in self._chosen.values()):
            # An image that needs tiles needs all the memory; recordings would hold some.
            self._drop_graphs()
            return None
        cache = measured(self.capture, "graphs", graphs.GraphCache)
        weights = tuple(p.data_ptr() for p in self.capture.model.parameters())  # a moved model records anew
        key = (tuple(image.shape), self.dtype, step_size, goal.key, weights)
        entry = cache.get(
            key,
            lambda pool: graphs.GraphedStep(
                graphs.StaticStep(self.capture, goal, step_size, image.shape, self.dtype), pool
            ),
        )
        return None if entry.failed else entry

    def _drop_graphs(self) -> None:
        cache = remembered(self.capture.model, self.capture.names, "graphs")
        if cache is not None:
            cache.clear()

    def step(self, image, goal: Objective, step_size: float, shift, report: Report, shape=None):
        size = tuple(image.shape[-2:])
        while True:
            tile = self.for_size(size)
            try:  # the network in self.dtype, the rest in float32 (steps.network_precision)
                return step(self.capture, image, goal, step_size, shift, self.grad_fn(tile), shape)
            except OUT_OF_MEMORY:
                smaller = self._after_oom(size, tile)
                report(Note(f"out of memory at {size[1]}x{size[0]}: retrying in tiles of {smaller} px"))

    def _after_oom(self, size: tuple[int, int], tile: int | None) -> int:
        self._drop_graphs()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        geom = self.geometry()
        current = tile if tile is not None else max(size)
        smaller = max(geom.stride, (current // 2) // geom.stride * geom.stride)
        if (tile is not None and smaller >= tile) or smaller < max(geom.stride, 32):
            raise ImageTooLargeError(
                f"out of memory at {size[1]}x{size[0]} even in tiles of {current} px; "
                f"use --max-size {max(32, max(size) // 2)} or a device with more free memory"
            ) from None
        self._chosen[size] = smaller
        return smaller
