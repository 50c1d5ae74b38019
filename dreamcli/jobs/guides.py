"""What the per-file dreams of ``batch`` add: a guide picture's features, and heat maps.

``--guide`` dreams toward a picture's features (Google's guided objective);
``--heatmap`` writes beside each dream where its first layer fires on the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dreamcli.config import LayerSpec
from dreamcli.engine.capture import LayerCapture, model_device
from dreamcli.engine.objectives import guide_features
from dreamcli.engine.steps import resize


def guide_for(model: nn.Module, guide: torch.Tensor, layers: Sequence[str], max_side: int = 512) -> dict:
    """Guide features of ``guide`` at ``layers``; large guides are shrunk (the notebook used 224 px)."""
    scale = min(1.0, max_side / max(guide.shape[-2:]))
    size = (max(1, round(guide.shape[-2] * scale)), max(1, round(guide.shape[-1] * scale)))
    small = resize(guide[None].to(model_device(model)), size)
    with LayerCapture(model, layers) as capture:
        return guide_features(capture, small)


def activation_map(model: nn.Module, image: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    """Where ``spec``'s layer (or channels) fires on ``image``: (H, W) in [0, 1]."""
    with LayerCapture(model, [spec.name]) as capture, torch.no_grad():
        act = capture(image[None].to(model_device(model)))[spec.name].float()
    if spec.channels is not None:
        act = act[:, list(spec.channels)]
    energy = act.pow(2).sum(1, keepdim=True)
    energy = F.interpolate(energy, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    energy = energy - energy.min()
    return (energy / energy.max().clamp_min(1e-12)).cpu()


# A perceptual dark-to-bright map (anchors sampled from matplotlib's "inferno").
_INFERNO = (
    np.array(
        [
            [0, 0, 4],
            [40, 11, 84],
            [101, 21, 110],
            [159, 42, 99],
            [212, 72, 66],
            [245, 125, 21],
            [250, 193, 39],
            [252, 255, 164],
        ],
        dtype=np.float32,
    )
    / 255.0
)


def heat_overlay(image: torch.Tensor, heat: torch.Tensor, opacity: float = 0.6) -> torch.Tensor:
    """``heat`` coloured and laid over a grey copy of ``image``: (3, H, W)."""
    positions = heat.numpy() * (len(_INFERNO) - 1)
    low = np.floor(positions).astype(int).clip(0, len(_INFERNO) - 2)
    frac = (positions - low)[..., None]
    colour = _INFERNO[low] * (1 - frac) + _INFERNO[low + 1] * frac
    colour = torch.from_numpy(colour).permute(2, 0, 1)
    grey = image.cpu().mean(0, keepdim=True).expand(3, -1, -1)
    return (1 - opacity) * grey + opacity * colour
