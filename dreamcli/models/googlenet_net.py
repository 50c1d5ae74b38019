"""torchvision's GoogLeNet (Inception v1), defined here so that a default run never imports torchvision.

The modules, their names and their state-dict keys are torchvision's own
(``torchvision.models.googlenet``), so its checkpoint ``googlenet-1378be20.pth``
loads as it is; a test builds both and compares them.  Importing torchvision
pulls in ``torch._dynamo`` (through ``torchvision.ops``): 2.4 s of every
command's start-up on our 2-core CI machines (benchmarks/README.md).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from dreamcli.errors import WeightsError
from dreamcli.models.googlenet import CLASSIFIER, INCEPTIONS, TRUNK
from dreamcli.models.inputs import SignedUnit
from dreamcli.models.prepare import he_init
from dreamcli.models.weights import fit_state_dict


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 0.001, as torchvision), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not in place: with BatchNorm folded, an in-place ReLU would rewrite the ``.conv``
        # output that a capture may hold (torchvision's block does it in place).
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four branches, concatenated.  torchvision's "5x5" branch uses a 3x3 kernel (its port's quirk)."""

    def __init__(self, given: int, b1: int, b2_reduce: int, b2: int, b3_reduce: int, b3: int, b4: int):
        super().__init__()
        self.branch1 = BasicConv2d(given, b1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(given, b2_reduce, kernel_size=1), BasicConv2d(b2_reduce, b2, kernel_size=3, padding=1)
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(given, b3_reduce, kernel_size=1), BasicConv2d(b3_reduce, b3, kernel_size=3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(given, b4, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def _trunk() -> OrderedDict:
    """The trunk's modules in forward order, made in torchvision's order (so a seed gives its weights)."""
    stem = {
        "conv1": lambda: BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3),
        "maxpool1": lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True),
        "conv2": lambda: BasicConv2d(64, 64, kernel_size=1),
        "conv3": lambda: BasicConv2d(64, 192, kernel_size=3, padding=1),
        "maxpool2": lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True),
        "maxpool3": lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True),
        "maxpool4": lambda: nn.MaxPool2d(2, stride=2, ceil_mode=True),
    }
    return OrderedDict(
        (name, stem[name]() if name in stem else Inception(*INCEPTIONS[name])) for name in TRUNK
    )


def build(state_dict: dict | None = None, *, seed: int = 0, source: str = "the weights") -> nn.Sequential:
    """GoogLeNet as a Sequential of [0, 1] preprocessing, the trunk and the classifier.

    With ``state_dict=None`` the weights are random (from ``seed``), which is
    what the tests use; the mechanics are the same, the look is not.
    """
    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            trunk, fc = _trunk(), nn.Linear(1024, 1000)
            for block in trunk.values():  # after fc's init, as torchvision's order draws it
                he_init(block)
    else:
        # Built on the meta device and then given the loaded tensors: no time spent
        # initialising 6.6M weights that are about to be replaced.
        with torch.device("meta"):
            trunk, fc = _trunk(), nn.Linear(1024, 1000)
        holder = nn.Module()
        for name, module in [*trunk.items(), ("fc", fc)]:
            holder.add_module(name, module)
        # The auxiliary classifiers are for training only; checkpoints may or may not have them.
        # Dreaming never reaches the classifier, so a trunk-only file is fine too.
        fit_state_dict(
            holder,
            state_dict,
            source,
            "torchvision's GoogLeNet",
            ignored=("aux1.", "aux2."),
            optional=("fc.",),
        )
        if "fc.weight" not in state_dict:
            fc = MissingClassifier()  # type: ignore[assignment]
    layers: OrderedDict[str, nn.Module] = OrderedDict([("preprocess", SignedUnit())])
    layers.update(trunk)
    layers.update(zip(CLASSIFIER, (nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1), fc), strict=True))
    return nn.Sequential(layers).eval().requires_grad_(False)


class MissingClassifier(nn.Module):
    """Stands in for ``fc`` when the weights file has none (dreaming layers never reach it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise WeightsError(
            "these weights have no classifier (fc.weight, fc.bias); dreaming toward a class "
            "needs the full GoogLeNet state dict"
        )
