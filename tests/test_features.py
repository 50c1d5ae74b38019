"""Feature pictures from noise: the papers' objectives, the transforms, MACO and its alpha map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dreamcli.config import LayerSpec, Settings
from dreamcli.engine import transforms as tf
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.featurevis import Spectrum, feature_pictures, visualize
from dreamcli.engine.objectives import Activations, ChannelPerImage, Direction, objective
from dreamcli.io.images import read_metadata
from tests.conftest import cli_invoker


def _outputs():
    act = torch.zeros(2, 3, 2, 2)
    act[:, 1] = -2.0  # a strongly negative channel
    act[:, 2] = 1.0
    return {"conv": act}


def test_the_paper_objective_raises_a_channels_mean_not_its_square():
    spec = LayerSpec("conv", channels=(1,))
    assert Activations([spec])(_outputs()).tolist() == [4.0, 4.0]  # 2015: squared, -2 counts as +4
    assert Activations([spec], signed=True)(_outputs()).tolist() == [-2.0, -2.0]
    # A whole layer stays squared (DeepDream's "amplify whatever is there").
    assert (
        Activations(["conv"], signed=True)(_outputs()).tolist() == Activations(["conv"])(_outputs()).tolist()
    )
    pair = ChannelPerImage("conv", [1, 2], signed=True)
    assert pair(_outputs()).tolist() == [-2.0, 1.0]
    assert ChannelPerImage("conv", [1, 2])(_outputs()).tolist() == [4.0, 1.0]


def test_objectives_repeat_over_several_views_of_each_picture():
    act = torch.randn(6, 3, 2, 2)  # 3 views of 2 pictures, view-major
    views = ChannelPerImage("conv", [0, 2], signed=True)({"conv": act})
    assert torch.allclose(views, act[[0, 1, 2, 3, 4, 5], [0, 2, 0, 2, 0, 2]].flatten(1).mean(1))
    directions = Direction("conv", torch.eye(3)[:2])({"conv": act})
    assert directions.shape == (6,)
    logits = ChannelPerImage("fc", [5, 7], signed=True)({"fc": torch.arange(20.0).view(2, 10)})
    assert logits.tolist() == [5.0, 17.0]  # a logits layer: the logit itself


def test_transforms_compose_and_follow_their_seed():
    image = torch.rand(2, 3, 40, 48)
    one = tf.STANDARD(image, torch.Generator().manual_seed(3))
    two = tf.STANDARD(image, torch.Generator().manual_seed(3))
    assert torch.equal(one, two) and one.shape[:2] == (2, 3)
    assert torch.equal(tf.NONE(image, torch.Generator()), image)
    padded = tf.Compose((tf.Pad(4), tf.Jitter(2)))(image, torch.Generator())
    assert padded.shape[-2:] == (46, 54)
    crops = tf.RandomCrops(3, (0.3, 0.6), (20, 24), noise=0.0)(image, torch.Generator().manual_seed(0))
    assert crops.shape == (6, 3, 20, 24)


@pytest.mark.parametrize("param", ["fft", "maco"])
def test_feature_pictures_and_their_alpha(net, param):
    settings = Settings(layers=["inception3b"], seed=0)
    goal = ChannelPerImage("inception3b", [1, 2], signed=True)
    made = feature_pictures(net, (40, 32), settings=settings, goal=goal, batch=2, param=param, steps=3)
    assert made.images.shape == (2, 3, 40, 32) and made.alpha.shape == (2, 1, 40, 32)
    assert float(made.images.min()) >= 0 and float(made.images.max()) <= 1
    assert float(made.alpha.min()) >= 0 and float(made.alpha.max()) == pytest.approx(1.0)
    again = visualize(net, (40, 32), settings=settings, goal=goal, batch=2, param=param, steps=3)
    assert torch.equal(again, made.images)  # seeded
    with pytest.raises(ValueError, match="param"):
        feature_pictures(net, (8, 8), settings=settings, param="wavelet", steps=1)


def test_maco_keeps_its_spectrum_magnitude(net):
    """Only the phase is optimised: the picture's contrast does not run away with the objective."""
    settings = Settings(layers=["inception4a[3]"], seed=0, step_size=6.0)
    made = feature_pictures(net, (48, 48), settings=settings, param="maco", steps=4)
    logits = torch.logit(made.images.clamp(1e-4, 1 - 1e-4))
    assert 0.2 < float(logits.std()) < 2.0


def test_dream_features_maco_writes_the_picture_and_its_alpha(weights_file, tmp_path):
    run = cli_invoker(weights_file, "--octaves", "1", "--iterations", "1", "-q")
    result = run("features", "--layer", "inception_3b[4]", "--size", "48x40", "--param", "maco", "--alpha",
                 "-o", tmp_path / "m.png")  # fmt: skip
    assert result.exit_code == 0, result.output
    picture, alpha = Image.open(tmp_path / "m.png"), Image.open(tmp_path / "m_alpha.png")
    assert picture.size == alpha.size == (48, 40)
    assert np.asarray(alpha).std() > 0
    sheet = run("features", "--layer", "inception_3b[0-1]", "--each", "--size", "32x32", "--alpha",
                "-o", tmp_path / "s.png")  # fmt: skip
    assert sheet.exit_code == 0, sheet.output
    assert Image.open(tmp_path / "s_alpha.png").size == Image.open(tmp_path / "s.png").size
    refused = run("features", "--param", "pixel", "--alpha", "-o", tmp_path / "p.png")
    assert refused.exit_code == 2 and "--alpha needs --param fft or maco" in refused.output
    assert not (tmp_path / "p.png").exists()


def test_the_spectrum_is_a_valid_picture_and_visualize_raises_the_objective(net):
    picture = Spectrum(2, 40, 56, torch.Generator().manual_seed(0), "cpu")().detach()
    assert picture.shape == (2, 3, 40, 56) and float(picture.min()) > 0 and float(picture.max()) < 1
    settings = Settings(layers=["inception3b"], octaves=1, iterations=2, seed=0)  # 16 Adam steps
    out = visualize(net, (48, 48), settings=settings)
    start = Spectrum(1, 48, 48, torch.Generator().manual_seed(0), "cpu")().detach()
    with LayerCapture(net, ["inception3b"]) as capture:
        before = float(objective(capture(start), Activations(["inception3b"]).specs))
        after = float(objective(capture(out), Activations(["inception3b"]).specs))
    assert after > 1.5 * before


def test_param_fft_makes_feature_pictures_from_noise(weights_file, tmp_path):
    run = cli_invoker(weights_file, "--octaves", "1", "--iterations", "1", "--layer", "inception_3b", "-q")
    assert run("features", "--size", "64x64", "--param", "fft", "-o", tmp_path / "f.png").exit_code == 0
    assert run("features", "--size", "64x64", "--param", "pixel", "-o", tmp_path / "p.png").exit_code == 0
    fft, pixel = (np.asarray(Image.open(tmp_path / n), dtype=float) for n in ("f.png", "p.png"))
    assert fft.shape == pixel.shape == (64, 64, 3) and np.abs(fft - pixel).mean() > 5
    assert read_metadata(tmp_path / "f.png")["features"] == "fft"
    grid = run(
        "features", "--layer", "inception_3b[0-1]", "--each", "--size", "32x32", "-o", tmp_path / "g.png"
    )
    assert grid.exit_code == 0, grid.output
    assert Image.open(tmp_path / "g.png").size[0] == 2 * 32  # two tiles side by side, at --size


def test_a_feature_picture_records_only_the_settings_it_used(weights_file, tmp_path):
    run = cli_invoker(weights_file, "--octaves", "1", "--iterations", "1", "--size", "32x32", "-q")
    assert run("features", "--preset", "silky", "-o", tmp_path / "f.png").exit_code == 0
    recorded = read_metadata(tmp_path / "f.png")["settings"]
    assert "smooth" not in recorded and "lapnorm" not in recorded and "jitter" not in recorded  # not applied
    assert recorded["layers"] == ["inception_4c"] and recorded["seed"] == 0
    assert run("features", "--preset", "silky", "--param", "pixel", "-o", tmp_path / "p.png").exit_code == 0
    assert read_metadata(tmp_path / "p.png")["settings"]["smooth"] == 2.0  # DeepDream's steps use it


def test_matching_is_the_cosine_for_inversion_and_keeps_rising_for_a_caricature():
    from dreamcli.engine.objectives import Matching

    target = torch.rand(1, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    inversion, caricature = Matching("l", target), Matching("l", target, caricature=True)
    assert float(inversion({"l": target})[0]) == pytest.approx(1.0)
    assert float(inversion({"l": 2 * target})[0]) == pytest.approx(1.0)  # the pattern, not the size
    assert float(caricature({"l": 2 * target})[0]) > float(caricature({"l": target})[0])
    bigger = torch.nn.functional.interpolate(target, size=(5, 5), mode="bilinear")
    assert float(inversion({"l": bigger})[0]) > 0.95  # a scaled view is compared at the photo's size


def test_features_like_a_photo_matches_its_activations(weights_file, net, tmp_path):
    from dreamcli.engine.capture import LayerCapture
    from dreamcli.io.images import read_image, read_metadata
    from tests.conftest import save_photo

    photo = save_photo(tmp_path / "photo.png", 64, 64)
    out = tmp_path / "inverted.png"
    args = ["features", "--like", photo, "--layer", "inception_3b", "--octaves", "1", "--iterations", "3"]
    result = cli_invoker(weights_file)(*args, "-o", out)
    assert result.exit_code == 0, result.output
    assert read_metadata(out)["match"] == "inversion" and read_image(out).rgb.shape == (3, 64, 64)

    def features(image):
        with LayerCapture(net, ["inception3b"]) as capture, torch.no_grad():
            return capture(image[None])["inception3b"].flatten()

    target = features(read_image(photo).rgb)
    grey = torch.full((3, 64, 64), 0.5)
    cos = torch.nn.functional.cosine_similarity
    assert cos(features(read_image(out).rgb), target, dim=0) > cos(features(grey), target, dim=0)
    refused = cli_invoker(weights_file)("features", "--caricature", "--layer", "inception_3b")
    assert refused.exit_code == 2 and "--like" in refused.output


def test_a_like_picture_re_runs_from_its_metadata_and_a_too_small_photo_is_one_line(weights_file, tmp_path):
    from tests.conftest import save_photo

    run = cli_invoker(weights_file, "--octaves", "1", "--iterations", "2", "--seed", "2")
    photo = save_photo(tmp_path / "photo.png", 64, 64)
    first = tmp_path / "car.png"
    made = run("features", "--like", photo, "--caricature", "--layer", "inception_3b", "-o", first)
    assert made.exit_code == 0, made.output
    again = tmp_path / "again.png"
    result = run("features", "--preset", first, "-o", again)
    assert result.exit_code == 0, result.output
    assert read_metadata(again)["match"] == "caricature"
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    refused = run("features", "--like", tiny, "--layer", "inception_3b", "-o", tmp_path / "t.png")
    assert refused.exit_code == 2, refused.output
    assert "needs at least" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "t.png").exists()
    overwrite = run("features", "--like", photo, "--layer", "inception_3b", "-o", photo, "--overwrite")
    assert overwrite.exit_code == 2 and "never overwrites an input" in overwrite.output


def test_the_alpha_map_never_replaces_the_like_photo(weights_file, tmp_path):
    from tests.conftest import save_photo

    run = cli_invoker(weights_file, "--octaves", "1", "--iterations", "2", "--seed", "2")
    photo_alpha = save_photo(tmp_path / "p_alpha.png", 64, 64)  # the transparency map of -o p.png
    before = photo_alpha.read_bytes()
    alpha = run(
        "features", "--like", photo_alpha, "--layer", "inception_3b", "--alpha", "-o", tmp_path / "p.png"
    )
    assert alpha.exit_code == 2 and "never overwrites an input" in alpha.output, alpha.output
    assert photo_alpha.read_bytes() == before and not (tmp_path / "p.png").exists()


def test_each_tile_of_a_sheet_is_the_size_asked_for(weights_file, tmp_path):
    run = cli_invoker(weights_file, "--octaves", "1", "--iterations", "1", "-q")
    result = run(
        "features", "--layer", "inception_3b[0-2]", "--each", "--size", "96x64", "-o", tmp_path / "s.png"
    )
    assert result.exit_code == 0, result.output
    width, height = Image.open(tmp_path / "s.png").size
    assert width == 3 * 96 and 64 < height < 64 + 40  # three tiles side by side, a label under each


def test_a_feature_picture_that_would_not_fit_is_refused_before_work(weights_file, tmp_path, monkeypatch):
    import dreamcli.engine.devices as devices

    monkeypatch.setattr(devices, "memory_budget", lambda device: 200e6)
    run = cli_invoker(weights_file, "--layer", "conv2/3x3", "--octaves", "1", "--iterations", "1")
    out = tmp_path / "big.png"
    result = run("features", "--size", "4096x2048", "-o", out)
    assert result.exit_code == 1, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert "a 4096x2048 fft feature picture needs about" in line and "GiB free for it; use --size" in line
    width, height = (int(v) for v in line.split("--size ")[1].split(" ")[0].split("x"))
    assert abs(width - 2 * height) <= 1 and width * height < 4096 * 2048 // 20  # the same shape, smaller
    assert not out.exists()


def test_a_feature_picture_as_preset_keeps_its_param_and_size(weights_file, tmp_path):
    from dreamcli.io.images import read_metadata

    run = cli_invoker(weights_file, "--layer", "conv2/3x3", "--octaves", "1", "--iterations", "1")
    first = tmp_path / "maco.png"
    made = run("features", "--param", "maco", "--size", "48x32", "--seed", "3", "-o", first)
    assert made.exit_code == 0, made.output
    again = tmp_path / "again.png"
    redone = cli_invoker(weights_file)("features", "--preset", first, "-o", again)
    assert redone.exit_code == 0, redone.output
    assert read_metadata(again)["features"] == "maco" and Image.open(again).size == (48, 32)
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
