"""The primitives of a dream step: octave sizes, resizing, jitter, gradient, normalised step.

The algorithm follows Google's 2015 DeepDream notebook (Mordvintsev, Olah and
Tyka, "Inceptionism: Going Deeper into Neural Networks";
https://github.com/google/deepdream/blob/master/dream.ipynb): roll the image
by a random jitter, take the gradient of the objective, step by
``step_size / mean(|gradient|)`` (so the step length does not depend on the
layer's scale), roll back, keep pixels in range.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.objectives import Objective

# step_size is given in 0-255 pixel units as in the notebook; images here are in [0, 1].
PIXEL_SCALE = 255.0
# Keeps the step finite where a layer gives an all-zero gradient (dead ReLUs).
GRAD_EPS = 1e-8


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


def network_precision(device: torch.device, dtype: torch.dtype):
    """Autocast for the network's forward pass alone (``--precision``).

    Only the network runs in bf16 or fp16: view transforms, objectives, gradient
    shaping and the step stay in float32.  On an Intel CPU with AMX, oneDNN
    JIT-compiled a bf16 depthwise kernel for the gradient blur of a 1x3x23x35
    gradient (sigma 4) that never returned: `--preset silky` hung for over 20
    minutes (issue 23).  ``cache_enabled=False``: a CUDA graph recording must not
    reuse autocast's cache of cast weights (PyTorch notes, "CUDA Graphs").
    """
    return torch.autocast(device.type, dtype, enabled=dtype != torch.float32, cache_enabled=False)


def full_precision(like: torch.Tensor):
    """float32 arithmetic here, whatever autocast a caller opened around it."""
    return torch.autocast(like.device.type, enabled=False)


def gradient(
    capture: LayerCapture,
    image: torch.Tensor,
    goal: Objective,
    sizes: dict[str, int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective's gradient with respect to ``image``, and the objective (both on device).

    ``dtype`` is the network's arithmetic (``network_precision``); the rest is float32.
    """
    with torch.enable_grad(), full_precision(image):
        image = image.detach().requires_grad_(True)
        seen = goal.view(image)
        with network_precision(image.device, dtype):
            outputs = capture(seen)
        loss = goal(outputs, sizes)
        (grad,) = torch.autograd.grad(loss.sum(), image)
    return grad.float(), loss.detach().float()


def step(
    capture: LayerCapture,
    image: torch.Tensor,
    goal: Objective,
    step_size: float,
    shift: tuple[int, int],
    grad_fn: Callable = gradient,
    shape: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One gradient-ascent step with jitter: roll, ascend, roll back, clamp to [0, 1].

    ``grad_fn`` is ``gradient`` or a ``tiling.TiledGradient`` for large images;
    ``shape`` (``shaping.Shaping``) smooths or normalises the gradient first.
    """
    dy, dx = shift
    rolled = torch.roll(image, shifts=(dy, dx), dims=(-2, -1))
    grad, loss = grad_fn(capture, rolled, goal)
    with full_precision(grad):  # shaping and the step: float32 (see network_precision)
        grad = torch.roll(grad, shifts=(-dy, -dx), dims=(-2, -1))
        if shape is not None:
            grad = shape(grad)
        image = image + normalised(grad, step_size)
    return image.clamp_(0.0, 1.0), loss


def normalised(grad: torch.Tensor, step_size: float) -> torch.Tensor:
    """The step: ``grad`` scaled so its mean magnitude is ``step_size`` (0-255 units).

    Per image, as the notebook does, so each image in a batch gets its own step.
    """
    scale = (step_size / PIXEL_SCALE) / (grad.abs().flatten(1).mean(1) + GRAD_EPS)
    return scale.view(-1, 1, 1, 1) * grad
