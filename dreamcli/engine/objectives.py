"""What a dream maximises, and what the network is shown at each step.

* ``Activations``: the notebook's L2 objective, the weighted mean squared
  activation of layers (or channels); a logits layer (2-D output, ``fc``)
  counts linearly, so that dreaming toward a class raises that class's logit.
* ``Guided``: Google's 2015 guide objective (``objective_guide`` in the
  notebook): at each position, follow the guide feature with the largest dot
  product with the current feature.
* ``ChannelPerImage``: one channel per image of a batch, for channel grids.
* ``signed=True`` (feature pictures): a channel counts by its mean activation,
  as in Lucid and the papers, not its square; squaring is DeepDream's "amplify
  whatever is there", and on a layer with no ReLU after it lets the optimiser
  make a channel strongly negative instead.  Whole layers stay squared.
* Objectives add and scale (``a + 0.5 * b``).
* ``transforms.RandomAffine``: small random scale and rotation before the network, which
  keeps dreams started from noise readable (as in lucent's transforms).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from dreamcli.config import LayerSpec
from dreamcli.errors import SettingsError


def _check_channels(act: torch.Tensor, layer: str, channels: Sequence[int]) -> None:
    if max(channels) >= act.shape[1]:
        raise SettingsError(
            f"layer {layer!r} has {act.shape[1]} channels (0-{act.shape[1] - 1}); "
            f"channel {max(channels)} does not exist"
        )


def _selected(act: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    if spec.channels is None:
        return act
    _check_channels(act, spec.name, spec.channels)
    return act[:, list(spec.channels)]


def _guided(act: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Per position, the dot product with the guide feature it matches best: (N, P)."""
    x = act.float().flatten(2)  # (N, C, P)
    with torch.no_grad():
        best = torch.einsum("ncp,cm->npm", x, guide.to(x)).argmax(-1)  # (N, P)
    target = guide.to(x).t()[best].permute(0, 2, 1)  # (N, C, P)
    return (x * target).sum(1)


def objective(
    outputs: dict[str, torch.Tensor],
    layers: Sequence[LayerSpec],
    sizes: dict[str, int] | None = None,
    guide: dict[str, torch.Tensor] | None = None,
    signed: bool = False,
) -> torch.Tensor:
    """Per image: the weighted sum over layers of the mean squared activation.

    The notebook's L2 objective; the mean (not the sum) makes the weights of
    layers with different sizes comparable.  ``sizes`` gives the element count
    to divide by when ``outputs`` come from a tile of a larger image.
    ``signed``: chosen channels count by their mean, not their mean square.
    Returns a tensor of shape (N,).
    """
    total = None
    for spec in layers:
        full = outputs[spec.name]
        if guide is not None and spec.name in guide:
            values = _guided(full, guide[spec.name])  # one value per position
            per_value = full.shape[1]
        else:
            act = _selected(full, spec).float()
            # Logits can be negative: raise them, do not square them.
            linear = act.dim() == 2 or (signed and spec.channels is not None)
            values = (act if linear else act.pow(2)).flatten(1)
            per_value = full.shape[1] // act.shape[1]
        mean = values.mean(1) if sizes is None else values.sum(1) / (sizes[spec.name] // per_value)
        term = spec.weight * mean
        total = term if total is None else total + term
    if total is None:
        raise SettingsError("an objective needs at least one layer")
    return total


class Objective:
    """What a dream raises: one value per image from the captured outputs of ``layers``.

    ``transform`` (e.g. ``transforms.RandomAffine``) changes what the network sees at each
    step.  Objectives combine: ``a + b`` raises both, ``0.5 * a`` weighs one.
    """

    layers: tuple[str, ...] = ()  # the modules it reads (what the capture collects)
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, outputs: dict[str, torch.Tensor], sizes: dict[str, int] | None = None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def graphable(self) -> bool:
        """Whether a step launches only device work of fixed shapes, so it can be a CUDA graph.

        Channel lists and guides index with tensors made on the CPU, and view
        transforms draw CPU random numbers every step: a recording would freeze them.
        """
        return False

    @property
    def key(self) -> tuple:
        """Equal for objectives that compute the same thing: a recorded step is reused by it."""
        return (type(self).__name__, id(self))

    def view(self, image: torch.Tensor) -> torch.Tensor:
        return image if self.transform is None else self.transform(image)

    def with_transform(self, transform: Callable[[torch.Tensor], torch.Tensor] | None) -> Objective:
        changed = copy.copy(self)
        changed.transform = transform
        return changed

    def untransformed(self) -> Objective:
        """The same objective without the view transform (tiles must all see the same geometry)."""
        return self.with_transform(None)

    def __add__(self, other: Objective) -> Objective:
        return Sum([self, other])

    def __radd__(self, other) -> Objective:
        return self if other == 0 else Sum([other, self])  # so that sum([a, b]) works

    def __mul__(self, weight: float) -> Objective:
        return Scaled(self, weight)

    __rmul__ = __mul__


class Activations(Objective):
    """The notebook's objective: the weighted mean squared activation of layers or channels."""

    def __init__(self, specs: Sequence[LayerSpec | str], transform=None, signed: bool = False):
        self.specs = [spec if isinstance(spec, LayerSpec) else LayerSpec.parse(spec) for spec in specs]
        self.layers = tuple(dict.fromkeys(spec.name for spec in self.specs))
        self.transform = transform
        self.signed = signed

    @property
    def graphable(self) -> bool:
        return self.transform is None and all(spec.channels is None for spec in self.specs)

    @property
    def key(self) -> tuple:
        kind = "signed activations" if self.signed else "activations"
        return (kind, *self.specs)  # exact weights: a recording bakes them in

    def __call__(self, outputs, sizes=None):
        return objective(outputs, self.specs, sizes, signed=self.signed)


class Guided(Activations):
    """Google's guided objective at the layers ``features`` has (``guide_features``), plain elsewhere."""

    def __init__(self, specs: Sequence[LayerSpec | str], features: dict[str, torch.Tensor], transform=None):
        super().__init__(specs, transform)
        self.features = features

    @property
    def graphable(self) -> bool:
        return False

    key = Objective.key  # its features are its own

    def __call__(self, outputs, sizes=None):
        return objective(outputs, self.specs, sizes, self.features)


class Sum(Objective):
    """Several objectives raised together; the first view transform among them applies."""

    def __init__(self, parts: Sequence[Objective]):
        self.parts: list[Objective] = [
            p for part in parts for p in (part.parts if isinstance(part, Sum) else [part])
        ]
        self.layers = tuple(dict.fromkeys(name for part in self.parts for name in part.layers))
        self.transform = next((p.transform for p in self.parts if p.transform is not None), None)

    @property
    def graphable(self) -> bool:
        return self.transform is None and all(part.graphable for part in self.parts)

    @property
    def key(self) -> tuple:
        return ("sum", *(part.key for part in self.parts))

    def __call__(self, outputs, sizes=None):
        return sum((part(outputs, sizes) for part in self.parts[1:]), self.parts[0](outputs, sizes))


class Scaled(Objective):
    """An objective times a weight."""

    def __init__(self, part: Objective, weight: float):
        self.part, self.weight = part, float(weight)
        self.layers, self.transform = part.layers, part.transform

    @property
    def graphable(self) -> bool:
        return self.transform is None and self.part.graphable

    @property
    def key(self) -> tuple:
        return ("scaled", self.weight, self.part.key)

    def __call__(self, outputs, sizes=None):
        return self.weight * self.part(outputs, sizes)


class ChannelPerImage(Objective):
    """Image ``i`` of a batch raises channel ``channels[i]`` of ``layer``: a channel grid in one batch.

    Squared by default (DeepDream's channel sheets); ``signed`` raises the mean (feature pictures).
    A batch of ``k * len(channels)`` images (several views of each picture) repeats the channels.
    """

    def __init__(self, layer: str, channels: Sequence[int], transform=None, signed: bool = False):
        self.layer, self.channels = layer, list(channels)
        self.layers = (layer,)
        self.transform = transform
        self.signed = signed

    def __call__(self, outputs, sizes=None):
        act = outputs[self.layer]
        _check_channels(act, self.layer, self.channels)
        index = torch.tensor(self.channels, device=act.device).repeat(act.shape[0] // len(self.channels))
        picked = act[torch.arange(act.shape[0], device=act.device), index].float().reshape(act.shape[0], -1)
        picked = picked if self.signed else picked.pow(2)
        if sizes is None:
            return picked.mean(1)
        return picked.sum(1) / (sizes[self.layer] // act.shape[1])  # a tile: divide by the whole map


def guide_features(capture, guide_image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each captured layer's features of the guide image, as (channels, positions)."""
    with torch.no_grad():
        outputs = capture(guide_image[None] if guide_image.dim() == 3 else guide_image)
    return {name: out[0].float().flatten(1) for name, out in outputs.items() if out.dim() == 4}


class Direction(Objective):
    """Image ``i`` of a batch raises the direction ``vectors[i]`` of ``layer``: an activation atlas's cells.

    At each position the value is ``dot(act, v) * max(cos(act, v), 0.1) ** power``
    with ``v`` the unit direction (Carter et al., "Activation Atlas", Distill
    2019, after Lucid's ``direction_neuron_cossim``): the dot product alone is
    raised most easily by making the activation large along any channel that has
    a share in ``v``; the cosine factor asks for the mix of channels too.  The
    mean over positions is returned, one value per image.  ``vectors`` is
    (C,) or (N, C); a single vector is shared by the whole batch.

    ``pooled``: the value is asked of the mean activation over positions instead, which is
    what a picture standing for one place of a photo is judged by (``dream explain``'s cells).
    """

    def __init__(
        self, layer: str, vectors: torch.Tensor, power: float = 1.0, transform=None, pooled: bool = False
    ):
        vectors = torch.as_tensor(vectors, dtype=torch.float32)
        vectors = vectors[None] if vectors.dim() == 1 else vectors
        if vectors.dim() != 2:
            raise SettingsError(
                f"a direction is a vector of channels; got a tensor of shape {tuple(vectors.shape)}"
            )
        self.layer, self.power, self.pooled = layer, float(power), pooled
        self.vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.layers = (layer,)
        self.transform = transform

    def __call__(self, outputs, sizes=None):
        act = outputs[self.layer].float()
        if act.dim() != 4 or act.shape[1] != self.vectors.shape[1]:
            raise SettingsError(
                f"layer {self.layer!r} gives {tuple(act.shape[1:])} per image; "
                f"the direction has {self.vectors.shape[1]} channels"
            )
        if act.shape[0] % self.vectors.shape[0]:
            raise SettingsError(f"{self.vectors.shape[0]} directions for a batch of {act.shape[0]} images")
        # Several views of each picture (k * N images) repeat the directions.
        v = self.vectors.to(act.device).repeat(act.shape[0] // self.vectors.shape[0], 1)[:, :, None, None]
        if self.pooled:
            act = act.mean((2, 3), keepdim=True)
        dot = (act * v).sum(1)  # (N, H, W)
        cos = dot / act.norm(dim=1).clamp_min(1e-6)
        values = (dot * cos.clamp_min(0.1).pow(self.power)).flatten(1)
        if sizes is None or self.pooled:
            return values.mean(1)
        return values.sum(1) / (sizes[self.layer] // act.shape[1])  # a tile: divide by the whole map


class Matching(Objective):
    """The picture's activations at ``layer`` made like a photo's (``target``, (1, C, H, W) or (1, C)).

    Inversion (Mahendran and Vedaldi 2015; Lucid, Microscope): the cosine between
    the two, over channels and positions, so the picture shows what the layer keeps
    of the photo.  ``caricature``: ``dot / |target| * max(cos, 0.1)``, which keeps
    rising past a match by exaggerating what the photo already drives.  A view of
    another size (random scale, padding) is compared at the target's size.
    """

    def __init__(self, layer: str, target: torch.Tensor, caricature: bool = False, transform=None):
        self.layer, self.caricature = layer, caricature
        self.target = target.detach().float()
        self.layers = (layer,)
        self.transform = transform

    def __call__(self, outputs, sizes=None):
        act = outputs[self.layer].float()
        target = self.target.to(act.device)
        if act.dim() == 4 and act.shape[-2:] != target.shape[-2:]:
            act = F.interpolate(act, size=target.shape[-2:], mode="bilinear", align_corners=False)
        if act.shape[1:] != target.shape[1:]:
            raise SettingsError(
                f"layer {self.layer!r} gives {tuple(act.shape[1:])} per image, "
                f"the photo {tuple(target.shape[1:])}"
            )
        a, t = act.flatten(1), target.flatten(1)
        dot = (a * t).sum(1)
        cos = dot / (a.norm(dim=1) * t.norm(dim=1)).clamp_min(1e-12)
        if not self.caricature:
            return cos
        return dot / t.norm(dim=1).clamp_min(1e-12) * cos.clamp_min(0.1)
