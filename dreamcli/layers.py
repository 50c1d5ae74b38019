"""GoogLeNet's layer names, torchvision's and Caffe's, without importing torch.

Google's 2015 notebook dreamed on the Caffe ``bvlc_googlenet`` model, so users
know names like ``inception_4c/3x3_reduce``; torchvision calls the same module
``inception4c.branch2.0``.  Both work everywhere a layer is named.  Kept apart
from ``model.py`` so that validating a preset does not load torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from dreamcli.errors import SettingsError

# torchvision's GoogLeNet runs its children in this order in ``forward`` (the
# auxiliary classifiers only run in training mode, and we never train).
TRUNK = (
    "conv1",
    "maxpool1",
    "conv2",
    "conv3",
    "maxpool2",
    "inception3a",
    "inception3b",
    "maxpool3",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
    "maxpool4",
    "inception5a",
    "inception5b",
)
INCEPTIONS = [name for name in TRUNK if name.startswith("inception")]

# Caffe bvlc_googlenet blob names -> torchvision module names.  Caffe applies
# ReLU in place, so its blobs are post-ReLU, as are torchvision's BasicConv2d
# outputs.  (torchvision's "5x5" branch really uses a 3x3 kernel, a known
# quirk of its port; the name still points at the matching branch.)
_BRANCHES = {
    "1x1": "branch1",
    "3x3_reduce": "branch2.0",
    "3x3": "branch2.1",
    "5x5_reduce": "branch3.0",
    "5x5": "branch3.1",
    "pool": "branch4.0",
    "pool_proj": "branch4.1",
}


def _caffe_names() -> dict[str, str]:
    names = {
        "conv1/7x7_s2": "conv1",
        "pool1/3x3_s2": "maxpool1",
        "conv2/3x3_reduce": "conv2",
        "conv2/3x3": "conv3",
        "pool2/3x3_s2": "maxpool2",
        "pool3/3x3_s2": "maxpool3",
        "pool4/3x3_s2": "maxpool4",
        "pool5/7x7_s1": "avgpool",
        "loss3/classifier": "fc",
    }
    for module in INCEPTIONS:
        caffe = "inception_" + module.removeprefix("inception")
        names[caffe] = module
        names[caffe + "/output"] = module
        for branch, child in _BRANCHES.items():
            names[f"{caffe}/{branch}"] = f"{module}.{child}"
    return names


CAFFE_NAMES = _caffe_names()


def _module_names() -> list[str]:
    """Every module name of ``dreamcli.model.googlenet_trunk()``, in forward order.

    Written out so that names can be checked without building the network; a
    test compares this list with the real ``named_modules()``.
    """

    def conv(name: str) -> list[str]:  # torchvision's BasicConv2d: conv + bn (+ ReLU in forward)
        return [name, f"{name}.conv", f"{name}.bn"]

    names = ["preprocess"]
    for module in TRUNK:
        if module.startswith("conv"):
            names += conv(module)
        elif module.startswith("maxpool"):
            names.append(module)
        else:
            names += [module, *conv(f"{module}.branch1")]
            names += [f"{module}.branch2", *conv(f"{module}.branch2.0"), *conv(f"{module}.branch2.1")]
            names += [f"{module}.branch3", *conv(f"{module}.branch3.0"), *conv(f"{module}.branch3.1")]
            names += [f"{module}.branch4", f"{module}.branch4.0", *conv(f"{module}.branch4.1")]
    return [*names, *CLASSIFIER]


# After the trunk: global pooling and the 1000 ImageNet logits, for dreaming toward a class.
CLASSIFIER = ("avgpool", "flatten", "fc")
MODULE_NAMES = _module_names()


def resolve_googlenet(name: str) -> str:
    """A Caffe or torchvision GoogLeNet layer name -> the module name in our trunk."""
    return resolve_layer(name, MODULE_NAMES, CAFFE_NAMES)


def resolve_layer(name: str, module_names: Iterable[str], aliases: dict[str, str] | None = None) -> str:
    """Map a user's layer name to a module name of the model, or raise with suggestions.

    ``aliases`` maps extra names (Caffe's) to module names; ``-`` may stand for
    ``/`` as in ``conv2-3x3_reduce``, since ``/`` is awkward in file names.
    """
    module_names = [n for n in module_names if n]
    aliases = aliases or {}
    if name in module_names:
        return name
    for candidate in (name, name.replace("-", "/")):
        if candidate in aliases:
            return aliases[candidate]
    known = sorted(set(aliases) | set(module_names))
    close = difflib.get_close_matches(name.replace("-", "/"), known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "run 'dream --list-layers' to see them all"
    raise SettingsError(f"unknown layer {name!r}: {hint}")
