"""torchvision:NAME and timm:NAME: modern networks by name, with random weights (fast, tiny inputs)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from dreamcli import models
from dreamcli.config import Settings
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.featurevis import feature_pictures
from dreamcli.engine.objectives import Activations, ChannelPerImage
from dreamcli.engine.octaves import dream
from dreamcli.errors import SettingsError
from dreamcli.models.prepare import prepare_for_dreaming


@pytest.fixture(scope="module")
def convnext():
    network = models.get("torchvision:convnext_tiny")
    return network, prepare_for_dreaming(network.build(None, seed=0), "cpu")


@pytest.fixture(scope="module")
def vit():
    network = models.get("torchvision:vit_b_16")
    return network, prepare_for_dreaming(network.build(None, seed=0), "cpu")


def test_a_torchvision_classifier_by_name():
    network = models.get("torchvision:convnext_tiny")
    assert network is models.get("torchvision:convnext_tiny")  # made once
    assert network.default_layer == "features.5" and network.logits == "classifier"
    assert network.class_count == 1000 and network.class_index("goldfish") == 1
    assert network.weights.url.startswith("https://download.pytorch.org/models/convnext_tiny")
    # ConvNeXt's permuted (channels-last) block outputs are not offered: their dim 1 is not channels.
    assert "features.1.0.block.0" in network.layers.channels
    assert "features.1.0.block.2" not in network.layers.channels
    assert Settings(model="torchvision:convnext_tiny").model == "torchvision:convnext_tiny"
    with pytest.raises(SettingsError, match="did you mean torchvision:convnext_tiny"):
        models.get("torchvision:convnext_tiyn")
    with pytest.raises(SettingsError, match="torchvision:NAME or timm:NAME"):
        models.get("keras:resnet")


def test_an_offline_library_model_is_named_as_english_says_it(tmp_path, monkeypatch):
    import urllib.error

    from dreamcli.errors import WeightsError
    from dreamcli.models.weights import download

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as caught:
        download(models.get("torchvision:resnet18"), progress=False)
    assert str(caught.value).startswith("could not download the torchvision resnet18 weights")


def test_convnext_dreams_and_makes_channel_pictures(convnext):
    network, module = convnext
    photo = torch.rand(1, 3, 48, 56, generator=torch.Generator().manual_seed(0))
    settings = Settings(model=network.name, layers=["features.3"], octaves=1, iterations=2, seed=0)
    dreamed = dream(module, photo, settings=settings)
    assert dreamed.shape == photo.shape and float((dreamed - photo).abs().mean()) > 0
    goal = ChannelPerImage("features.3", [0, 5], signed=True)
    made = feature_pictures(module, (40, 40), settings=settings, goal=goal, batch=2, param="maco", steps=2)
    assert made.images.shape == (2, 3, 40, 40) and torch.isfinite(made.images).all()


def test_vit_layers_are_token_grids_at_any_size(vit):
    network, module = vit
    assert network.logits == "heads" and network.default_layer == "encoder_layer_8"
    assert network.layers.resolve("encoder_layer_3") == "encoder.layers.encoder_layer_3.grid"
    assert network.layers.resolve("encoder.layers.encoder_layer_3") == "encoder.layers.encoder_layer_3.grid"
    image = torch.rand(1, 3, 48, 64)
    with LayerCapture(module, ["encoder.layers.encoder_layer_3.grid"]) as capture, torch.no_grad():
        grid = capture(image)["encoder.layers.encoder_layer_3.grid"]
    assert grid.shape == (1, 768, 3, 4)  # 16 px patches
    assert module(image).shape == (1, 1000)  # the position embedding is interpolated


def test_vit_is_torchvisions_vit_at_its_own_size(vit):
    import torchvision

    _, module = vit
    reference = torchvision.models.vit_b_16(weights=None)
    reference.load_state_dict({k: v for k, v in module.state_dict().items() if "preprocess" not in k})
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference.eval()(module.preprocess(image))
        assert torch.allclose(module(image), expected, atol=1e-4)


def test_vit_dreams_and_makes_a_channel_picture(vit):
    network, module = vit
    settings = Settings(model=network.name, layers=["encoder_layer_1[7]"], seed=0)
    goal = Activations([network.layers.check(settings.layers[0]) + "[7]"], signed=True)
    made = feature_pictures(module, (32, 32), settings=settings, goal=goal, steps=1)
    assert made.images.shape == (1, 3, 32, 32) and torch.isfinite(made.images).all()
    photo = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    dreaming = Settings(model=network.name, layers=["encoder_layer_1"], octaves=1, iterations=1, seed=0)
    dreamed = dream(module, photo, settings=dreaming.resolved(network.layers.resolve))
    assert dreamed.shape == photo.shape and float((dreamed - photo).abs().mean()) > 0


def test_list_layers_names_vit_blocks():
    from click.testing import CliRunner

    from dreamcli.cli import main

    result = CliRunner().invoke(main, ["list", "layers", "--model", "torchvision:vit_b_16"])
    assert result.exit_code == 0, result.output
    assert "encoder_layer_11" in result.output and "default layer: encoder_layer_8" in result.output


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_timm_without_timm_says_how_to_get_it():
    with pytest.raises(SettingsError, match=r"pip install 'dreamcli\[timm\]'"):
        models.get("timm:resnet18")


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed (dreamcli[timm])")
def test_a_timm_model_by_name():
    network = models.get("timm:resnet18")
    module = prepare_for_dreaming(network.build(None, seed=0), "cpu")
    settings = Settings(model=network.name, layers=[network.default_layer], octaves=1, iterations=1, seed=0)
    assert dream(module, torch.rand(1, 3, 48, 48), settings=settings).shape == (1, 3, 48, 48)
