"""Any torchvision (or timm) classifier built for dreaming, its layer table read off the module tree.

The network is wrapped as ``zoo_net.Torchvision`` wraps Inception and VGG:
its preprocessing first, its children under their own names, so a layer reads
as the library names it (``features.5``, ``stages.2``).  In-place activations
are made out-of-place, since they would rewrite a captured output.

Vision transformers carry tokens, (N, 1 + h*w, C), not feature maps.  ``ViT``
runs torchvision's ViT with two changes made once here, so that every objective,
sheet and atlas works unchanged: after each encoder block a ``TokenGrid`` module
reshapes the patch tokens to (N, C, h, w) and back (identity for the network, a
feature map for the capture: the layer ``encoder_layer_5`` is that grid), and
the position embedding is interpolated to the input's patch grid, so a ViT takes
any size of at least one patch, not only 224 px.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dreamcli.errors import SettingsError, WeightsError
from dreamcli.layers import LayerTable
from dreamcli.models.inputs import ImageNetNormalize
from dreamcli.models.prepare import he_init
from dreamcli.models.weights import fit_state_dict
from dreamcli.models.zoo_net import Torchvision

# The meta-device pass that reads the layer table sees this (height, width): not square, so
# that a channels-last output (ConvNeXt's and Swin's permuted blocks, N x H x W x C) shows.
PROBE = (288, 224)


def _made_out_of_place(net: nn.Module) -> nn.Module:
    for module in net.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False  # type: ignore[assignment]
    return net


def _library_model(source: str, arch: str) -> nn.Module:
    if source == "timm":
        try:
            import timm
        except ImportError:
            raise SettingsError(
                f"timm:{arch} needs timm: pip install 'dreamcli[timm]' (or pip install timm)"
            ) from None
        return timm.create_model(arch, pretrained=False)
    import torchvision.models as tv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet's and Inception's notes on their default init
        return tv.get_model(arch, weights=None)


class TokenGrid(nn.Module):
    """Patch tokens (N, h*w, C) -> a feature map (N, C, h, w): what a ViT layer's capture reads."""

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def position_embedding(embedding: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """torchvision's (1, 1 + g*g, C) position embedding for an h x w patch grid (bicubic, as DeiT/timm)."""
    grid = embedding.shape[1] - 1
    side = round(grid**0.5)
    if side * side != grid or (height, width) == (side, side):
        return embedding
    patches = embedding[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(height, width), mode="bicubic", align_corners=False)
    return torch.cat([embedding[:, :1], patches.flatten(2).transpose(1, 2)], 1)


class ViT(nn.Module):
    """torchvision's VisionTransformer at any input size, each encoder block's tokens seen as a grid."""

    # torchvision's parts: the patch convolution, the Encoder (dropout, pos_embedding, layers, ln),
    # the heads and the class token.
    conv_proj: Any
    encoder: Any
    heads: Any
    class_token: Any

    def __init__(self, net: nn.Module, preprocess: nn.Module):
        super().__init__()
        self.preprocess = preprocess
        self.conv_proj, self.encoder, self.heads = net.conv_proj, net.encoder, net.heads
        self.class_token = net.class_token
        for block in self.encoder.layers:
            block.grid = TokenGrid()  # no parameters: the state dict is torchvision's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(self.preprocess(x))
        n, _, height, width = x.shape
        tokens = torch.cat([self.class_token.expand(n, -1, -1), x.flatten(2).transpose(1, 2)], 1)
        tokens = self.encoder.dropout(tokens + position_embedding(self.encoder.pos_embedding, height, width))
        for block in self.encoder.layers:
            tokens = block(tokens)
            grid = block.grid(tokens[:, 1:], height, width)
            tokens = torch.cat([tokens[:, :1], grid.flatten(2).transpose(1, 2)], 1)
        return self.heads(self.encoder.ln(tokens)[:, 0])


def _skeleton(source: str, arch: str) -> nn.Module:
    """The network without its weights: on the meta device, or (RegNet computes its widths with
    tensors while it is built) on the CPU."""
    try:
        with torch.device("meta"):
            return _library_model(source, arch)
    except (NotImplementedError, RuntimeError):
        return _library_model(source, arch)


def _is_torchvision_vit(net: nn.Module) -> bool:
    return type(net).__name__ == "VisionTransformer" and hasattr(net, "conv_proj")


def build(source: str, arch: str, state_dict: dict | None, *, seed: int = 0, src: str = "the weights"):
    """The library's ``arch`` with ``state_dict`` (or random weights from ``seed``), RGB [0, 1] in."""
    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _library_model(source, arch)
            if not _is_torchvision_vit(net):
                he_init(net)
    else:
        net = _skeleton(source, arch)
        fit_state_dict(net, state_dict, src, f"{source}'s {arch}")
    net = _made_out_of_place(net)
    wrapper = ViT if _is_torchvision_vit(net) else Torchvision
    return wrapper(net, _preprocess(net)).eval().requires_grad_(False)


def _preprocess(net: nn.Module) -> nn.Module:
    """ImageNet's normalisation (torchvision's weights), or the one a timm model's config names."""
    config = getattr(net, "pretrained_cfg", None) or {}
    preprocess = ImageNetNormalize()
    if "mean" in config and "std" in config:
        preprocess.mean = torch.tensor(config["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        preprocess.std = torch.tensor(config["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return preprocess


def pretrained(source: str, arch: str) -> dict[str, torch.Tensor]:
    """timm's pretrained weights through timm's own download and cache (the Hugging Face hub's)."""
    try:
        import timm

        return timm.create_model(arch, pretrained=True).state_dict()
    except ImportError:
        raise SettingsError(f"timm:{arch} needs timm: pip install 'dreamcli[timm]'") from None
    except Exception as exc:  # timm and the hub raise many types for a missing or unreachable file
        raise WeightsError(
            f"could not get timm's pretrained {arch} ({type(exc).__name__}); connect to the internet "
            "once, or pass --weights FILE"
        ) from None


def outputs(net: nn.Module, size: tuple[int, int] = PROBE) -> dict[str, list[tuple[int, ...]]]:
    """Each module's output shapes over one forward pass of a ``size`` (height, width) image."""
    calls: dict[str, list[tuple[int, ...]]] = {}
    handles = []
    for name, module in net.named_modules():
        if name:

            def hook(_module, _inputs, output, name=name):
                if isinstance(output, torch.Tensor):
                    calls.setdefault(name, []).append(tuple(output.shape))

            handles.append(module.register_forward_hook(hook))
    device = next(net.parameters()).device
    try:
        net(torch.zeros(1, 3, *size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _map(shape: tuple[int, ...], probe: tuple[int, int]) -> bool:
    """A (N, C, H, W) feature map of the probe, not channels-last (N, H, W, C): H/W as the probe's."""
    if len(shape) != 4 or shape[3] == 0:
        return False
    return abs(shape[2] / shape[3] - probe[0] / probe[1]) < 0.15 or shape[2] == shape[3] == 1


def describe(source: str, arch: str) -> tuple[LayerTable, str, str | None, int]:
    """The layer table, the default layer, the logits module and the class count of ``arch``.

    Layers are the modules called once with a (N, C) or (N, C, H, W) output.  The
    default is the block three quarters down the shallowest row (of four or more)
    of blocks with maps of at least 7x7 at 224 px: a stage where the network sees
    object parts (ResNet's layer3, ConvNeXt's features.5; a ViT's block 8 of 12).
    The logits are the last (N, C) output.
    """
    net = _made_out_of_place(_skeleton(source, arch))
    net = (ViT if _is_torchvision_vit(net) else Torchvision)(net, _preprocess(net)).eval()
    net.preprocess.to(next(net.parameters()).device)
    seen: dict = {}
    for probe in (PROBE, (224, 224), (299, 299)):  # MaxViT takes only 224 px; Inception v3, 299
        try:
            seen = outputs(net, probe)
            break
        except (RuntimeError, AssertionError):  # timm asserts its input size
            continue
    if not seen:
        raise SettingsError(f"{source}:{arch} does not run at 224 or 299 px; dreamcli cannot read its layers")
    shapes = {m: s[0] for m, s in seen.items() if len(s) == 1 and (len(s[0]) == 2 or _map(s[0], probe))}
    shapes.pop("preprocess", None)
    channels = {m: shape[1] for m, shape in shapes.items()}
    aliases = {}
    if isinstance(net, ViT):
        for index, _ in enumerate(net.encoder.layers):
            block = f"encoder.layers.encoder_layer_{index}"
            aliases[f"encoder_layer_{index}"] = f"{block}.grid"
            aliases[f"{block}"] = f"{block}.grid"
    modules = tuple(m for m, _ in net.named_modules() if m and m not in aliases)
    blocks = {m for m, module in net.named_modules() if any(True for _ in module.children())}
    maps = [m for m, shape in shapes.items() if len(shape) == 4 and min(shape[2:]) >= 7 and m in blocks]
    depths = sorted({m.count(".") for m in maps})
    rows = [[m for m in maps if m.count(".") == depth] for depth in depths]
    row = list(dict.fromkeys(aliases.values())) or next((r for r in rows if len(r) >= 4), maps)
    if not row:
        raise SettingsError(
            f"{source}:{arch} has no (N, C, H, W) feature maps dreamcli can read (Swin's are channels-last, "
            "timm's ViTs give tokens; torchvision's ViTs work)"
        )
    default = row[int(0.75 * (len(row) - 1) + 0.5)]
    default = default.removeprefix("encoder.layers.").removesuffix(".grid")  # a ViT block: its short name
    flat = [m for m, shape in shapes.items() if len(shape) == 2]
    logits = flat[-1] if flat else None
    return LayerTable(("preprocess", *modules), channels, aliases), default, logits, channels.get(logits, 0)
