"""The DeepDream engine: multi-octave gradient ascent on an image.

The algorithm follows Google's 2015 DeepDream notebook (Mordvintsev, Olah and
Tyka, "Inceptionism: Going Deeper into Neural Networks";
https://github.com/google/deepdream/blob/master/dream.ipynb):

* ``make_step``: roll the image by a random jitter, take the gradient of the
  objective, step by ``step_size / mean(|gradient|)`` (so the step length does
  not depend on the layer's scale), roll back, keep pixels in range.
* ``deepdream``: dream from the smallest octave up; at each octave the base
  image is the photo at that size and the dreamed *detail* (dream - base) is
  upscaled and added back, so the photo's own sharpness survives.

It works with any ``nn.Module`` that takes RGB in [0, 1] plus the names of its
modules to maximise.  It prints nothing and writes no files: progress goes to
an optional callback.
"""

from __future__ import annotations

import contextlib
import random
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dreamcli.config import LayerSpec, Settings
from dreamcli.errors import ImageError, SettingsError
from dreamcli.layers import resolve_layer
from dreamcli.objectives import Objective, as_objective, objective  # noqa: F401 (re-exported)

# step_size is given in 0-255 pixel units as in the notebook; images here are in [0, 1].
PIXEL_SCALE = 255.0
# Keeps the step finite where a layer gives an all-zero gradient (dead ReLUs).
GRAD_EPS = 1e-8
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Progress:
    """Sent to the progress callback after every step (and once per octave with iteration 0)."""

    octave: int  # 1-based
    octaves: int
    iteration: int  # 1-based within the octave; 0 = the octave is starting
    iterations: int
    size: tuple[int, int]  # (height, width) of this octave
    loss: torch.Tensor | None  # 0-dim, on the model's device: .item() waits for it


@dataclass(frozen=True)
class Note:
    """A change of plan the user should hear about (e.g. fewer octaves)."""

    message: str


ProgressFn = Callable[[Progress | Note], None]


class _StopForward(Exception):
    """Raised by a hook once every requested layer has been seen: later layers are waste."""


class LayerCapture:
    """Forward hooks that collect the named modules' outputs, then stop the forward pass.

    Use as a context manager: the hooks are always removed on exit (lucent leaks
    them when an exception passes through).
    """

    def __init__(self, model: nn.Module, names: Sequence[str]):
        modules = dict(model.named_modules())
        for name in names:
            if not name or name not in modules:
                resolve_layer(name, modules)  # raises with suggestions
        self.model = model
        self.names = list(dict.fromkeys(names))
        self._modules = [modules[n] for n in self.names]
        self._handles: list = []
        self._running = False
        self.outputs: dict[str, torch.Tensor] = {}

    def __enter__(self) -> LayerCapture:
        for name, module in zip(self.names, self._modules, strict=True):
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.outputs = {}

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            if not self._running:
                return  # another capture on the same model is running its forward pass
            self.outputs[name] = output
            if len(self.outputs) == len(self.names):
                raise _StopForward

        return hook

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        self.outputs = {}
        self._running = True
        try:
            with contextlib.suppress(_StopForward):
                self.model(image)
        finally:
            self._running = False
        if len(self.outputs) != len(self.names):
            missing = [n for n in self.names if n not in self.outputs]
            raise SettingsError(f"layer {missing[0]!r} is not used by the model's forward pass; pick another")
        return self.outputs


def octave_sizes(
    height: int, width: int, octaves: int, scale: float, min_side: int = 1
) -> list[tuple[int, int]]:
    """Octave sizes from smallest to the full size; octaves below ``min_side`` are dropped."""
    sizes = []
    for i in range(octaves):
        factor = scale**-i
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        if min(size) < min_side:
            break
        sizes.append(size)
    return sizes[::-1]


def smallest_input(capture: LayerCapture, device: torch.device, limit: int = 512) -> int:
    """The smallest square side the model can take up to the requested layers (bisection)."""

    def works(side: int) -> bool:
        try:
            with torch.no_grad():
                capture(torch.zeros(1, 3, side, side, device=device))
            return True
        except RuntimeError:  # "Output size is too small" from pooling or convolution
            return False

    if not works(limit):
        raise SettingsError(f"the model cannot take even a {limit}x{limit} image at these layers")
    low, high = 0, limit  # works(high) is True; works(low) is taken as False
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if works(mid) else (mid, high)
    return high


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic, antialiased when shrinking (so octaves do not alias)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)


def random_shift(generator: torch.Generator, jitter: int) -> tuple[int, int]:
    """A random (dy, dx) in [-jitter, jitter], drawn on the CPU so the GPU is never waited on."""
    if jitter == 0:
        return 0, 0
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
    return dy, dx


def gradient(
    capture: LayerCapture,
    image: torch.Tensor,
    layers: Sequence[LayerSpec] | Objective,
    sizes: dict[str, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective's gradient with respect to ``image``, and the objective (both on device)."""
    goal = as_objective(layers)
    with torch.enable_grad():
        image = image.detach().requires_grad_(True)
        loss = goal(capture(goal.view(image)), sizes)
        (grad,) = torch.autograd.grad(loss.sum(), image)
    return grad, loss.detach()


def step(
    capture: LayerCapture,
    image: torch.Tensor,
    layers: Sequence[LayerSpec] | Objective,
    step_size: float,
    shift: tuple[int, int],
    grad_fn: Callable = gradient,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One gradient-ascent step with jitter: roll, ascend, roll back, clamp to [0, 1].

    ``grad_fn`` is ``gradient`` or a ``tiling.TiledGradient`` for large images.
    """
    dy, dx = shift
    rolled = torch.roll(image, shifts=(dy, dx), dims=(-2, -1))
    grad, loss = grad_fn(capture, rolled, layers)
    grad = torch.roll(grad, shifts=(-dy, -dx), dims=(-2, -1))
    image = image + normalised(grad, step_size)
    return image.clamp_(0.0, 1.0), loss


def normalised(grad: torch.Tensor, step_size: float) -> torch.Tensor:
    """The step: ``grad`` scaled so its mean magnitude is ``step_size`` (0-255 units).

    Per image, as the notebook does, so each image in a batch gets its own step.
    """
    scale = (step_size / PIXEL_SCALE) / (grad.abs().flatten(1).mean(1) + GRAD_EPS)
    return scale.view(-1, 1, 1, 1) * grad


# Probes (smallest input, tile geometry, memory per pixel) depend only on the model and
# the layers: measured once per model, not once per image of a batch.
_MEASURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# torch.OutOfMemoryError is torch >= 2.5; older releases only have the CUDA one.
OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _measured(capture: LayerCapture, what: str, measure: Callable[[], object]):
    per_model = _MEASURED.setdefault(capture.model, {})
    key = (what, tuple(capture.names))
    if key not in per_model:
        per_model[key] = measure()
    return per_model[key]


def _cached(model: nn.Module, names: Sequence[str], what: str):
    """What ``_measured`` keeps for this model and these layers, or None if nothing yet."""
    return _MEASURED.get(model, {}).get((what, tuple(names)))


def model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def dream(
    model: nn.Module,
    image: torch.Tensor,
    settings: Settings,
    progress: ProgressFn | None = None,
    tile_size: int | None = None,
    memory: float | None = None,
    precision: str = "fp32",
    guide: dict[str, torch.Tensor] | None = None,
    transform: Callable | None = None,
    goal: Objective | None = None,
    graphs: bool = True,
) -> torch.Tensor:
    """Dream on ``image`` ((3, H, W) or (N, 3, H, W), RGB in [0, 1]) and return the result.

    ``settings.layers`` must name modules of ``model`` (resolve user names first
    with ``dreamcli.layers.resolve_layer``).  ``tile_size`` forces tiled
    gradients; ``memory`` (bytes) lets the engine tile octaves that would not
    fit, and refuse images that cannot fit even tiled.  ``precision`` (fp32,
    bf16 or fp16) is the autocast type of the network's forward pass; the image
    and its updates stay fp32.  ``guide`` maps layer names to guide features
    (``objectives.guide_features``) for the notebook's guided objective;
    ``transform`` (e.g. ``objectives.RandomAffine``) changes what the network
    sees at each step, for dreams started from noise.  ``goal`` replaces the
    objective built from these (the layers it reads must be in
    ``settings.layers``).  On CUDA, untiled steps are recorded as CUDA graphs
    and replayed (``dreamcli.graphs``) unless ``graphs`` is False.  The
    result has the input's shape and lives on the input's device.
    """
    report = progress or (lambda event: None)
    single = image.dim() == 3
    batch = image.unsqueeze(0) if single else image
    device = model_device(model)
    original = batch.to(device=device, dtype=torch.float32)
    seed = settings.seed if settings.seed is not None else random.randrange(2**32)
    generator = torch.Generator().manual_seed(seed)

    with LayerCapture(model, [spec.name for spec in settings.layers]) as capture:
        height, width = original.shape[-2:]
        min_side = _measured(capture, "min_side", lambda: smallest_input(capture, device))
        if min(height, width) < min_side:
            raise ImageError(
                f"the image is {width}x{height} px, too small for layer(s) "
                f"{', '.join(str(s) for s in settings.layers)}: they need at least {min_side}x{min_side}; "
                "use a larger image or an earlier layer"
            )
        sizes = octave_sizes(height, width, settings.octaves, settings.octave_scale, min_side)
        if len(sizes) < settings.octaves:
            report(
                Note(
                    f"using {len(sizes)} of {settings.octaves} octaves: a smaller octave would be "
                    f"under the {min_side} px these layers need"
                )
            )
        tiles = Tiles(
            capture, device, tile_size, memory, batch=original.shape[0], precision=precision, graphs=graphs
        )
        for size in sizes:
            tiles.for_size(size)  # refuse up front what cannot fit, before any work
        goal = goal or Objective(settings.layers, guide, transform)
        dreamed = _dream_octaves(capture, original, sizes, settings, generator, report, tiles, goal)

    dreamed = dreamed.to(image.device)
    return dreamed[0] if single else dreamed


def _dream_octaves(
    capture: LayerCapture,
    original: torch.Tensor,
    sizes: list[tuple[int, int]],
    settings: Settings,
    generator: torch.Generator,
    report: ProgressFn,
    tiles: Tiles,
    goal: Objective,
) -> torch.Tensor:
    detail = torch.zeros_like(resize(original, sizes[0]))
    for octave, size in enumerate(sizes, start=1):
        base = resize(original, size)
        image = base + resize(detail, size)
        report(Progress(octave, len(sizes), 0, settings.iterations, size, None))
        shifts = [random_shift(generator, settings.jitter) for _ in range(settings.iterations)]

        def stepped(iteration: int, loss: torch.Tensor, octave=octave, size=size) -> None:
            report(Progress(octave, len(sizes), iteration, settings.iterations, size, loss))

        image = tiles.octave(capture, image, goal, settings.step_size, shifts, report, stepped)
        detail = image - base
    return image


class Tiles:
    """Decides, per octave size, whether to tile and how; retries smaller after CUDA OOM.

    Untiled octaves on CUDA run as recorded CUDA graphs where the objective allows.
    """

    def __init__(
        self,
        capture,
        device,
        tile_size: int | None,
        memory: float | None,
        batch: int = 1,
        precision="fp32",
        graphs: bool = True,
    ):
        self.capture, self.device, self.batch = capture, device, batch
        self.dtype = PRECISIONS[precision]
        self.forced, self.memory = tile_size, memory
        self.graphs = graphs
        self._chosen: dict[tuple[int, int], int | None] = {}
        # One TiledGradient per tile side: it caches the whole-image layer sizes, which
        # cost a meta-device copy of the model to measure; once per octave, not per step.
        self._tilers: dict[int, object] = {}

    def geometry(self):
        from dreamcli import tiling

        return _measured(self.capture, "geometry", lambda: tiling.geometry(self.capture, self.device))

    def grad_fn(self, tile: int | None) -> Callable:
        from dreamcli import tiling

        if tile is None:
            return gradient
        if tile not in self._tilers:
            self._tilers[tile] = tiling.TiledGradient(tile, self.geometry())
        return self._tilers[tile]

    def for_size(self, size: tuple[int, int]) -> int | None:
        """The tile side for this octave size, or None for a whole-image step."""
        from dreamcli import tiling

        if size not in self._chosen:
            tile = self.forced
            if tile is None and self.memory is not None:
                per_pixel = _measured(
                    self.capture, "per_pixel", lambda: tiling.bytes_per_pixel(self.capture, self.device)
                )
                if self.batch * size[0] * size[1] * per_pixel > self.memory:
                    tile = tiling.choose_tile(size, per_pixel, self.memory, self.geometry(), self.batch)
            self._chosen[size] = tile
        return self._chosen[size]

    def octave(
        self,
        capture,
        image,
        goal: Objective,
        step_size: float,
        shifts,
        report: ProgressFn,
        stepped: Callable[[int, torch.Tensor], None],
    ) -> torch.Tensor:
        """One octave, a step per jitter shift; ``stepped(iteration, loss)`` after each."""
        if not shifts:
            return image
        graphed = self._graphed(capture, image, goal, step_size)
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
            image, loss = self.step(capture, image, goal, step_size, shift, report)
            stepped(k + 1, loss)
        if image is buffer:
            image = image.clone()  # the buffer is overwritten by the next replay of this size
        return image

    def _graphed(self, capture, image, goal: Objective, step_size: float):
        """The recorded step for this octave, or None where graphs cannot or should not be used."""
        from dreamcli import graphs

        if not (self.graphs and graphs.supported(self.device) and graphs.graphable(goal)):
            return None
        if any(tile is not None for tile in self._chosen.values()):
            # An image that needs tiles needs all the memory; recordings would hold some.
            self._drop_graphs()
            return None
        cache = _measured(capture, "graphs", graphs.GraphCache)
        weights = tuple(p.data_ptr() for p in capture.model.parameters())  # a moved model records anew
        key = (tuple(image.shape), self.dtype, step_size, tuple(goal.layers), weights)
        entry = cache.get(
            key,
            lambda pool: graphs.GraphedStep(
                graphs.StaticStep(capture, goal, step_size, image.shape, self.dtype), pool
            ),
        )
        return None if entry.failed else entry

    def _drop_graphs(self) -> None:
        cache = _cached(self.capture.model, self.capture.names, "graphs")
        if cache is not None:
            cache.clear()

    def step(self, capture, image, goal: Objective, step_size: float, shift, report: ProgressFn):
        size = tuple(image.shape[-2:])
        while True:
            tile = self.for_size(size)
            try:
                with torch.autocast(self.device.type, self.dtype, enabled=self.dtype != torch.float32):
                    return step(capture, image, goal, step_size, shift, self.grad_fn(tile))
            except OUT_OF_MEMORY:
                smaller = self._after_oom(size, tile)
                report(Note(f"out of memory at {size[1]}x{size[0]}: retrying in tiles of {smaller} px"))

    def _after_oom(self, size: tuple[int, int], tile: int | None) -> int:
        from dreamcli.errors import ImageTooLargeError

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
