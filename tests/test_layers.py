import pytest
import torch

from dreamcli import models
from dreamcli.config import LayerSpec
from dreamcli.engine.capture import LayerCapture
from dreamcli.errors import SettingsError
from dreamcli.models.googlenet import CAFFE_NAMES, LAYERS, MODULE_NAMES

resolve_googlenet = LAYERS.resolve


def test_static_module_names_match_the_real_network(net):
    assert [name for name, _ in net.named_modules()][1:] == MODULE_NAMES == list(LAYERS.modules)


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("inception_4c", "inception4c"),
        ("inception_4c/output", "inception4c"),
        ("inception_4c/1x1", "inception4c.branch1"),
        ("inception_4c/3x3_reduce", "inception4c.branch2.0"),
        ("inception_4c/3x3", "inception4c.branch2.1"),
        ("inception_4c/5x5_reduce", "inception4c.branch3.0"),
        ("inception_4c/5x5", "inception4c.branch3.1"),
        ("inception_4c/pool_proj", "inception4c.branch4.1"),
        ("conv2/3x3_reduce", "conv2"),
        ("conv2-3x3_reduce", "conv2"),
        ("conv2/3x3", "conv3"),
        ("inception_3b-5x5", "inception3b.branch3.1"),
        # torchvision's own names pass through unchanged
        ("inception4c", "inception4c"),
        ("inception4c.branch2.1", "inception4c.branch2.1"),
        ("conv2", "conv2"),
    ],
)
def test_caffe_and_torchvision_names_resolve(name, module):
    assert resolve_googlenet(name) == module


def test_every_caffe_name_points_at_a_real_module():
    assert set(CAFFE_NAMES.values()) <= set(MODULE_NAMES)


def test_typo_gets_the_closest_names():
    with pytest.raises(SettingsError, match=r"unknown layer 'inception_4x'.*did you mean.*inception_4"):
        resolve_googlenet("inception_4x")


def test_channel_counts_match_the_real_network():
    # The meta device computes shapes only: every listed layer in one pass, no weights needed.
    with torch.device("meta"):
        meta = models.get("googlenet").build()
        with LayerCapture(meta, list(LAYERS.channels)) as capture:
            outputs = capture(torch.zeros(1, 3, 224, 224))
    assert {name: out.shape[1] for name, out in outputs.items()} == dict(LAYERS.channels)
    assert LAYERS.channels["inception4c"] == 512 and LAYERS.channels["inception4c.branch4.0"] == 512


def test_listing_rows_pair_each_layer_with_its_caffe_name():
    rows = {module: (alias, channels) for alias, module, channels in LAYERS.rows()}
    assert rows["inception4c.branch2.0"] == ("inception_4c/3x3_reduce", 128)
    assert rows["conv3"] == ("conv2/3x3", 192)
    assert rows["flatten"] == ("flatten", 1024)  # no other name: its own


def test_the_listing_spells_every_googlenet_layer_one_way():
    names = [alias for alias, _, _ in LAYERS.rows()]
    # torchvision's branch containers are the same output as a Caffe-named layer: not listed twice
    assert not [name for name in names if ".branch" in name], names
    assert "inception_3a/3x3" in names and "inception_3a/pool_proj" in names
    # but still taken when typed, with their channels checked
    assert LAYERS.check(LayerSpec("inception3a.branch2", channels=(127,))) == "inception3a.branch2"
    with pytest.raises(SettingsError, match="128 channels"):
        LAYERS.check(LayerSpec("inception3a.branch2", channels=(128,)))
