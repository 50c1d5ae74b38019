"""Channels chosen by the photo (engine/choosing.py, ``inception_3b[strong:4]``): recorded, re-run exactly."""

import numpy as np
import pytest
import torch
from PIL import Image

from dreamcli.config import LayerSpec, Settings
from dreamcli.engine import choosing
from dreamcli.engine.octaves import dream
from dreamcli.errors import SettingsError
from dreamcli.io.images import read_image, read_metadata

from conftest import cli_invoker, save_photo

FAST = ["--octaves", "2", "--iterations", "2", "--seed", "1"]


@pytest.fixture
def run(weights_file):
    return cli_invoker(weights_file)


def test_strong_channels_are_recorded_and_the_picture_re_runs_bit_exactly(run, net, tmp_path):
    photo = save_photo(tmp_path / "photo.png")
    first = tmp_path / "first.png"
    result = run(photo, *FAST, "--layer", "inception_3b[strong:4]", "-o", first)
    assert result.exit_code == 0, result.output
    (recorded,) = read_metadata(first)["settings"]["layers"]
    channels = LayerSpec.parse(recorded).channels
    assert channels is not None and len(channels) == 4
    # the four the photo drives most at the first octave (64x96 / 1.4 = 46x69)
    settings = Settings(layers=("inception3b[strong:4]",), octaves=2)
    means = choosing.strengths(net, read_image(photo).rgb, settings)["inception3b"]
    assert set(channels) == set(torch.topk(means, 4).indices.tolist())
    again = tmp_path / "again.png"
    result = run(photo, "--preset", first, "-o", again)
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
    assert read_metadata(again)["settings"]["layers"] == [recorded]


def test_weak_and_avg_choose_the_other_ends():
    means = torch.tensor([5.0, 1.0, 3.0, 3.1, 0.0, 9.0])
    assert choosing.chosen("strong", 2, means) == (0, 5)
    assert choosing.chosen("weak", 2, means) == (1, 4)
    assert choosing.chosen("avg", 2, means) == (2, 3)  # the mean is 3.52
    assert choosing.chosen("strong", 2, torch.zeros(4)) == (0, 1)  # ties: the lower index


@pytest.mark.parametrize(
    ("layer", "said"),
    [
        ("inception_3b[stron:4]", "did you mean strong"),
        ("inception_3b[strong:481]", "has 480 channels"),
        ("inception_3b[strong:4,0-3]", "a pick cannot be mixed with other channels"),
    ],
)
def test_a_wrong_choice_is_one_line_and_exit_2(run, tmp_path, layer, said):
    result = run(save_photo(tmp_path / "photo.png"), *FAST, "--layer", layer)
    assert result.exit_code == 2 and said in result.output, result.output
    assert not (tmp_path / "photo_dream.png").exists()


@pytest.mark.parametrize(
    ("command", "here"),
    [
        (["features", "--layer", "inception_3b[strong:3]", "--size", "48x48"], "dream features takes"),
        (["sheet", "{photo}", "--channels", "inception_3b[weak:3]"], "a sheet takes"),
        (["zoom", "{photo}", "--layer", "inception_3b[avg:3]", "--frames", "2"], "an animation takes"),
    ],
    ids=["features", "sheet", "zoom"],
)
def test_commands_without_a_photo_to_choose_refuse_a_choice_in_one_line(run, tmp_path, command, here):
    photo = save_photo(tmp_path / "photo.png")
    out = tmp_path / "out" / ("frames/" if command[0] == "zoom" else "o.png")
    args = [str(photo) if part == "{photo}" else part for part in command]
    result = run(*args, *FAST, "-o", out)
    assert result.exit_code == 2, result.output
    assert "channels chosen by strength are chosen per photo" in result.output and here in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_the_engine_refuses_a_choice_nobody_made(net):
    settings = Settings(layers=(LayerSpec.parse("inception3b[strong:4]"),), octaves=1, iterations=1)
    with pytest.raises(SettingsError, match="chosen per photo"):
        dream(net, torch.rand(3, 64, 64), settings=settings)


def test_the_python_api_chooses_for_the_photo(net):
    from dreamcli import api

    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    settings = Settings(layers=("inception3b[weak:3]",), octaves=1, iterations=2, seed=1)
    means = choosing.strengths(net, image, settings)["inception3b"]
    weakest = tuple(sorted(torch.topk(-means, 3).indices.tolist()))
    explicit = Settings(layers=(LayerSpec("inception3b", channels=weakest),), octaves=1, iterations=2, seed=1)
    assert torch.equal(api.dream(net, image, settings=settings), api.dream(net, image, settings=explicit))
