"""torchvision's Inception v3, VGG and ResNet built for dreaming, and their layer tables."""

from __future__ import annotations

import torch
from torch import nn

from dreamcli.layers import LayerTable
from dreamcli.models.inputs import ImageNetNormalize, SignedUnit
from dreamcli.models.prepare import he_init
from dreamcli.models.weights import fit_state_dict


def _torchvision(name: str) -> nn.Module:
    import torchvision.models as tv

    if name == "inception_v3":
        # transform_input is done by the SignedUnit preprocessing; the auxiliary head trains only.
        return tv.inception_v3(weights=None, aux_logits=False, transform_input=False, init_weights=False)
    return getattr(tv, name)(weights=None)


class Torchvision(nn.Module):
    """``preprocess``, then a torchvision network whose children are registered here under their
    own names, so that layers read as torchvision's (``features.22``, ``layer3``)."""

    def __init__(self, net: nn.Module, preprocess: nn.Module):
        super().__init__()
        self.preprocess = preprocess
        for name, child in net.named_children():
            self.add_module(name, child)
        self.__dict__["_net"] = net  # runs the forward pass; its children are ours, so hooks see them
        self._net: nn.Module
        for module in net.modules():
            if isinstance(module, nn.ReLU):
                # An in-place ReLU would change a captured convolution output under the capture's feet.
                module.inplace = False

    def train(self, mode: bool = True) -> Torchvision:
        self._net.training = mode
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._net(self.preprocess(x))


def build_named(name: str, state_dict: dict | None, seed: int, source: str) -> nn.Module:
    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = he_init(_torchvision(name))
    else:
        with torch.device("meta"):
            net = _torchvision(name)
        fit_state_dict(net, state_dict, source, f"torchvision's {name}", ignored=("AuxLogits.",))
    preprocess = SignedUnit() if name == "inception_v3" else ImageNetNormalize()
    return Torchvision(net, preprocess).eval().requires_grad_(False)


def table(name: str) -> LayerTable:
    """Every module with one tensor output per forward pass, with its channels (a meta-device pass).

    A module called twice (ResNet's shared ReLUs) is left out: reading it would stop
    at its first call.
    """
    size = 299 if name == "inception_v3" else 224
    with torch.device("meta"):
        net = build_named(name, None, 0, "")
        calls: dict[str, list[int]] = {}
        handles = []
        for module_name, module in net.named_modules():
            if module_name:

                def hook(_module, _inputs, output, module_name=module_name):
                    if isinstance(output, torch.Tensor) and output.dim() in (2, 4):
                        calls.setdefault(module_name, []).append(output.shape[1])

                handles.append(module.register_forward_hook(hook))
        try:
            net(torch.zeros(1, 3, size, size))
        finally:
            for handle in handles:
                handle.remove()
    # Inception v3's BasicConv2d applies ReLU in place to its conv (and, folded, bn) output, which
    # would rewrite a captured tensor: those two are not offered, the block itself is.
    in_place = name == "inception_v3"
    channels = {
        m: counts[0]
        for m, counts in calls.items()
        if len(counts) == 1 and m != "preprocess" and not (in_place and m.endswith((".conv", ".bn")))
    }
    return LayerTable(("preprocess", *channels), channels)


def inception_v3(state_dict=None, *, seed: int = 0, source: str = "the weights") -> nn.Module:
    return build_named("inception_v3", state_dict, seed, source)


def vgg16(state_dict=None, *, seed: int = 0, source: str = "the weights") -> nn.Module:
    return build_named("vgg16", state_dict, seed, source)


def vgg19(state_dict=None, *, seed: int = 0, source: str = "the weights") -> nn.Module:
    return build_named("vgg19", state_dict, seed, source)


def resnet50(state_dict=None, *, seed: int = 0, source: str = "the weights") -> nn.Module:
    return build_named("resnet50", state_dict, seed, source)


def inception_v3_table() -> LayerTable:
    return table("inception_v3")


def vgg16_table() -> LayerTable:
    return table("vgg16")


def vgg19_table() -> LayerTable:
    return table("vgg19")


def resnet50_table() -> LayerTable:
    return table("resnet50")
