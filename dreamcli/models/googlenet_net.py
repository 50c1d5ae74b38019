"""torchvision's GoogLeNet built for dreaming: [0, 1] input, the trunk, the classifier."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dreamcli.errors import WeightsError
from dreamcli.models.googlenet import CLASSIFIER, TRUNK
from dreamcli.models.weights import fit_state_dict


class Preprocess(nn.Module):
    """[0, 1] RGB -> the [-1, 1] input the GoogLeNet weights were trained on.

    torchvision's ``transform_input=True`` turns ImageNet-normalised input,
    (x - mean) / std, back into (x - 0.5) / 0.5; composing the two gives 2x - 1.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 - 1.0


def build(state_dict: dict | None = None, *, seed: int = 0, source: str = "the weights") -> nn.Sequential:
    """torchvision's GoogLeNet as a Sequential of [0, 1] preprocessing + its trunk + classifier.

    With ``state_dict=None`` the weights are random (from ``seed``), which is
    what the tests use; the mechanics are the same, the look is not.
    """
    from torchvision.models import googlenet

    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False)
            _he_init(net)
    else:
        # Built on the meta device and then given the loaded tensors: no time spent
        # initialising 6.6M weights that are about to be replaced.
        with torch.device("meta"):
            net = googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False)
        # The auxiliary classifiers are for training only; checkpoints may or may not have them.
        # Dreaming never reaches the classifier, so a trunk-only file is fine too.
        fit_state_dict(
            net, state_dict, source, "torchvision's GoogLeNet", ignored=("aux1.", "aux2."), optional=("fc.",)
        )
    layers = OrderedDict([("preprocess", Preprocess())])
    layers.update((name, getattr(net, name)) for name in TRUNK)
    has_fc = state_dict is None or "fc.weight" in state_dict
    fc = net.fc if has_fc else MissingClassifier()
    layers.update(zip(CLASSIFIER, (net.avgpool, nn.Flatten(1), fc), strict=True))
    return nn.Sequential(layers).eval().requires_grad_(False)


class MissingClassifier(nn.Module):
    """Stands in for ``fc`` when the weights file has none (dreaming layers never reach it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise WeightsError(
            "these weights have no classifier (fc.weight, fc.bias); dreaming toward a class "
            "needs the full GoogLeNet state dict"
        )


def _he_init(net: nn.Module) -> None:
    # He et al. 2015 ("Delving deep into rectifiers") keeps the activations' scale
    # through ReLU layers; torchvision's own init (std 0.01) shrinks them ~1e-17
    # by inception_4c, too close to float noise for tests of the mechanics.
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weight metadata (no download)."""
    from torchvision.models import GoogLeNet_Weights

    return list(GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"])
