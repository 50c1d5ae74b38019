"""Dream steps recorded once per octave size as CUDA graphs, then replayed.

An eager step of GoogLeNet up to inception_4c launches some 300 small kernels
(forward and backward); on a fast GPU the launches, not the arithmetic, set the
pace.  A CUDA graph records the launches once and replays them all with one
call (PyTorch notes, "CUDA Graphs":
https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs).  On an H100 one
1024x768 bf16 step took 8.97 ms eager and 2.66 ms replayed, and the classic
dream loop 278 ms against 88 ms (benchmarks/README.md).

A replay reads and writes the same memory every time, so the step here works
on fixed tensors: it takes its image and its jitter from static buffers and
writes the new image and the objective back into them.  The jitter is an index
shift held in a tensor on the GPU (``roll``): ``torch.roll`` takes Python ints,
which a recording would freeze.

The step itself is plain PyTorch and runs eagerly on the CPU, where the tests
check it against ``steps.step``; only the recording needs CUDA.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch

from dreamcli.engine.capture import model_device
from dreamcli.engine.objectives import Objective
from dreamcli.engine.steps import gradient, normalised

# Recorded steps kept per model: the four octave sizes of two image sizes.  Each
# holds its buffers; the temporaries of all of them share one memory pool.
CACHE_LIMIT = 8


def supported(device: torch.device) -> bool:
    return device.type == "cuda"


def roll(image: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``torch.roll(image, shift, dims=(-2, -1))`` for a (dy, dx) tensor on the image's device."""
    height, width = image.shape[-2:]
    rows = (torch.arange(height, device=image.device) - shift[0]).remainder(height)
    cols = (torch.arange(width, device=image.device) - shift[1]).remainder(width)
    return image.index_select(-2, rows).index_select(-1, cols)


class StaticStep:
    """``steps.step`` on fixed tensors: ``image`` and ``shift`` in, ``image`` and ``loss`` out."""

    def __init__(self, capture, goal: Objective, step_size: float, shape: Sequence[int], dtype: torch.dtype):
        device = model_device(capture.model)
        self.capture, self.goal, self.step_size, self.dtype = capture, goal, step_size, dtype
        self.image = torch.zeros(tuple(shape), device=device)
        self.shift = torch.zeros(2, dtype=torch.long, device=device)
        self.loss = torch.zeros(shape[0], device=device)

    def __call__(self) -> None:
        rolled = roll(self.image, self.shift)
        grad, loss = gradient(self.capture, rolled, self.goal, dtype=self.dtype)  # steps.network_precision
        grad = roll(grad, -self.shift)
        self.image.add_(normalised(grad, self.step_size)).clamp_(0.0, 1.0)
        self.loss.copy_(loss)


def warm_up(body: Callable[[], None], device: torch.device) -> None:
    """Run ``body`` once for real; on CUDA on a side stream, as recording requires."""
    if device.type != "cuda":
        body()
        return
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        body()
    torch.cuda.current_stream(device).wait_stream(side)


def record(body: Callable[[], None], pool) -> Callable[[], None]:
    """Record ``body``'s kernels into a CUDA graph (nothing runs) and return its replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        body()
    return graph.replay


class GraphedStep:
    """A StaticStep: the first call runs it for real and records it; later calls replay it.

    If recording fails, ``failed`` says why and the caller goes on with eager steps.
    """

    def __init__(self, static: StaticStep, pool=None):
        self.static, self.pool = static, pool
        self.replay: Callable[[], None] | None = None
        self.failed: str | None = None

    def __call__(self, image: torch.Tensor, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        static = self.static
        if image is not static.image:
            static.image.copy_(image)
        static.shift.copy_(shift)
        if self.replay is not None:
            self.replay()
        else:
            warm_up(static, static.image.device)  # a real step: its result is kept
            try:
                self.replay = record(static, self.pool)
            except RuntimeError as error:  # includes running out of memory while recording
                self.failed = (str(error).strip() or type(error).__name__).splitlines()[0]
            # The recording needs no Python objects; dropping them lets the model be freed.
            static.capture = static.goal = None  # type: ignore[assignment]
        return static.image, static.loss.clone()


class GraphCache:
    """Recorded steps of one model, least recently used dropped first; one shared memory pool."""

    def __init__(self, limit: int = CACHE_LIMIT):
        self.limit = limit
        self.entries: OrderedDict[tuple, GraphedStep] = OrderedDict()
        self.pool: object = None

    def get(self, key: tuple, make: Callable[[object], GraphedStep]) -> GraphedStep:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        if self.pool is None and torch.cuda.is_available():
            self.pool = torch.cuda.graph_pool_handle()
        entry = self.entries[key] = make(self.pool)
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)
        return entry

    def clear(self) -> None:
        """Free the recordings (and, after ``torch.cuda.empty_cache``, their memory)."""
        self.entries.clear()
        self.pool = None
