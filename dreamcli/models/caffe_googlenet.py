"""The Caffe GoogLeNets of 2015: BVLC (ImageNet) and MIT's Places365 and Places205.  Torch-free.

These are the networks Google's DeepDream notebook and its first followers
used (``bvlc_googlenet``), not torchvision's retrained GoogLeNet: no
BatchNorm, local response normalisation after pool1 and conv2/3x3, Caffe's
ceil-mode pooling, real 5x5 convolutions, BGR 0-255 input less the training
mean.  They load the PyTorch ports users already have (the state-dict keys
are Caffe's layer names with ``/`` written as ``_``; the ports keep the two
auxiliary classifiers but not the main one, so class dreams use
``loss2/classifier``, the head after inception_4d).  Layer names are Caffe's
blob names: ``inception_4c/5x5_reduce`` is the output of that layer's ReLU,
as in Caffe, where ReLUs work in place.
"""

from __future__ import annotations

from dreamcli.layers import LayerTable
from dreamcli.models.base import Network, Weights

# Each inception module: (input, 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj) channels,
# from bvlc_googlenet's deploy.prototxt (Szegedy et al. 2014, Table 1).
INCEPTIONS = {
    "inception_3a": (192, 64, 96, 128, 16, 32, 32),
    "inception_3b": (256, 128, 128, 192, 32, 96, 64),
    "inception_4a": (480, 192, 96, 208, 16, 48, 64),
    "inception_4b": (512, 160, 112, 224, 24, 64, 64),
    "inception_4c": (512, 128, 128, 256, 24, 64, 64),
    "inception_4d": (512, 112, 144, 288, 32, 64, 64),
    "inception_4e": (528, 256, 160, 320, 32, 128, 128),
    "inception_5a": (832, 256, 160, 320, 32, 128, 128),
    "inception_5b": (832, 384, 192, 384, 48, 128, 128),
}
# Max pools between the inception stages: after 3b and after 4e.
POOL_AFTER = {"inception_3b": "pool3/3x3_s2", "inception_4e": "pool4/3x3_s2"}
# The auxiliary classifiers and the module each one reads.
AUX = {"loss1": "inception_4a", "loss2": "inception_4d"}
BRANCHES = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")


def module_name(blob: str) -> str:
    """A Caffe blob name -> the module whose output it is.

    Convolutions are followed by an in-place ReLU in Caffe, so their blobs are
    post-ReLU: ``inception_4c/5x5_reduce`` -> the module ``inception_4c_relu_5x5_reduce``.
    """
    head, _, tail = blob.partition("/")
    if head.startswith("inception") and tail in BRANCHES:
        return f"{head}_relu_{tail}"
    if (head, tail) in (("conv1", "7x7_s2"), ("conv2", "3x3_reduce"), ("conv2", "3x3")):
        return f"{head}_relu_{tail.removesuffix('_s2')}"
    if head in AUX and tail in ("conv", "fc"):
        return f"{head}_relu_{tail}"
    if head in AUX and tail == "classifier":
        return f"{head}_classifier_1"
    return blob.replace("/", "_")


def width(block: str) -> int:
    """The output channels of an inception module: its four branches, concatenated."""
    _, b1, _, b2, _, b3, b4 = INCEPTIONS[block]
    return b1 + b2 + b3 + b4


def _blobs(classes: int) -> list[tuple[str, int]]:
    """Every blob a user can name, in forward order, with its channels."""
    blobs = [
        ("conv1/7x7_s2", 64),
        ("pool1/3x3_s2", 64),
        ("pool1/norm1", 64),
        ("conv2/3x3_reduce", 64),
        ("conv2/3x3", 192),
        ("conv2/norm2", 192),
        ("pool2/3x3_s2", 192),
    ]
    for block, (given, b1, b2r, b2, b3r, b3, b4) in INCEPTIONS.items():
        counts = (b1, b2r, b2, b3r, b3, b4)
        blobs += [(f"{block}/{branch}", count) for branch, count in zip(BRANCHES, counts, strict=True)]
        blobs += [(f"{block}/pool", given), (f"{block}/output", width(block))]
        if block in POOL_AFTER:
            blobs.append((POOL_AFTER[block], width(block)))
    blobs.append(("pool5/7x7_s1", 1024))
    for head, source in AUX.items():
        blobs += [(f"{head}/ave_pool", width(source)), (f"{head}/conv", 128), (f"{head}/fc", 1024)]
        blobs.append((f"{head}/classifier", classes))
    return blobs


def table(classes: int) -> LayerTable:
    blobs = _blobs(classes)
    aliases = {blob: module_name(blob) for blob, _ in blobs}
    aliases.update({block: module_name(f"{block}/output") for block in INCEPTIONS})
    channels = {module_name(blob): count for blob, count in blobs}
    modules = ("preprocess", *channels, *_weighted_modules())
    return LayerTable(tuple(dict.fromkeys(modules)), channels, aliases)


def _weighted_modules() -> list[str]:
    """The modules that hold weights (the state-dict keys' prefixes), which are names too."""
    names = ["conv1_7x7_s2", "conv2_3x3_reduce", "conv2_3x3"]
    for block in INCEPTIONS:
        names += [f"{block}_{branch}" for branch in BRANCHES]
    for head in AUX:
        names += [f"{head}_conv", f"{head}_fc_1", f"{head}_classifier_1"]
    return names


def _entry(name: str, title: str, description: str, classes: int, labels: str, url: str, mean) -> Network:
    return Network(
        name=name,
        title=title,
        description=description,
        input=f"BGR 0-255 less the mean (B {mean[0]}, G {mean[1]}, R {mean[2]})",
        table=table(classes),
        default_layer="inception_4c/output",
        min_input=MIN_INPUT,
        weights=Weights(url, "(the PyTorch port)"),
        builder=f"dreamcli.models.caffe_googlenet_net:{name}",
        logits="loss2/classifier",
        classes=labels,
        class_count=classes,
    )


# The smallest square input the whole network takes (a test measures it on the real module).
MIN_INPUT = 47

# Caffe's training means, BGR (bvlc_googlenet: the ILSVRC mean of Caffe's reference
# models; Places: the means MIT published with each model).
BVLC_MEAN = (103.939, 116.779, 123.68)
PLACES365_MEAN = (104.051, 112.514, 116.676)
PLACES205_MEAN = (105.417, 113.753, 116.047)

BVLC_GOOGLENET = _entry(
    "bvlc_googlenet",
    "BVLC GoogLeNet",
    "the original Caffe GoogLeNet of Google's 2015 DeepDream notebook, ImageNet",
    1000,
    "imagenet",
    "https://github.com/ProGamerGov/pytorch-old-caffemodels/raw/master/bvlc_googlenet.pth",
    BVLC_MEAN,
)
PLACES365 = _entry(
    "googlenet_places365",
    "GoogLeNet-Places365",
    "the Caffe GoogLeNet trained on MIT Places365: buildings and landscapes",
    365,
    "places365",
    "https://github.com/ProGamerGov/pytorch-places/raw/master/googlenet_places365.pth",
    PLACES365_MEAN,
)
PLACES205 = _entry(
    "googlenet_places205",
    "GoogLeNet-Places205",
    "the Caffe GoogLeNet trained on MIT Places205 (the 2015 DeepDream 'places' look)",
    205,
    "places205",
    "https://github.com/ProGamerGov/pytorch-places/raw/master/googlenet_places205.pth",
    PLACES205_MEAN,
)
