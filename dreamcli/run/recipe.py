"""A request's settings, resolved once: defaults < preset < the values typed.

The CLI (its flags), the page (its fields) and a sheet (each preset of it) make a
``Recipe``; ``resolve`` merges it into the final ``Settings``: the network's
defaults (``Network.settings``), the preset, the typed values, every layer
checked against the network, ``--class`` made a logits layer.  Every error is a
``SettingsError`` whose ``key`` names the setting at fault.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamcli import models
from dreamcli import presets as preset_files
from dreamcli.config import PULL, LayerSpec, Settings, layers_from
from dreamcli.errors import SettingsError


@dataclass(frozen=True)
class Recipe:
    """What was asked for, before any default is applied.

    ``model`` None: the preset's, else the default network.  ``preset``: a name
    (searched in ``folders``, then the built-ins), a YAML path, or a picture
    dreamcli made.  ``values``: settings typed, which win over the preset; a
    None among them is "not typed".  ``layers`` replace the preset's; ``classes``
    dream toward classes of the network, replacing the preset's layers unless
    ``layers`` were given too.  ``mask`` / ``mask_invert`` / ``accentuate`` / ``pull``: the
    photo's flags, over the preset's (a picture made with them re-runs them): ``pull`` alone
    sets the pull of an accentuation the preset asks for; ``accentuate`` without ``pull`` keeps
    the preset's pull, else ``config.PULL``.
    """

    model: str | None = None
    preset: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    layers: Sequence[LayerSpec | str] = ()
    classes: Sequence[str] = ()
    folders: Sequence[tuple[str, Path]] = ()
    mask: str | None = None
    mask_invert: bool = False
    accentuate: bool = False
    pull: float | None = None

    def network(self, preset: preset_files.Preset | None = None) -> models.Network:
        """The network typed, else the preset's, else the default."""
        if self.model:
            try:
                return models.get(self.model)
            except SettingsError as exc:
                raise SettingsError(str(exc), key="model") from None
        named = preset.values.get("model") if preset is not None else None
        return models.get(named or models.DEFAULT)

    def load_preset(self) -> preset_files.Preset | None:
        if self.preset is None:
            return None
        return preset_files.find(self.preset, preset_files.search_path(list(self.folders)))

    def resolve(self) -> Resolved:
        preset = self.load_preset()
        network = self.network(preset)
        base = network.settings(preset.apply() if preset is not None else None)
        layers = layers_from(self.layers) if self.layers else ()
        if preset is not None and "layers" in preset.values and not layers:
            for spec in base.layers:
                _check(network, spec, f"{preset.path}: layers: ", key=None)
        for spec in layers:
            _check(network, spec, "", key="layers")
        values = {name: value for name, value in self.values.items() if value is not None}
        if layers:
            values["layers"] = list(layers)
        settings = Settings.from_mapping({**values, "model": network.name}, base=base)
        if self.classes:
            extra = tuple(class_layer(network, name) for name in self.classes)
            settings = dataclasses.replace(settings, layers=layers + extra)
        return Resolved(network, self._photo(settings), preset, base)

    def _photo(self, settings: Settings) -> Settings:
        """The mask and the accentuation asked for, over the preset's."""
        changes: dict[str, Any] = {}
        if self.mask is not None:
            changes["mask"] = os.path.abspath(self.mask)  # so a re-run from elsewhere reads the same mask
        if self.mask_invert:
            if self.mask is None and settings.mask is None:
                raise SettingsError("inverts a mask: give one with --mask", key="mask_invert")
            changes["mask_invert"] = True
        if self.pull is not None and not self.accentuate and settings.accentuate is None:
            raise SettingsError("is the pull of --accentuate: add --accentuate", key="pull")
        if self.accentuate or self.pull is not None:
            pull = self.pull if self.pull is not None else settings.accentuate
            changes["accentuate"] = pull if pull is not None else PULL
        final = dataclasses.replace(settings, **changes) if changes else settings
        if final.mask_invert and final.mask is None:  # a preset's or a picture's, with no mask to invert
            raise SettingsError(
                "is set by the preset or picture, with no mask to invert: add --mask", key="mask_invert"
            )
        return final


def class_layer(network: models.Network, name: str) -> LayerSpec:
    """``--class NAME``: the network's logits, that class's channel."""
    try:
        return LayerSpec(str(network.logits), channels=(network.class_index(name),))
    except SettingsError as exc:
        raise SettingsError(str(exc), key="classes") from None


def check_layer(network: models.Network, spec: LayerSpec, key: str | None = "layers") -> None:
    """``spec`` against ``network``'s layer table; the error names the model."""
    _check(network, spec, "", key)


def _check(network: models.Network, spec: LayerSpec, prefix: str, key: str | None) -> None:
    try:
        network.layers.check(spec)
    except SettingsError as exc:
        text = str(exc)
        if network.name != models.DEFAULT:
            text = text.replace("'dream list layers'", f"'dream list layers --model {network.name}'")
        raise SettingsError(f"{prefix}{text} (model {network.name})", key=key) from None


@dataclass(frozen=True)
class Resolved:
    """A recipe's network and final settings, the preset they came from, and ``base``: what
    the preset gives before any typed value (the page writes the flags that differ from it)."""

    network: models.Network
    settings: Settings
    preset: preset_files.Preset | None
    base: Settings

    @property
    def preset_name(self) -> str | None:
        return self.preset.name if self.preset else None

    @property
    def reproducible(self) -> bool:
        """Deterministic kernels when a seed was given (``engine.devices.choose_kernels``)."""
        return self.settings.seed is not None
