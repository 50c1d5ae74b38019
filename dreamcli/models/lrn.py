"""Local response normalisation across channels, as a banded 1x1 convolution.

PyTorch's ``local_response_norm`` sums squares over neighbouring channels with a
3-D average pool, which made LRN 55 % of a BVLC GoogLeNet dream step on our
2-core CI CPU (a 512x512 step: 0.57 s against 0.25 s for torchvision's GoogLeNet,
which has none).  The same sums as one 1x1 convolution with a 0/1 band matrix
run on the convolution kernels instead (benchmarks/README.md).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


class LocalResponseNorm(nn.Module):
    """x / (k + scale * sum of x² over ``size`` channels around each)^beta.

    ``scale`` multiplies the plain sum: Caffe and PyTorch use alpha / size, TensorFlow alpha.
    The window is PyTorch's (and Caffe's): size // 2 channels before, (size - 1) // 2 after.
    """

    def __init__(self, size: int, scale: float, beta: float, k: float):
        super().__init__()
        self.size, self.scale, self.beta, self.k = size, scale, beta, k

    def _band(self, channels: int, like: torch.Tensor) -> torch.Tensor:
        index = torch.arange(channels, device=like.device)
        offset = index.view(1, -1) - index.view(-1, 1)  # input channel - output channel
        band = (offset >= -(self.size // 2)) & (offset <= (self.size - 1) // 2)
        return band.to(like.dtype).view(channels, channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32 whatever the autocast: the Caffe nets take 0-255 input, and x² overflows
        # fp16 once |x| > 256.
        kind = x.device.type
        off = (
            torch.autocast(kind, enabled=False)
            if kind in ("cpu", "cuda", "mps")
            else contextlib.nullcontext()
        )
        with off:
            wide = x.float()
            squares = F.conv2d(wide * wide, self._band(x.shape[1], wide))
            return (wide / (self.k + self.scale * squares).pow(self.beta)).to(x.dtype)
