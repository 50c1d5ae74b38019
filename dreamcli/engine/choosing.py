"""The photo's own channels: ``inception_4c[strong:8]`` made into channel numbers before a dream.

neural-dream's ``-channel_mode strong|weak|avg`` picks a layer's channels by
how strongly the photo drives them, so the dream grows what is already there.
Here each channel counts by its mean activation on the photo at the dream's
first octave (the smallest, where the dream starts), in float32 and without
jitter, so the same photo and settings always choose the same channels.  The
choice is written into the layer (``inception_4c[12,40,...]``): the picture's
metadata then re-runs it exactly, with no choosing.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from dreamcli.config import LayerSpec, Settings
from dreamcli.engine.capture import LayerCapture, model_device, smallest_input
from dreamcli.engine.step_policy import measured
from dreamcli.engine.steps import octave_sizes, resize
from dreamcli.errors import SettingsError


def needs_choosing(settings: Settings) -> bool:
    """Whether any layer asks for channels chosen per photo (``[strong:8]``)."""
    return any(spec.pick is not None for spec in settings.layers)


def strengths(model: nn.Module, image: torch.Tensor, settings: Settings) -> dict[str, torch.Tensor]:
    """Each picking layer's mean activation per channel on ``image`` (3, H, W) at the first octave.

    ``settings`` name modules (``Loaded.resolved``).
    """
    names = [spec.name for spec in settings.layers if spec.pick is not None]
    device = model_device(model)
    photo = image.reshape(-1, *image.shape[-3:])[:1].to(device=device, dtype=torch.float32)
    with LayerCapture(model, names) as capture, torch.no_grad():
        min_side = measured(capture, "min_side", lambda: smallest_input(capture, device))
        height, width = photo.shape[-2:]
        sizes = octave_sizes(height, width, settings.octaves, settings.octave_scale, min_side)
        first = sizes[0] if sizes else (height, width)
        outputs = capture(resize(photo, first))
        return {name: _per_channel(act.float()) for name, act in outputs.items()}


def _per_channel(act: torch.Tensor) -> torch.Tensor:
    return act[0] if act.dim() == 2 else act[0].flatten(1).mean(1)


def chosen(mode: str, count: int, means: torch.Tensor, layer: str = "the layer") -> tuple[int, ...]:
    """The ``count`` channels ``mode`` picks from ``means`` (one per channel), in index order."""
    if count > means.numel():
        raise SettingsError(f"{layer} has {means.numel()} channels: [{mode}:{count}] asks for more")
    if mode == "strong":
        key = -means
    elif mode == "weak":
        key = means
    else:  # avg: nearest the layer's mean of channel means
        key = (means - means.mean()).abs()
    order = torch.sort(key.cpu(), stable=True).indices  # ties: the lower index, every time
    return tuple(sorted(int(i) for i in order[:count]))


def choose(
    model: nn.Module, image: torch.Tensor, module_settings: Settings, user_settings: Settings
) -> tuple[Settings, Settings]:
    """Both settings (module names, user names: same layers in the same order) with each
    ``[strong:N]`` replaced by the channels this photo chose."""
    if not needs_choosing(module_settings):
        return module_settings, user_settings
    means = strengths(model, image, module_settings)
    picked: list[LayerSpec | None] = []
    for spec in module_settings.layers:
        if spec.pick is None:
            picked.append(None)
        else:
            channels = chosen(spec.pick[0], spec.pick[1], means[spec.name], f"layer {spec.name!r}")
            picked.append(dataclasses.replace(spec, channels=channels, pick=None))

    def applied(settings: Settings) -> Settings:
        layers = tuple(
            spec if new is None else dataclasses.replace(spec, channels=new.channels, pick=None)
            for spec, new in zip(settings.layers, picked, strict=True)
        )
        return dataclasses.replace(settings, layers=layers)

    return applied(module_settings), applied(user_settings)
