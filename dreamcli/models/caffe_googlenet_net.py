"""The Caffe GoogLeNet (bvlc_googlenet's deploy.prototxt) in PyTorch, for the ported weights.

Module names are the state-dict keys of the ports (``inception_4c_5x5_reduce``
holds that convolution), plus the ReLU, pool, normalisation and concat layers
under Caffe's layer names (``inception_4c_relu_5x5_reduce``), so every Caffe
blob has a module whose output it is.  The forward pass runs in Caffe's
order, and the auxiliary classifiers come last: a dream of a trunk layer never
computes them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dreamcli.models.caffe_googlenet import (
    AUX,
    BVLC_MEAN,
    INCEPTIONS,
    PLACES205_MEAN,
    PLACES365_MEAN,
    POOL_AFTER,
    width,
)
from dreamcli.models.inputs import MeanSubtracted
from dreamcli.models.lrn import LocalResponseNorm
from dreamcli.models.prepare import he_init
from dreamcli.models.weights import fit_state_dict

# Caffe's LRN (pool1/norm1, conv2/norm2): local_size 5, alpha 1e-4, beta 0.75, k 1;
# Caffe divides alpha by the size.
LRN: dict[str, Any] = {"size": 5, "scale": 1e-4 / 5, "beta": 0.75, "k": 1.0}


class AuxPool(nn.Module):
    """loss1/ave_pool and loss2/ave_pool: 5x5, stride 3, as Caffe; then 4x4, which the fc layer needs.

    At Caffe's 224 px input the pooled map is 4x4 already; other sizes are
    averaged down (or up) to it, so that class dreams work at any size.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 5, 3, ceil_mode=True)
        return x if x.shape[-2:] == (4, 4) else F.adaptive_avg_pool2d(x, (4, 4))


class CaffeGoogLeNet(nn.Module):
    def __init__(self, classes: int, mean: tuple[float, float, float]):
        super().__init__()
        self.preprocess = MeanSubtracted(mean, bgr=True)
        self._conv("conv1_7x7_s2", "conv1_relu_7x7", 3, 64, 7, stride=2, padding=3)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.pool1_norm1 = LocalResponseNorm(**LRN)
        self._conv("conv2_3x3_reduce", "conv2_relu_3x3_reduce", 64, 64, 1)
        self._conv("conv2_3x3", "conv2_relu_3x3", 64, 192, 3, padding=1)
        self.conv2_norm2 = LocalResponseNorm(**LRN)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        for block, (given, b1, b2r, b2, b3r, b3, b4) in INCEPTIONS.items():
            self._conv(f"{block}_1x1", f"{block}_relu_1x1", given, b1, 1)
            self._conv(f"{block}_3x3_reduce", f"{block}_relu_3x3_reduce", given, b2r, 1)
            self._conv(f"{block}_3x3", f"{block}_relu_3x3", b2r, b2, 3, padding=1)
            self._conv(f"{block}_5x5_reduce", f"{block}_relu_5x5_reduce", given, b3r, 1)
            self._conv(f"{block}_5x5", f"{block}_relu_5x5", b3r, b3, 5, padding=2)
            self.add_module(f"{block}_pool", nn.MaxPool2d(3, 1, padding=1, ceil_mode=True))
            self._conv(f"{block}_pool_proj", f"{block}_relu_pool_proj", given, b4, 1)
            self.add_module(f"{block}_output", nn.Identity())  # the concat, so that it can be read
            if block in POOL_AFTER:
                self.add_module(POOL_AFTER[block].replace("/", "_"), nn.MaxPool2d(3, 2, ceil_mode=True))
        self.pool5_7x7_s1 = nn.AdaptiveAvgPool2d(1)  # 7x7 at 224 px: the global average
        for head, source in AUX.items():
            self.add_module(f"{head}_ave_pool", AuxPool())
            self._conv(f"{head}_conv", f"{head}_relu_conv", width(source), 128, 1)
            self.add_module(f"{head}_fc_1", nn.Linear(2048, 1024))
            self.add_module(f"{head}_relu_fc", nn.ReLU())
            self.add_module(f"{head}_classifier_1", nn.Linear(1024, classes))

    def _conv(self, name: str, relu: str, given: int, out: int, kernel: int, **kwargs) -> None:
        self.add_module(name, nn.Conv2d(given, out, kernel, **kwargs))
        self.add_module(relu, nn.ReLU())

    def _run(self, name: str, relu: str, x: torch.Tensor) -> torch.Tensor:
        return self.get_submodule(relu)(self.get_submodule(name)(x))

    def _inception(self, block: str, x: torch.Tensor) -> torch.Tensor:
        branches = [
            self._run(f"{block}_1x1", f"{block}_relu_1x1", x),
            self._run(
                f"{block}_3x3",
                f"{block}_relu_3x3",
                self._run(f"{block}_3x3_reduce", f"{block}_relu_3x3_reduce", x),
            ),
            self._run(
                f"{block}_5x5",
                f"{block}_relu_5x5",
                self._run(f"{block}_5x5_reduce", f"{block}_relu_5x5_reduce", x),
            ),
            self._run(
                f"{block}_pool_proj", f"{block}_relu_pool_proj", self.get_submodule(f"{block}_pool")(x)
            ),
        ]
        return self.get_submodule(f"{block}_output")(torch.cat(branches, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        x = self.pool1_norm1(self.pool1_3x3_s2(self._run("conv1_7x7_s2", "conv1_relu_7x7", x)))
        x = self._run("conv2_3x3_reduce", "conv2_relu_3x3_reduce", x)
        x = self.pool2_3x3_s2(self.conv2_norm2(self._run("conv2_3x3", "conv2_relu_3x3", x)))
        kept = {}
        for block in INCEPTIONS:
            x = kept[block] = self._inception(block, x)
            if block in POOL_AFTER:
                x = self.get_submodule(POOL_AFTER[block].replace("/", "_"))(x)
        self.pool5_7x7_s1(x)
        logits = None
        for head, source in AUX.items():  # last: only a dream that asks for them computes them
            y = self.get_submodule(f"{head}_ave_pool")(kept[source])
            y = self._run(f"{head}_conv", f"{head}_relu_conv", y)
            y = self._run(f"{head}_fc_1", f"{head}_relu_fc", y.flatten(1))
            logits = self.get_submodule(f"{head}_classifier_1")(y)
        return logits  # type: ignore[return-value]  # loss2/classifier's: the ports have no main classifier


def _build(classes: int, mean, state_dict: dict | None, seed: int, source: str, title: str) -> CaffeGoogLeNet:
    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = he_init(CaffeGoogLeNet(classes, mean))
    else:
        with torch.device("meta"):
            net = CaffeGoogLeNet(classes, mean)
        net.preprocess = MeanSubtracted(mean, bgr=True)  # its buffer, made on the meta device, is real again
        fit_state_dict(net, state_dict, source, title)
    return net.eval().requires_grad_(False)


def bvlc_googlenet(state_dict=None, *, seed: int = 0, source: str = "the weights") -> CaffeGoogLeNet:
    return _build(1000, BVLC_MEAN, state_dict, seed, source, "the BVLC GoogLeNet")


def googlenet_places365(state_dict=None, *, seed: int = 0, source: str = "the weights") -> CaffeGoogLeNet:
    return _build(365, PLACES365_MEAN, state_dict, seed, source, "GoogLeNet-Places365")


def googlenet_places205(state_dict=None, *, seed: int = 0, source: str = "the weights") -> CaffeGoogLeNet:
    return _build(205, PLACES205_MEAN, state_dict, seed, source, "GoogLeNet-Places205")
