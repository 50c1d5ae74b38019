"""A unit's pictures, made together: its feature picture, its diverse pictures and its negative.

Image ``i`` of a batch raises one unit's channel (signed mean, as ``dream features``), or
lowers it (the negative picture); the diverse pictures of a unit also push apart at the
layer: each loses ``weight`` x (the unit's activation) x its mean cosine with the unit's
other diverse pictures, between flattened Gram matrices of the layer (the diversity term
of Olah et al., "Feature Visualization", Distill 2017).  Scaling by the unit's own
activation (held fixed within a step) makes one weight fit every layer and network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dreamcli.config import Settings
from dreamcli.engine.featurevis import STEPS_PER_ITERATION, feature_pictures
from dreamcli.engine.objectives import Objective
from dreamcli.events import Report, ignore
from dreamcli.jobs.spatial import estimating
from dreamcli.jobs.unit_options import UnitsOptions


@dataclass(frozen=True)
class Slot:
    """What picture ``i`` of a batch is: ``kind`` feature, negative or diverse, of ``channel``."""

    channel: int
    kind: str
    index: int = 0  # 1-based among a unit's diverse pictures


def plan(channels: Sequence[int], diverse: int) -> list[Slot]:
    slots = [Slot(c, "feature") for c in channels] + [Slot(c, "negative") for c in channels]
    return slots + [Slot(c, "diverse", j + 1) for c in channels for j in range(diverse)]


def gram_cosines(act: torch.Tensor) -> torch.Tensor:
    """(n, C, h, w) -> (n, n): cosine between the pictures' flattened Gram matrices at the layer."""
    flat = act.float().flatten(2)
    gram = (flat @ flat.transpose(1, 2)).flatten(1) / flat.shape[2]
    gram = F.normalize(gram, dim=1)
    return gram @ gram.t()


class UnitGoal(Objective):
    """The objective of a batch laid out by ``plan`` (several views of it repeat the layout)."""

    def __init__(self, layer: str, slots: Sequence[Slot], weight: float):
        self.layer, self.slots, self.weight = layer, list(slots), float(weight)
        self.layers = (layer,)
        self.transform = None
        self.sign = torch.tensor([-1.0 if s.kind == "negative" else 1.0 for s in slots])
        self.groups: dict[int, list[int]] = {}
        for i, slot in enumerate(slots):
            if slot.kind == "diverse":
                self.groups.setdefault(slot.channel, []).append(i)

    def __call__(self, outputs, sizes=None):
        act = outputs[self.layer]
        n = len(self.slots)
        index = torch.tensor([s.channel for s in self.slots], device=act.device).repeat(act.shape[0] // n)
        rows = torch.arange(act.shape[0], device=act.device)
        means = act[rows, index].float().flatten(1).mean(1)
        values = means * self.sign.to(act.device).repeat(act.shape[0] // n)
        if self.weight == 0 or not self.groups:
            return values
        penalty = torch.zeros_like(values)
        for view in range(act.shape[0] // n):
            for members in self.groups.values():
                at = [view * n + i for i in members]
                cos = gram_cosines(act[at])
                others = (cos.sum(1) - cos.diagonal()) / (len(at) - 1)
                scale = means[at].detach().abs().mean().clamp_min(1e-6)
                penalty[at] = self.weight * scale * others
        return values - penalty


@dataclass(frozen=True)
class Made:
    """The pictures of a batch (N, 3, S, S) in [0, 1] and, per picture, the channel's mean and
    max at the layer when the picture is shown as it is; per unit the mean Gram cosine between
    its diverse pictures."""

    images: torch.Tensor
    mean: list[float]
    peak: list[float]
    similarity: dict[int, float]


def make_unit_pictures(
    module,
    layer: str,
    channels: Sequence[int],
    options: UnitsOptions,
    *,
    report: Report = ignore,
    estimate: tuple[int, int] | None = None,
) -> Made:
    """The pictures of ``channels`` (``layer`` is the module's name); with ``estimate``
    (batches left, units left) the time they will take is said after a few steps."""
    slots = plan(channels, options.diverse)
    iterations = max(1, -(-options.steps // STEPS_PER_ITERATION))
    settings = Settings(octaves=1, iterations=iterations, seed=options.seed)
    goal = UnitGoal(layer, slots, options.diversity)
    steps = iterations * STEPS_PER_ITERATION
    listen = (
        estimating(
            report,
            steps * estimate[0],
            lambda minutes: (
                f"{estimate[1]} units to picture at {options.size} px, {steps} steps: about "
                f"{minutes:.0f} min here ({minutes / max(1, estimate[1]) * 60:.0f} s a unit); "
                "a rerun keeps the units already made"
            ),
        )
        if estimate is not None
        else ignore
    )

    size = (options.size, options.size)
    made = feature_pictures(
        module, size, settings=settings, goal=goal, batch=len(slots), param=options.param, report=listen
    )
    images = made.images.detach()
    from dreamcli.engine.capture import LayerCapture

    with LayerCapture(module, [layer]) as capture, torch.no_grad():
        act = capture(images)[layer].float()
    index = torch.tensor([s.channel for s in slots])
    picked = act[torch.arange(len(slots)), index.to(act.device)].flatten(1)
    similarity = {}
    for channel, members in goal.groups.items():
        cos = gram_cosines(act[members])
        similarity[channel] = float((cos.sum() - cos.diagonal().sum()) / (len(members) * (len(members) - 1)))
    return Made(images.cpu(), picked.mean(1).tolist(), picked.max(1).values.tolist(), similarity)
