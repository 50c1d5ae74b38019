"""The networks dreamcli can dream with, by name.  Torch-free: loading is in ``loading.py``.

A new network is an entry here: a ``Network`` with its layer table and a builder.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from dreamcli.errors import SettingsError, brief
from dreamcli.models.base import Loaded, Network, Weights
from dreamcli.models.caffe_googlenet import BVLC_GOOGLENET, PLACES205, PLACES365
from dreamcli.models.googlenet import GOOGLENET
from dreamcli.models.inception5h import INCEPTION5H
from dreamcli.models.zoo import INCEPTION_V3, RESNET50, VGG16, VGG19

NETWORKS: dict[str, Network] = {
    network.name: network
    for network in (
        GOOGLENET,
        BVLC_GOOGLENET,
        PLACES365,
        PLACES205,
        INCEPTION5H,
        INCEPTION_V3,
        VGG16,
        VGG19,
        RESNET50,
    )
}
DEFAULT = GOOGLENET.name

__all__ = ["DEFAULT", "NETWORKS", "Loaded", "Network", "Weights", "cache_folder", "get"]


def get(name: str = DEFAULT) -> Network:
    """The network called ``name``, or an error with the closest names.

    ``torchvision:NAME`` and ``timm:NAME`` name any classifier of those libraries (``models.modern``).
    """
    if name in NETWORKS:
        return NETWORKS[name]
    if ":" in name:
        from dreamcli.models.modern import named

        return named(name)
    close = difflib.get_close_matches(name, NETWORKS, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"the models are {', '.join(NETWORKS)}"
    raise SettingsError(
        f"unknown model {brief(name)}: {hint} (dream list models lists them; "
        "torchvision:NAME and timm:NAME name those libraries' classifiers)"
    )


def cache_folder() -> Path:
    """Where downloads are kept: ``torch.hub.get_dir()/checkpoints``, worked out without torch.

    torch.hub's rule: ``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``, else
    ``~/.cache/torch/hub`` (a test compares it with torch.hub's own answer).
    """
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"
