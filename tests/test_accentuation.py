"""Feature accentuation (engine/accentuation.py, ``dream --accentuate``): more X, still the photo."""

import pytest
import torch

from dreamcli.config import LayerSpec, Settings
from dreamcli.engine.accentuation import accentuate
from dreamcli.io.images import read_image, read_metadata

from conftest import cli_invoker, save_photo

FAST = ["--octaves", "1", "--iterations", "2", "--seed", "1"]  # 16 Adam steps


@pytest.fixture
def run(weights_file):
    return cli_invoker(weights_file)


def logit(net, image, index):
    with torch.no_grad():
        return float(net(image[None])[0, index])


def test_accentuate_raises_the_class_writes_where_it_changed_and_records_the_pull(run, net, tmp_path):
    photo = save_photo(tmp_path / "photo.png", 96, 96)
    out = tmp_path / "out.png"
    result = run(photo, *FAST, "--class", "7", "--accentuate", "--pull", "0.5", "-o", out)
    assert result.exit_code == 0, result.output
    before, after = read_image(photo).rgb, read_image(out).rgb
    assert logit(net, after, 7) > logit(net, before, 7)
    assert (after - before).abs().mean() * 255 < 20  # still the photo
    changed = read_image(tmp_path / "out_changed.png").rgb
    assert changed.shape == after.shape and changed.max() > 0.9
    assert read_metadata(out)["settings"]["accentuate"] == 0.5


def test_pull_without_accentuate_is_refused(run, tmp_path):
    result = run(save_photo(tmp_path / "photo.png"), *FAST, "--pull", "2")
    assert result.exit_code == 2 and "--accentuate" in result.output


def test_a_stronger_pull_keeps_the_picture_nearer_the_photo(net):
    photo = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    settings = Settings(layers=(LayerSpec("fc", channels=(3,)),), seed=0)
    free = accentuate(net, photo, settings=settings, pull=0.0, steps=12)
    held = accentuate(net, photo, settings=settings, pull=1000.0, steps=12)
    assert (held.images - photo).abs().mean() < (free.images - photo).abs().mean()
    assert free.images.shape == photo.shape and free.changed.shape == (1, 64, 64)


def test_accentuate_with_a_mask_keeps_the_hard_zone(net):
    from dreamcli.engine import masking

    photo = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(64, 64)
    mask[:, 32:] = 1
    settings = Settings(layers=(LayerSpec("fc", channels=(3,)),), seed=0)
    made = accentuate(net, photo, settings=settings, pull=0.0, steps=8, mask=mask)
    hard = masking.hard_zone(mask, (64, 64))
    assert torch.equal(made.images[:, hard], photo[:, hard])


def test_the_default_pull_holds_a_trained_networks_scale_near_the_photo(net):
    # A trained network's logit rises by tens (Lite0: benchmarks/README.md, issue 35); the random
    # one's barely moves, so its logit is scaled to that size.  Pull 1 let such a logit take the
    # photo 3x as far as DeepDream; the default still raises the logit and moves the photo less.
    from dreamcli.engine.objectives import Activations

    photo = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    goal = Activations((LayerSpec("fc", channels=(7,)),), signed=True) * 300
    settings = Settings(seed=0)
    loose = accentuate(net, photo, settings=settings, goal=goal, pull=1.0, steps=12).images
    held = accentuate(net, photo, settings=settings, goal=goal, steps=12).images
    assert logit(net, held, 7) > logit(net, photo, 7) + 0.1  # the objective rises
    assert (held - photo).abs().mean() < 0.75 * (loose - photo).abs().mean()


def test_accentuate_without_pull_records_the_default_pull(run, tmp_path):
    out = tmp_path / "out.png"
    result = run(save_photo(tmp_path / "photo.png", 64, 64), *FAST, "--class", "7", "--accentuate", "-o", out)
    assert result.exit_code == 0, result.output
    assert read_metadata(out)["settings"]["accentuate"] == 10.0  # the measured default, not 1.0
