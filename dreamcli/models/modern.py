"""``torchvision:NAME`` and ``timm:NAME``: any classifier of those libraries, as a network entry.

The entry is made on first use of its name (``models.get``), which imports
torch and the library: its layer table, default layer and logits are read off
the module tree with a meta-device pass (``modern_net.describe``), its weights
are the library's own (torchvision's default weights through torch.hub's
download and cache, as torchvision itself fetches them; timm's through timm's
hub cache), or ``--weights FILE``.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

from dreamcli.errors import SettingsError, brief
from dreamcli.layers import LayerTable
from dreamcli.models.base import Network, Weights, imported

SOURCES = ("torchvision", "timm")


@dataclass(frozen=True)
class LibraryNetwork(Network):
    """A network that torchvision or timm defines, named ``source:arch``."""

    source: str = "torchvision"
    arch: str = ""

    def build(self, state_dict: dict | None = None, *, seed: int = 0, source: str = "the weights"):
        return imported("dreamcli.models.modern_net:build")(
            self.source, self.arch, state_dict, seed=seed, src=source
        )

    def pretrained(self) -> dict | None:
        """timm's weights through timm; None: download ``weights.url`` into torch.hub's cache."""
        if self.source == "timm":
            return imported("dreamcli.models.modern_net:pretrained")(self.source, self.arch)
        return None


def known(source: str) -> list[str]:
    """The classifiers ``source`` (torchvision or timm) defines; imports the library."""
    if source == "timm":
        try:
            import timm
        except ImportError:
            raise SettingsError(
                "timm:NAME needs timm: pip install 'dreamcli[timm]' (or pip install timm)"
            ) from None
        return timm.list_models()
    import torchvision.models as tv

    return tv.list_models(module=tv)  # the ImageNet classifiers


def _weights(source: str, arch: str) -> Weights:
    if source == "timm":
        return Weights(f"hf-hub:timm/{arch}", "timm pretrained")
    import torchvision.models as tv

    default = tv.get_model_weights(arch).DEFAULT
    return Weights(default.url, str(default).rsplit(".", 1)[-1])


@functools.cache
def named(name: str) -> LibraryNetwork:
    """The entry for ``torchvision:NAME`` or ``timm:NAME``, or an error with the closest names."""
    source, _, arch = name.partition(":")
    if source not in SOURCES:
        raise SettingsError(f"unknown model {brief(name)}: library models are torchvision:NAME or timm:NAME")
    classifiers = known(source)
    if arch not in classifiers:
        close = difflib.get_close_matches(arch, classifiers, n=3)
        hint = (
            f"did you mean {', '.join(f'{source}:{c}' for c in close)}?"
            if close
            else "see the library's list"
        )
        raise SettingsError(f"unknown model {brief(name)}: {source} has no classifier {brief(arch)}; {hint}")
    table, default, logits, count = imported("dreamcli.models.modern_net:describe")(source, arch)
    assert isinstance(table, LayerTable)
    return LibraryNetwork(
        name=name,
        title=f"{source} {arch}",  # "the torchvision resnet18 weights", not "the torchvision's ..."
        description=f"{source}'s {arch}, ImageNet",
        input="RGB normalised with ImageNet's mean and standard deviation",
        table=table,
        default_layer=default,
        min_input=32,
        weights=_weights(source, arch),
        builder="dreamcli.models.modern_net:build",
        logits=logits,
        classes="imagenet" if count == 1000 else None,
        class_count=count,
        source=source,
        arch=arch,
    )
