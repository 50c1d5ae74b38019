"""What each network's weights expect as input, made from the engine's RGB in [0, 1].

Every network dreamcli builds starts with one of these as its ``preprocess``
module, so the engine, the tiles and the objectives never see a model's input
convention.
"""

from __future__ import annotations

import torch
from torch import nn


class SignedUnit(nn.Module):
    """[0, 1] RGB -> [-1, 1]: torchvision's GoogLeNet and Inception v3 (``transform_input``).

    ``transform_input=True`` turns ImageNet-normalised input, (x - mean) / std,
    back into (x - 0.5) / 0.5; composing the two gives 2x - 1.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 - 1.0


class ImageNetNormalize(nn.Module):
    """(x - mean) / std with ImageNet's RGB statistics: torchvision's VGG and ResNet weights."""

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MeanSubtracted(nn.Module):
    """[0, 1] RGB -> 0-255 in the network's channel order, less its mean: Caffe's and TF's input.

    ``mean`` is given in the network's channel order; ``bgr`` flips RGB to BGR
    first, as Caffe models were trained on OpenCV's BGR images.
    """

    mean: torch.Tensor  # a buffer

    def __init__(self, mean: tuple[float, float, float], bgr: bool):
        super().__init__()
        self.bgr = bgr
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        return x * 255.0 - self.mean
