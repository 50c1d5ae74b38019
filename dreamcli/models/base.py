"""The model interface: what the engine and the CLI need to know about a network.

A network is an entry (``Network``), not a fork of the engine: its layer table,
what it takes as input, its default layer, its class names, where its weights
come from, and the function that builds it.  The entry itself is torch-free;
``build`` and the class names import their modules only when called.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from dreamcli.config import Settings
from dreamcli.errors import SettingsError
from dreamcli.layers import LayerTable


def _imported(path: str) -> Any:
    """``"package.module:name"`` -> that object, imported now."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Weights:
    """A downloadable state dict; the file name carries the hash prefix torch.hub checks."""

    url: str
    label: str  # how the metadata names these weights, e.g. IMAGENET1K_V1

    @property
    def file(self) -> str:
        return PurePosixPath(urlparse(self.url).path).name


@dataclass(frozen=True)
class Network:
    """One network dreamcli can dream with.

    ``builder`` names a function ``build(state_dict, *, seed, source) -> nn.Module``
    whose module takes RGB in [0, 1] (its preprocessing is its first module) and
    returns as many layers as the table lists; with ``state_dict=None`` it is
    built with random weights from ``seed`` (what the tests use).  ``classes``
    names a function returning the class names, in logit order.
    """

    name: str  # how the user names it (models.get)
    title: str  # as messages say it, e.g. GoogLeNet
    description: str
    input: str  # what the weights expect, done by the module's preprocessing
    layers: LayerTable
    default_layer: str
    weights: Weights
    builder: str
    classes: str | None = None
    logits: str | None = None  # the module whose output is the class logits

    def build(self, state_dict: dict | None = None, *, seed: int = 0, source: str = "the weights"):
        return _imported(self.builder)(state_dict, seed=seed, source=source)

    def class_names(self) -> list[str]:
        if self.classes is None:
            raise SettingsError(f"{self.name} has no classes to dream toward; pick a layer instead")
        return list(_imported(self.classes)())

    def class_index(self, name: str) -> int:
        """A class by index (``543``) or name (``dumbbell``), with suggestions for typos."""
        classes = self.class_names()
        if name.strip().isdigit():
            index = int(name)
            if index < len(classes):
                return index
            raise SettingsError(
                f"class {index} does not exist; {self.name}'s classes are 0 to {len(classes) - 1}"
            )
        lowered = [c.lower() for c in classes]
        if name.strip().lower() in lowered:
            return lowered.index(name.strip().lower())
        close = difflib.get_close_matches(name.lower(), lowered, n=3)
        hint = (
            f"did you mean {', '.join(repr(classes[lowered.index(c)]) for c in close)}?"
            if close
            else f"give a class index 0-{len(classes) - 1} or a class name"
        )
        raise SettingsError(f"unknown class {name!r}: {hint}")


@dataclass(frozen=True)
class Loaded:
    """A network built with its weights and prepared for dreaming on a device."""

    network: Network
    module: Any  # torch.nn.Module
    weights: str  # the weights' label, or the local file's name

    @property
    def label(self) -> str:
        """How the pictures' metadata names the model."""
        return f"{self.network.name} {self.weights}"

    def resolve(self, name: str) -> str:
        return self.network.layers.resolve(name)

    def resolved(self, settings: Settings) -> Settings:
        """``settings`` with each layer named as the module the engine captures."""
        return settings.resolved(self.resolve)
