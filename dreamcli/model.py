"""GoogLeNet (Inception v1) for dreaming: loading, layer names, and trimming.

The engine in ``dreamcli.dream`` works with any ``nn.Module`` that takes RGB in
[0, 1]; this module supplies torchvision's GoogLeNet in that form, plus the
Caffe layer names (``inception_4c/3x3_reduce``) that DeepDream users know from
Google's 2015 notebook, which used the Caffe ``bvlc_googlenet`` model.
"""

from __future__ import annotations

import difflib
import urllib.error
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from dreamcli.errors import SettingsError, WeightsError
from dreamcli.layers import CLASSIFIER, TRUNK


class Preprocess(nn.Module):
    """[0, 1] RGB -> the [-1, 1] input the GoogLeNet weights were trained on.

    torchvision's ``transform_input=True`` turns ImageNet-normalised input,
    (x - mean) / std, back into (x - 0.5) / 0.5; composing the two gives 2x - 1.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 - 1.0


def googlenet_trunk(
    state_dict: dict[str, torch.Tensor] | None = None, seed: int = 0, source: str = "the weights"
) -> nn.Sequential:
    """torchvision's GoogLeNet as a Sequential of [0, 1] preprocessing + its trunk.

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
        _load_strict(net, state_dict, source)
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


def _load_strict(net: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "the weights") -> None:
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise WeightsError(f"{source} is not a GoogLeNet state dict (a dict of tensors)")
    # The auxiliary classifiers are for training only; checkpoints may or may not have them.
    wanted = {k: v for k, v in state_dict.items() if not k.startswith(("aux1.", "aux2."))}
    expected = net.state_dict()
    if not any(k.startswith("fc.") for k in wanted):
        # Dreaming never reaches the classifier: a trunk-only file is fine.
        expected = {k: v for k, v in expected.items() if not k.startswith("fc.")}
    missing = sorted(set(expected) - set(wanted))
    unexpected = sorted(set(wanted) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(
                f"missing {len(missing)} keys ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
            )
        if unexpected:
            parts.append(
                f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:3])}"
                f"{', ...' if len(unexpected) > 3 else ''})"
            )
        raise WeightsError(f"{source} does not fit torchvision's GoogLeNet: {'; '.join(parts)}")
    for key, tensor in wanted.items():
        if tensor.shape != expected[key].shape:
            raise WeightsError(
                f"{source} does not fit torchvision's GoogLeNet: {key} has shape "
                f"{tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
            )
    net.load_state_dict(wanted, strict=False, assign=True)  # checked above; fc may be absent


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a local state dict safely: ``weights_only=True`` refuses pickled code."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol chatter is not the user's problem
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist; check the --weights path") from None
    except IsADirectoryError:
        raise WeightsError(f"weights file {path} is a folder; give the .pth file inside it") from None
    except PermissionError:
        raise WeightsError(f"weights file {path} cannot be read (permission denied)") from None
    except Exception as exc:  # torch raises many types for bad or unsafe files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"weights file {path} cannot be loaded safely ({reason[:200]}); "
            "give a GoogLeNet state dict saved with torch.save(model.state_dict(), FILE)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    return state


def download_weights(progress: bool = True) -> dict[str, torch.Tensor]:
    """torchvision's own download path and cache (``$TORCH_HOME/hub/checkpoints``)."""
    from torchvision.models import GoogLeNet_Weights

    weights = GoogLeNet_Weights.IMAGENET1K_V1
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return weights.get_state_dict(progress=progress, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsError(
            f"could not download the GoogLeNet weights {weights.url} into {cache} ({reason}); "
            "connect to the internet once, or download that file yourself and pass --weights FILE"
        ) from None


def load_googlenet(weights: str | Path | None = None, progress: bool = True) -> nn.Sequential:
    """The pretrained GoogLeNet trunk, from a local file or torchvision's cache/download."""
    if weights is not None:
        return googlenet_trunk(load_weights_file(weights), source=f"weights file {weights}")
    return googlenet_trunk(download_weights(progress), source="the downloaded weights")


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; explicit names are checked."""
    name = name.strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingsError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(f"device {name!r}: CUDA is not available here; use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise SettingsError(
                f"device {name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif device.type == "mps" and not mps_ok:
        raise SettingsError(f"device {name!r}: Apple MPS is not available here; use --device cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise SettingsError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def googlenet_channels(names: list[str]) -> dict[str, int]:
    """Channel count of each named GoogLeNet module, from a forward pass on the meta device.

    The meta device computes shapes only, so this needs neither weights nor time.
    """
    from dreamcli.dream import LayerCapture

    with torch.device("meta"):
        net = googlenet_trunk()
        with LayerCapture(net, names) as capture:
            outputs = capture(torch.zeros(1, 3, 224, 224))
    return {name: outputs[name].shape[1] for name in names}


def choose_kernels(device: torch.device, reproducible: bool) -> None:
    """cuDNN: repeatable kernels when a seed was given, and never autotuning.

    Same seed, same file needs deterministic kernels.  ``cudnn.benchmark`` is
    left off: on an H100 its timing of candidates for every new shape (each
    octave, each probe) made the first dream of a 512x512 image take ~30 s
    against a 0.06 s loop (benchmarks/README.md).
    """
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = reproducible
        torch.backends.cudnn.benchmark = False


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm into the convolution before it (in place).

    In eval mode BN is an affine map per channel, so conv followed by BN is one
    conv with rescaled weights and a bias: the same function, one kernel fewer
    per layer and no BN in the backward pass.  Works on torchvision's
    BasicConv2d (``.conv`` then ``.bn``), which is every conv in GoogLeNet.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(conv, bn)
            module.bn = nn.Identity()
    return model.requires_grad_(False)


def prepare_for_dreaming(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device``, fold BatchNorm, store weights channels-last, freeze them.

    channels_last lets oneDNN (CPU) and cuDNN (GPU) pick their fastest
    convolution kernels: on the 2-core CPU of our CI machines it cut the
    classic 1024x768 dream loop from about 13 s to 9 s (benchmarks/README.md).
    """
    model = fold_batchnorm(model.to(device).eval())
    # Only the image's gradient is wanted: autograd then tracks no weights at all.
    return model.to(memory_format=torch.channels_last).requires_grad_(False)


def choose_precision(name: str, device: torch.device) -> str:
    """``auto``: bf16 on CUDA and on CPUs with AMX, fp32 elsewhere.

    bf16 was shown on a real-weights network (EfficientNet-Lite0, two photos) to
    give the same look and an objective gain within 3 % of fp32 (see
    benchmarks/README.md).  On a CPU it pays only where the matrix units do bf16
    in hardware (Intel AMX): on our CI machines' AVX512-BF16 without AMX it was
    40 % slower than fp32.  GPUs without bf16 get fp16, which passed the same check.
    """
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and _has_amx():
        return "bf16"
    return "fp32"


def _has_amx() -> bool:
    # torch.cpu._is_amx_tile_supported is private (torch >= 2.3); without it, assume no AMX.
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weight metadata (no download)."""
    from torchvision.models import GoogLeNet_Weights

    return list(GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"])


def class_index(name: str) -> int:
    """An ImageNet class by index (``543``) or name (``dumbbell``), with suggestions for typos."""
    classes = imagenet_classes()
    if name.strip().isdigit():
        index = int(name)
        if index < len(classes):
            return index
        raise SettingsError(f"class {index} does not exist; ImageNet classes are 0 to {len(classes) - 1}")
    lowered = [c.lower() for c in classes]
    if name.strip().lower() in lowered:
        return lowered.index(name.strip().lower())
    close = difflib.get_close_matches(name.lower(), lowered, n=3)
    hint = (
        f"did you mean {', '.join(repr(classes[lowered.index(c)]) for c in close)}?"
        if close
        else ("give a class index 0-999 or an ImageNet class name")
    )
    raise SettingsError(f"unknown class {name!r}: {hint}")
