"""The model interface: what the engine and the CLI need to know about a network.

A network is an entry (``Network``), not a fork of the engine: its layer table,
what it takes as input, its default layer and smallest input, its class names,
where its weights come from, and the function that builds it.  The entry is
torch-free; ``build`` (and the layer table of networks that only torchvision
describes) import their modules when first used.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from dreamcli.config import LayerSpec, Settings
from dreamcli.errors import SettingsError, brief
from dreamcli.layers import LayerTable


def imported(path: str) -> Any:
    """``"package.module:name"`` -> that object, imported now."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Weights:
    """A downloadable state dict; a hash prefix in the file name (``-1378be20``) is checked."""

    url: str
    label: str  # how the metadata names these weights, e.g. IMAGENET1K_V1

    @property
    def file(self) -> str:
        return PurePosixPath(urlparse(self.url).path).name


@dataclass(frozen=True)
class Network:
    """One network dreamcli can dream with.

    ``builder`` names a function ``build(state_dict, *, seed, source) -> nn.Module``
    whose module takes RGB in [0, 1] (its preprocessing is its first module);
    with ``state_dict=None`` it is built with random weights from ``seed``
    (what the tests use).  ``table`` is the layer table, or names a function
    that makes it (for networks only torchvision describes).  ``classes`` names
    a label list in ``dreamcli/data/classes`` (``imagenet``) for the logits of
    module ``logits``; ``class_count`` is their number.
    """

    name: str  # how the user names it: --model, the preset key model
    title: str  # as messages say it, e.g. GoogLeNet
    description: str
    input: str  # what the weights expect, done by the module's preprocessing
    table: LayerTable | str
    default_layer: str
    min_input: int  # the smallest square side the whole network takes, in pixels
    weights: Weights
    builder: str
    logits: str | None = None
    classes: str | None = None
    class_count: int = 0

    @functools.cached_property
    def layers(self) -> LayerTable:
        return self.table if isinstance(self.table, LayerTable) else imported(self.table)()

    def settings(self, base: Settings | None = None) -> Settings:
        """``base`` (default: every default) for this network: its name, and its default layer
        where ``base`` names none.  The one place the default layer is decided."""
        base = base or Settings()
        layers = base.layers or (LayerSpec.parse(self.default_layer),)
        return dataclasses.replace(base, model=self.name, layers=layers)

    def build(self, state_dict: dict | None = None, *, seed: int = 0, source: str = "the weights"):
        return imported(self.builder)(state_dict, seed=seed, source=source)

    def class_names(self) -> list[str] | None:
        """The class names in logit order, or None where dreamcli ships none."""
        if self.classes is None:
            return None
        text = (resources.files("dreamcli.data") / "classes" / f"{self.classes}.txt").read_text("utf-8")
        return text.splitlines()

    def class_index(self, name: str) -> int:
        """A class by index (``543``) or name (``dumbbell``, ``amusement park``), with suggestions."""
        if self.logits is None:
            raise SettingsError(f"{self.name} has no classifier to dream toward; pick a layer instead")
        count, names = self.class_count, self.class_names()
        if name.strip().isdecimal():
            index = int(name)
            if index < count:
                return index
            raise SettingsError(f"class {index} does not exist; {self.name}'s classes are 0 to {count - 1}")
        if names is None:
            raise SettingsError(
                f"dreamcli has no class names for {self.name}; give a class index 0-{count - 1}"
            )

        def folded(text: str) -> str:
            return text.strip().lower().replace("_", " ")

        if name.strip() in names:  # exact first: "cardigan" the sweater, not "Cardigan" the corgi
            return names.index(name.strip())
        lowered = [folded(c) for c in names]
        if folded(name) in lowered:
            return lowered.index(folded(name))
        close = difflib.get_close_matches(folded(name), lowered, n=3)
        hint = (
            f"did you mean {', '.join(repr(names[lowered.index(c)]) for c in close)}?"
            if close
            else f"give a class index 0-{count - 1} or one of {self.name}'s class names"
        )
        raise SettingsError(f"unknown class {brief(name)}: {hint}")


@dataclass(frozen=True)
class Loaded:
    """A network built with its weights and prepared for dreaming on a device."""

    network: Network
    module: Any  # torch.nn.Module
    weights: str  # the weights' label, or the local file's name
    left_out: Any = None  # weights.LeftOut: a weights file's tensors that did not fit (a fine-tuned head)

    @property
    def label(self) -> str:
        """How the pictures' metadata names the model."""
        return f"{self.network.name} {self.weights}"

    def resolve(self, name: str) -> str:
        """The module a layer name means; refused where the weights left out what it needs."""
        module = self.network.layers.resolve(name)
        if self.left_out is not None:
            self.left_out.check(module, name)
        return module

    def resolved(self, settings: Settings) -> Settings:
        """``settings`` with each layer named as the module the engine captures (no layers: the
        network's default layer)."""
        if not settings.layers:
            settings = dataclasses.replace(settings, layers=self.network.settings().layers)
        return settings.resolved(self.resolve)
