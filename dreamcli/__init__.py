"""dreamcli: DeepDream from the command line, on GoogLeNet, fast on a GPU and usable on a CPU.

The Python facade, loaded on first use so that ``import dreamcli`` (and so the
``dream`` command's ``--help``) does not import torch::

    from dreamcli import dream, load_model, read_image, write_image, Settings

    net = load_model("googlenet")
    write_image("out.png", dream(net, read_image("photo.jpg"), settings=Settings(seed=1)))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_FACADE = {
    "dream": "dreamcli.api",
    "load_model": "dreamcli.api",
    "Settings": "dreamcli.config",
    "LayerSpec": "dreamcli.config",
    "RunOptions": "dreamcli.run_options",
    "read_image": "dreamcli.io.images",
    "write_image": "dreamcli.io.images",
    "read_metadata": "dreamcli.io.metadata",
}
__all__ = ["__version__", *_FACADE]


def __getattr__(name: str) -> Any:
    if name in _FACADE:
        return getattr(importlib.import_module(_FACADE[name]), name)
    raise AttributeError(f"module 'dreamcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
