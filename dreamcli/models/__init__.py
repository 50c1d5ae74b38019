"""The networks dreamcli can dream with, by name.  Torch-free: loading is in ``loading.py``."""

from __future__ import annotations

import difflib

from dreamcli.errors import SettingsError
from dreamcli.models.base import Loaded, Network, Weights
from dreamcli.models.googlenet import GOOGLENET

NETWORKS: dict[str, Network] = {network.name: network for network in (GOOGLENET,)}
DEFAULT = GOOGLENET.name

__all__ = ["DEFAULT", "NETWORKS", "Loaded", "Network", "Weights", "get"]


def get(name: str = DEFAULT) -> Network:
    """The network called ``name``, or an error with the closest names."""
    if name in NETWORKS:
        return NETWORKS[name]
    close = difflib.get_close_matches(name, NETWORKS, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"the models are {', '.join(NETWORKS)}"
    raise SettingsError(f"unknown model {name!r}: {hint}")
