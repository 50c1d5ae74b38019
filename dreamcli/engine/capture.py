"""Reading a network's layers: forward hooks that collect outputs and stop early.

The bottom of the engine, with ``steps`` and ``objectives``: it works with any
``nn.Module`` and the names of its modules.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import torch
from torch import nn

from dreamcli.errors import SettingsError
from dreamcli.layers import resolve_layer


class _StopForward(Exception):
    """Raised by a hook once every requested layer has been seen: later layers are waste."""


class LayerCapture:
    """Forward hooks that collect the named modules' outputs, then stop the forward pass.

    Use as a context manager: the hooks are always removed on exit (lucent leaks
    them when an exception passes through).
    """

    def __init__(self, model: nn.Module, names: Sequence[str]):
        modules = dict(model.named_modules())
        for name in names:
            if not name or name not in modules:
                resolve_layer(name, modules)  # raises with suggestions
        self.model = model
        self.names = list(dict.fromkeys(names))
        self._modules = [modules[n] for n in self.names]
        self._handles: list = []
        self._running = False
        self.outputs: dict[str, torch.Tensor] = {}

    def __enter__(self) -> LayerCapture:
        for name, module in zip(self.names, self._modules, strict=True):
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.outputs = {}

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            if not self._running:
                return  # another capture on the same model is running its forward pass
            self.outputs[name] = output
            if len(self.outputs) == len(self.names):
                raise _StopForward

        return hook

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        self.outputs = {}
        self._running = True
        try:
            with contextlib.suppress(_StopForward):
                self.model(image)
        finally:
            self._running = False
        if len(self.outputs) != len(self.names):
            missing = [n for n in self.names if n not in self.outputs]
            raise SettingsError(f"layer {missing[0]!r} is not used by the model's forward pass; pick another")
        return self.outputs


def model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device (shapes only), without copying its weights, and
    without the hooks a live capture put on it."""
    memo: dict[int, object] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        empty = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = (
            nn.Parameter(empty, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else empty
        )
    meta = copy.deepcopy(model, memo)
    for module in meta.modules():
        module._forward_hooks.clear()
    return meta


def smallest_input(capture: LayerCapture, device: torch.device, limit: int = 512) -> int:
    """The smallest square side the model can take up to the requested layers.

    Searched upward from 1 px by doubling, then bisected: every pass is at most twice the answer
    (16 px for GoogLeNet), where bisecting down from ``limit`` began with a 512x512 forward pass
    and its neighbours (~3 s of a first CPU dream, shared; a meta-device copy was no cheaper: its
    first use imports ~900 modules).  Assumes, as any convolutional network gives, that a side
    that works keeps working when larger."""
    low, high = 0, 1  # works(low) is taken as False
    while not _works(capture, device, high):
        if high >= limit:
            raise SettingsError(f"the model cannot take even a {limit}x{limit} image at these layers")
        low, high = high, min(2 * high, limit)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if _works(capture, device, mid) else (mid, high)
    return high


def _works(capture: LayerCapture, device: torch.device, side: int) -> bool:
    try:
        with torch.no_grad():
            capture(torch.zeros(1, 3, side, side, device=device))
        return True
    except RuntimeError:  # "Output size is too small" from pooling or convolution
        return False
