"""Networks that torchvision defines: Inception v3, VGG16, VGG19, ResNet50.  Torch-free entries.

Their layers are torchvision's module names (``Mixed_6b``, ``features.22``,
``layer3``); the table is read off the network itself the first time it is
needed, which imports torch and torchvision (the default GoogLeNet needs
neither for that).  Weights are torchvision's own downloads.
"""

from __future__ import annotations

from dreamcli.models.base import Network, Weights

IMAGENET_NORMALISED = "RGB normalised with ImageNet's mean and standard deviation"


def _entry(name: str, title: str, description: str, default: str, url: str, logits: str, **kwargs) -> Network:
    return Network(
        name=name,
        title=title,
        description=description,
        input=kwargs.pop("input", IMAGENET_NORMALISED),
        table=f"dreamcli.models.zoo_net:{name}_table",
        default_layer=default,
        min_input=kwargs.pop("min_input", 32),
        weights=Weights(url, "IMAGENET1K_V1"),
        builder=f"dreamcli.models.zoo_net:{name}",
        logits=logits,
        classes="imagenet",
        class_count=1000,
    )


INCEPTION_V3 = _entry(
    "inception_v3",
    "Inception v3",
    "torchvision's Inception v3, ImageNet: finer, busier patterns than v1",
    "Mixed_5d",
    "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    "fc",
    input="RGB scaled to [-1, 1]",
    min_input=75,
)
VGG16 = _entry(
    "vgg16",
    "VGG16",
    "torchvision's VGG16, ImageNet: dense, painterly textures",
    "features.22",
    "https://download.pytorch.org/models/vgg16-397923af.pth",
    "classifier.6",
)
VGG19 = _entry(
    "vgg19",
    "VGG19",
    "torchvision's VGG19, ImageNet: like VGG16, one layer deeper per stage",
    "features.26",
    "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "classifier.6",
)
RESNET50 = _entry(
    "resnet50",
    "ResNet50",
    "torchvision's ResNet50, ImageNet: blocky, high-contrast shapes",
    "layer3",
    "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "fc",
    min_input=1,  # padding all the way and a global average: any size passes
)
