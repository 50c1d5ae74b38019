import pytest

from dreamcli.errors import SettingsError
from dreamcli.layers import CAFFE_NAMES, MODULE_NAMES, resolve_googlenet
from dreamcli.model import googlenet_channels


def test_static_module_names_match_the_real_network(net):
    assert [name for name, _ in net.named_modules()][1:] == MODULE_NAMES


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


def test_channel_counts_match_googlenet():
    counts = googlenet_channels(["conv2", "conv3", "inception3a", "inception4c", "inception5b"])
    assert counts == {"conv2": 64, "conv3": 192, "inception3a": 256, "inception4c": 512, "inception5b": 1024}
