"""torchvision's GoogLeNet (Inception v1): the entry and its layer table, torch-free.

Google's 2015 notebook dreamed on the Caffe ``bvlc_googlenet`` model, so users
know names like ``inception_4c/3x3_reduce``; torchvision calls the same module
``inception4c.branch2.0``.  Both work everywhere a layer is named.  The network
itself is built in ``googlenet_net.py``, without torchvision.
"""

from __future__ import annotations

from dreamcli.layers import LayerTable
from dreamcli.models.base import Network, Weights

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
# After the trunk: global pooling and the 1000 ImageNet logits, for dreaming toward a class.
CLASSIFIER = ("avgpool", "flatten", "fc")

# Each inception module's (input, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj)
# channels, as torchvision's googlenet.py builds them (Szegedy et al. 2014, Table 1).
INCEPTIONS = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}
_STEM = {"conv1": 64, "maxpool1": 64, "conv2": 64, "conv3": 192, "maxpool2": 192}

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


def _module_names() -> list[str]:
    """Every module name of the built network, in forward order (a test checks the real one)."""

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


def _channels() -> dict[str, int]:
    """Output channels of every layer a user picks from, in forward order."""
    counts: dict[str, int] = {}
    previous = 0
    for module in TRUNK:
        if module in _STEM:
            counts[module] = _STEM[module]
        elif module in INCEPTIONS:
            given, b1, b2r, b2, b3r, b3, b4 = INCEPTIONS[module]
            counts[module] = b1 + b2 + b3 + b4
            for child, count in (
                ("branch1", b1),
                ("branch2", b2),
                ("branch2.0", b2r),
                ("branch2.1", b2),
                ("branch3", b3),
                ("branch3.0", b3r),
                ("branch3.1", b3),
                ("branch4", b4),
                ("branch4.0", given),
                ("branch4.1", b4),
            ):
                counts[f"{module}.{child}"] = count
        else:  # a max pool keeps the channels of the module before it
            counts[module] = previous
        previous = counts[module]
    last = counts[TRUNK[-1]]
    return {**counts, "avgpool": last, "flatten": last, "fc": 1000}


# The smallest square input the whole network takes (a test measures it on the real module).
MIN_INPUT = 15

CAFFE_NAMES = _caffe_names()
MODULE_NAMES = _module_names()
# torchvision's branch containers (inception4c.branch2) output what their last module does
# (inception_4c/3x3): taken when named, but listed once, under the Caffe name.
_CONTAINERS = frozenset(f"{module}.branch{n}" for module in INCEPTIONS for n in (2, 3, 4))
LAYERS = LayerTable(tuple(MODULE_NAMES), _channels(), CAFFE_NAMES, unlisted=_CONTAINERS)

GOOGLENET = Network(
    name="googlenet",
    title="GoogLeNet",
    description="torchvision's GoogLeNet (Inception v1), ImageNet; the default",
    input="RGB scaled to [-1, 1]",
    table=LAYERS,
    default_layer="inception_4c",
    min_input=MIN_INPUT,
    weights=Weights(
        "https://download.pytorch.org/models/googlenet-1378be20.pth",  # torchvision's GoogLeNet_Weights
        "IMAGENET1K_V1",
    ),
    builder="dreamcli.models.googlenet_net:build",
    logits="fc",
    classes="imagenet",
    class_count=1000,
)
