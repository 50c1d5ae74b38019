"""Inception5h: the TensorFlow GoogLeNet of the 2015 TF DeepDream tutorial.  Torch-free.

``tensorflow_inception_graph.pb`` as the PyTorch port ``inception5h.pth``
users have: the tutorial's layer names (``mixed4d_3x3_bottleneck_pre_relu``,
its favourite), TensorFlow's "SAME" padding, and RGB 0-255 input less 117.
Its 1008 classes ship without names here: a class is dreamed by index.
"""

from __future__ import annotations

from dreamcli.layers import LayerTable
from dreamcli.models.base import Network, Weights

# Each mixed module: (input, 1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce) channels,
# the shapes of the port's tensors (mixed4a's 3x3 has 204 channels and mixed5a's 5x5
# bottleneck 48, not the paper's 208 and 32).
MIXED = {
    "mixed3a": (192, 64, 96, 128, 16, 32, 32),
    "mixed3b": (256, 128, 128, 192, 32, 96, 64),
    "mixed4a": (480, 192, 96, 204, 16, 48, 64),
    "mixed4b": (508, 160, 112, 224, 24, 64, 64),
    "mixed4c": (512, 128, 128, 256, 24, 64, 64),
    "mixed4d": (512, 112, 144, 288, 32, 64, 64),
    "mixed4e": (528, 256, 160, 320, 32, 128, 128),
    "mixed5a": (832, 256, 160, 320, 48, 128, 128),
    "mixed5b": (832, 384, 192, 384, 48, 128, 128),
}
POOL_AFTER = {"mixed3b": "maxpool4", "mixed4e": "maxpool10"}
CONVS = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")
CLASSES = 1008


def _layers() -> list[tuple[str, int, bool]]:
    """(TF name, channels, is a convolution) in forward order."""
    layers = [
        ("conv2d0", 64, True),
        ("maxpool0", 64, False),
        ("localresponsenorm0", 64, False),
        ("conv2d1", 64, True),
        ("conv2d2", 192, True),
        ("localresponsenorm1", 192, False),
        ("maxpool1", 192, False),
    ]
    for block, (given, *counts) in MIXED.items():
        layers += [(f"{block}_{conv}", count, True) for conv, count in zip(CONVS, counts, strict=True)]
        layers += [
            (f"{block}_pool", given, False),
            (block, counts[0] + counts[2] + counts[4] + counts[5], False),
        ]
        if block in POOL_AFTER:
            layers.append((POOL_AFTER[block], layers[-1][1], False))
    return [*layers, ("avgpool0", 1024, False), ("softmax2_pre_activation", CLASSES, False)]


def table() -> LayerTable:
    """Every TF name is a module's; a ``_pre_relu`` name is its convolution (``..._pre_relu_conv``)."""
    channels, aliases, modules = {}, {}, ["preprocess"]
    for name, count, conv in _layers():
        if conv:
            modules += [f"{name}_pre_relu_conv", name]
            aliases[f"{name}_pre_relu"] = f"{name}_pre_relu_conv"
            channels[f"{name}_pre_relu_conv"] = count
        elif name == "softmax2_pre_activation":
            modules.append("softmax2_pre_activation_matmul")
            aliases[name] = "softmax2_pre_activation_matmul"
            name = "softmax2_pre_activation_matmul"
        else:
            modules.append(name)
        channels[name] = count
    return LayerTable(tuple(modules), channels, aliases)


# The smallest square input the whole network takes (a test measures it on the real module).
MIN_INPUT = 1  # SAME padding and a global average: any size passes

INCEPTION5H = Network(
    name="inception5h",
    title="Inception5h",
    description="TensorFlow's GoogLeNet of the 2015 TF DeepDream tutorial (1008 ImageNet classes)",
    input="RGB 0-255 less 117",
    table=table(),
    default_layer="mixed4d_3x3_bottleneck_pre_relu",
    min_input=MIN_INPUT,
    weights=Weights(
        "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth",
        "(the PyTorch port)",
    ),
    builder="dreamcli.models.inception5h_net:build",
    logits="softmax2_pre_activation",
    class_count=CLASSES,
)
