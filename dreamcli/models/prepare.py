"""Making a built network fast to dream with: BatchNorm folded, channels-last, frozen."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm into the convolution before it (in place).

    In eval mode BN is an affine map per channel, so conv followed by BN is one
    conv with rescaled weights and a bias: the same function, one kernel fewer
    per layer and no BN in the backward pass.  Works on modules that hold a
    ``.conv`` then a ``.bn`` (torchvision's BasicConv2d, every conv in GoogLeNet).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(conv, bn)
            module.bn = nn.Identity()
    return model.requires_grad_(False)


def prepare_for_dreaming(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Move to ``device``, fold BatchNorm, store weights channels-last, freeze them.

    channels_last lets oneDNN (CPU) and cuDNN (GPU) pick their fastest
    convolution kernels: on the 2-core CPU of our CI machines it cut the
    classic 1024x768 dream loop from about 13 s to 9 s (benchmarks/README.md).
    """
    model = fold_batchnorm(model.to(device).eval())
    # Only the image's gradient is wanted: autograd then tracks no weights at all.
    return model.to(memory_format=torch.channels_last).requires_grad_(False)


def he_init(model: M) -> M:
    """Random convolution weights at He et al.'s scale ("Delving deep into rectifiers", 2015),
    for networks built without weights (the tests): activations keep their size through the
    ReLUs, where PyTorch's default init shrinks them toward float noise by the deep layers."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model
