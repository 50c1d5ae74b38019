"""Inception5h (``tensorflow_inception_graph.pb``) in PyTorch, for the ported weights.

The convolutions are named as the port's state-dict keys (``mixed4d_3x3_pre_relu_conv``);
their ReLUs, pools, normalisations and concats carry the TF graph's names
(``mixed4d_3x3``, ``maxpool0``, ``mixed4d``), so every tensor of the tutorial
can be read.  TensorFlow pads "SAME": for a stride of 2 the extra pixel goes
after, not before, which a symmetric padding would shift.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dreamcli.models.inception5h import CLASSES, CONVS, MIXED, POOL_AFTER
from dreamcli.models.inputs import MeanSubtracted
from dreamcli.models.lrn import LocalResponseNorm
from dreamcli.models.prepare import he_init
from dreamcli.models.weights import fit_state_dict

# The tutorial's imagenet_mean, one value for all three channels.
MEAN = (117.0, 117.0, 117.0)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis: (before, after), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, fill: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    return F.pad(x, (left, right, top, bottom), value=fill)


class SameMaxPool(nn.MaxPool2d):
    """A 3x3, stride-2 max pool with TensorFlow's SAME padding (by -inf: the padding never wins)."""

    def __init__(self):
        super().__init__(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_same(x, 3, 2, float("-inf")))


def tf_local_response_norm() -> LocalResponseNorm:
    """tf.nn.local_response_normalization with the graph's values: depth_radius 4 (9 channels),
    alpha 1e-4 on the plain sum of squares (TensorFlow does not divide it), beta 0.5, bias 1."""
    return LocalResponseNorm(size=9, scale=1e-4, beta=0.5, k=1.0)


class Inception5h(nn.Module):
    def __init__(self):
        super().__init__()
        self.preprocess = MeanSubtracted(MEAN, bgr=False)
        self.conv2d0_pre_relu_conv = nn.Conv2d(3, 64, 7, stride=2)  # padded SAME in forward
        self.conv2d0 = nn.ReLU()
        self.maxpool0 = SameMaxPool()
        self.localresponsenorm0 = tf_local_response_norm()
        self._conv("conv2d1", 64, 64, 1)
        self._conv("conv2d2", 64, 192, 3)
        self.localresponsenorm1 = tf_local_response_norm()
        self.maxpool1 = SameMaxPool()
        for block, (given, b1, b2r, b2, b3r, b3, b4) in MIXED.items():
            shapes = (
                (given, b1, 1),
                (given, b2r, 1),
                (b2r, b2, 3),
                (given, b3r, 1),
                (b3r, b3, 5),
                (given, b4, 1),
            )
            for conv, (into, out, kernel) in zip(CONVS, shapes, strict=True):
                if conv == "pool_reduce":
                    self.add_module(f"{block}_pool", nn.MaxPool2d(3, 1, padding=1))  # SAME at stride 1
                self._conv(f"{block}_{conv}", into, out, kernel)
            self.add_module(block, nn.Identity())  # the concat, so that it can be read
            if block in POOL_AFTER:
                self.add_module(POOL_AFTER[block], SameMaxPool())
        self.avgpool0 = nn.AdaptiveAvgPool2d(1)  # 7x7 at 224 px: the global average
        self.softmax2_pre_activation_matmul = nn.Linear(1024, CLASSES)

    def _conv(self, name: str, into: int, out: int, kernel: int) -> None:
        # Stride 1: SAME is a symmetric padding of kernel // 2.
        self.add_module(f"{name}_pre_relu_conv", nn.Conv2d(into, out, kernel, padding=kernel // 2))
        self.add_module(name, nn.ReLU())

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.get_submodule(name)(self.get_submodule(f"{name}_pre_relu_conv")(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        x = self.conv2d0(self.conv2d0_pre_relu_conv(pad_same(x, 7, 2)))
        x = self.localresponsenorm0(self.maxpool0(x))
        x = self._run("conv2d2", self._run("conv2d1", x))
        x = self.maxpool1(self.localresponsenorm1(x))
        for block in MIXED:
            branches = [
                self._run(f"{block}_1x1", x),
                self._run(f"{block}_3x3", self._run(f"{block}_3x3_bottleneck", x)),
                self._run(f"{block}_5x5", self._run(f"{block}_5x5_bottleneck", x)),
                self._run(f"{block}_pool_reduce", self.get_submodule(f"{block}_pool")(x)),
            ]
            x = self.get_submodule(block)(torch.cat(branches, 1))
            if block in POOL_AFTER:
                x = self.get_submodule(POOL_AFTER[block])(x)
        return self.softmax2_pre_activation_matmul(self.avgpool0(x).flatten(1))


def build(state_dict: dict | None = None, *, seed: int = 0, source: str = "the weights") -> Inception5h:
    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = he_init(Inception5h())
    else:
        with torch.device("meta"):
            net = Inception5h()
        net.preprocess = MeanSubtracted(MEAN, bgr=False)  # its buffer, made on the meta device, is real again
        fit_state_dict(net, state_dict, source, "Inception5h")
    return net.eval().requires_grad_(False)
