"""Views: layer and preset sweeps, channel grids, noise starts, guides, classes, heat maps."""

import numpy as np
import pytest
import torch
from PIL import Image

from dreamcli import models
from dreamcli.config import LayerSpec, Settings
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.objectives import ChannelPerImage, Guided, RandomAffine, guide_features, objective
from dreamcli.engine.octaves import dream
from dreamcli.io.images import read_metadata
from dreamcli.jobs.sheets import activation_map, contact_sheet, heat_overlay

from conftest import cli_invoker, photo_array, save_photo

FAST = ["--octaves", "1", "--iterations", "2", "--seed", "0", "-q"]


@pytest.fixture
def run(weights_file):
    return cli_invoker(weights_file, *FAST)


def test_layer_sweep_writes_a_labelled_sheet(run, tmp_path):
    src = save_photo(tmp_path / "p.png", 64, 48)
    result = run("sheet", src, "--layers", "conv2/3x3_reduce inception_3b inception_4c")
    assert result.exit_code == 0, result.output
    sheet = Image.open(tmp_path / "p_sheet.png")
    assert sheet.width == 4 * 320  # the input, then one tile per layer
    pixels = np.asarray(sheet.convert("L"))
    tile_h = round(320 * 48 / 64)
    label_band = pixels[tile_h + 2 :, :]
    assert (label_band < 100).any() and (label_band > 250).mean() > 0.8  # dark text on white
    tiles = [pixels[:tile_h, i * 320 : (i + 1) * 320].astype(float) for i in range(4)]
    assert all(np.abs(t - tiles[0]).mean() > 0.5 for t in tiles[1:])  # each tile dreamed
    assert read_metadata(tmp_path / "p_sheet.png")["sheet"] == "sweep"


def test_preset_sweep(run, tmp_path):
    src = save_photo(tmp_path / "p.png", 64, 48)
    result = run("sheet", src, "--presets", "classic eyes", "-o", tmp_path / "s.jpg")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "s.jpg").width == 3 * 320


def test_bad_sweep_layer_is_a_usage_error(run, tmp_path):
    src = save_photo(tmp_path / "p.png", 64, 48)
    result = run("sheet", src, "--layers", "inception_3b inception_9x")
    assert result.exit_code == 2 and "inception_9x" in result.output


def test_channel_grid_from_noise(run, tmp_path):
    result = run(
        "features", "--layer", "inception_3b[0-5]", "--each", "--size", "48x48", "-o", tmp_path / "g.png"
    )
    assert result.exit_code == 0, result.output
    sheet = Image.open(tmp_path / "g.png")
    assert sheet.width == 6 * 48  # each tile at --size
    tiles = np.asarray(sheet.convert("RGB"), dtype=float)[:48]
    parts = [tiles[:, i * 48 : (i + 1) * 48] for i in range(6)]
    assert all(np.abs(parts[0] - p).mean() > 0.1 for p in parts[1:])  # each channel its own picture


def test_channel_per_image_raises_its_own_channel(net):
    photo = torch.from_numpy(photo_array(48, 48)).permute(2, 0, 1).float() / 255
    image = photo.expand(2, 3, 48, 48)
    with LayerCapture(net, ["inception3b"]) as capture:
        energy = capture(image[:1])["inception3b"][0].pow(2).flatten(1).mean(1)
    a, b = energy.argsort(descending=True)[:2].tolist()  # two channels that are alive here
    goal = ChannelPerImage("inception3b", [a, b])
    out = dream(
        net,
        image,
        goal=goal,
        settings=Settings(layers=["inception3b"], octaves=1, iterations=5, jitter=0, seed=0),
    )
    with LayerCapture(net, ["inception3b"]) as capture:
        before, after = capture(image)["inception3b"], capture(out)["inception3b"]
    gain = after.pow(2).flatten(2).mean(2) / before.pow(2).flatten(2).mean(2)  # (image, channel)
    assert gain[0, a] > 1.2 and gain[1, b] > 1.2
    assert gain[0, a] > gain[1, a] and gain[1, b] > gain[0, b]  # each image raised its own channel most


def test_feature_pictures_the_2015_way_from_noise(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("features", "--param", "pixel", "--size", "64x48", "--layer", "inception_3a").exit_code == 0
    out = np.asarray(Image.open(tmp_path / "features_inception_3a.png"), dtype=float)
    assert out.shape == (48, 64, 3) and out.std() > 1.0  # noise became a picture
    result = run("features", "--size", "5x5")
    assert result.exit_code == 2 and "--size" in result.output


def test_random_affine_is_small_and_seeded():
    image = torch.rand(1, 3, 32, 32)
    a, b = RandomAffine(seed=1)(image), RandomAffine(seed=1)(image)
    assert torch.equal(a, b)
    assert 0 < (a - image).abs().mean() < 0.2


def test_guided_dream_moves_toward_the_guide(net, run, tmp_path):
    photo = torch.from_numpy(photo_array(64, 48, seed=0)).permute(2, 0, 1).float() / 255
    guide = torch.from_numpy(photo_array(64, 48, seed=9)).permute(2, 0, 1).float() / 255
    spec = [LayerSpec("inception3b")]
    with LayerCapture(net, ["inception3b"]) as capture:
        features = guide_features(capture, guide)
        settings = Settings(layers=["inception3b"], octaves=1, iterations=6, jitter=0, seed=0)
        guided = dream(net, photo, settings=settings, goal=Guided(settings.layers, features))
        plain = dream(net, photo, settings=settings)
        score = lambda img: float(objective(capture(img[None]), spec, guide=features))  # noqa: E731
        assert score(guided) > 1.2 * score(photo)
        assert (guided - plain).abs().mean() > 0.002  # the guide changed the dream
    src = save_photo(tmp_path / "p.png", 64, 48)
    g = save_photo(tmp_path / "g.png", 64, 48, seed=9)
    result = run(src, "--guide", g, "--layer", "inception_3b")
    assert result.exit_code == 0, result.output
    assert read_metadata(tmp_path / "p_guided.png")["guide"] == str(g)  # its own name: not p_dream.png


def test_guide_objective_follows_the_best_matching_guide_feature():
    # Two positions, two channels; the guide has features (1, 0) and (0, 2).
    act = torch.tensor([[[[3.0, 0.1]], [[1.0, 1.0]]]], requires_grad=True)  # (1, C=2, 1, P=2)
    guide = {"l": torch.tensor([[1.0, 0.0], [0.0, 2.0]])}  # (C, M): columns are guide features
    loss = objective({"l": act}, [LayerSpec("l")], guide=guide)
    (grad,) = torch.autograd.grad(loss.sum(), act)
    # Position 0, (3, 1): dot products 3 and 2 -> follows (1, 0).  Position 1, (0.1, 1): 0.1 and 2 -> (0, 2).
    # The gradient is the chosen guide feature, over the number of positions (the mean).
    assert grad[0, :, 0, :].tolist() == [[0.5, 0.0], [0.0, 1.0]]
    assert float(loss.detach()) == pytest.approx((3.0 + 2.0) / 2)


def test_class_by_name_index_and_typo(run, tmp_path):
    googlenet = models.get("googlenet")
    assert googlenet.class_index("dumbbell") == 543 == googlenet.class_index("543")
    src = save_photo(tmp_path / "p.png", 64, 48)
    result = run(src, "--class", "dumbbell", "--octaves", "2")
    assert result.exit_code == 0, result.output
    assert read_metadata(tmp_path / "p_class-dumbbell.png")["settings"]["layers"] == ["fc[543]"]
    result = run(src, "--class", "dumbel")
    assert result.exit_code == 2 and "did you mean 'dumbbell'" in result.output
    result = run(src, "--class", "1000")
    assert result.exit_code == 2 and "0 to 999" in result.output


def test_class_objective_raises_the_logit(net):
    photo = torch.from_numpy(photo_array(96, 96)).permute(2, 0, 1).float() / 255
    settings = Settings(layers=["fc[543]"], octaves=1, iterations=5, jitter=0, seed=0)
    out = dream(net, photo, settings=settings)
    with LayerCapture(net, ["fc"]) as capture:
        assert capture(out[None])["fc"][0, 543] > capture(photo[None])["fc"][0, 543]


def test_heatmap_overlay(run, net, tmp_path):
    src = save_photo(tmp_path / "p.png", 64, 48)
    result = run(src, "--heatmap", "--layer", "inception_3b")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "p_dream_heatmap.png").size == (64, 48)
    # Where the layer fires is where the map is bright: a bright square on black.
    image = torch.zeros(3, 64, 64)
    image[:, 8:24, 40:56] = 1.0
    heat = activation_map(net, image, LayerSpec("conv2"))
    assert heat.shape == (64, 64) and float(heat.max()) == 1.0
    assert heat[8:24, 40:56].mean() > 3 * heat[40:, :24].mean()
    assert heat_overlay(image, heat).shape == (3, 64, 64)


def test_contact_sheet_grid_shape():
    tiles = [(f"t{i}", torch.rand(3, 10, 20)) for i in range(5)]
    sheet = contact_sheet(tiles, columns=2, width=100)
    label = max(10, 100 // 16) + 12
    assert sheet.width == 200 and sheet.height == 3 * (50 + label)


def test_classes_guides_and_heat_maps_dream_every_input(run, tmp_path):
    a, b = save_photo(tmp_path / "a.png", 32, 32), save_photo(tmp_path / "b.png", 32, 32, seed=1)
    result = run(a, b, "--class", "dumbbell", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_class-dumbbell.png",
        "b_class-dumbbell.png",
    ]
    result = run(a, b, "--heatmap", "--guide", b, "--layer", "inception_3a", "-o", tmp_path / "g")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [
        "a_guided.png",
        "a_guided_heatmap.png",
        "b_guided.png",
        "b_guided_heatmap.png",
    ]


def test_an_existing_feature_picture_is_kept_unless_overwrite(weights_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = cli_invoker(weights_file, "--octaves", "1", "--iterations", "1", "--seed", "0")
    assert first("features", "--size", "48x48").exit_code == 0
    stamp = (tmp_path / "features_inception_4c.png").stat().st_mtime_ns
    again = first("features", "--size", "48x48")
    assert again.exit_code == 0 and "Skipped features_inception_4c.png" in again.output
    assert (tmp_path / "features_inception_4c.png").stat().st_mtime_ns == stamp
    assert first("features", "--size", "48x48", "--class", "goldfish").exit_code == 0
    assert (tmp_path / "features_class-goldfish.png").is_file()  # a class picture has its own name
    assert first("features", "--size", "48x48", "--overwrite").exit_code == 0
    assert (tmp_path / "features_inception_4c.png").stat().st_mtime_ns != stamp
