"""Region masks (engine/masking.py, jobs/masks.py, ``dream --mask``): the photo kept where black."""

import numpy as np
import pytest
import torch
from PIL import Image

from dreamcli.engine import masking
from dreamcli.io.images import read_metadata

from conftest import cli_invoker, save_photo

FAST = ["--octaves", "2", "--iterations", "3", "--layer", "inception_3b", "--seed", "1"]


def half_mask(path, width=96, height=64, white_right=True):
    grey = np.zeros((height, width), np.uint8)
    grey[:, width // 2 :] = 255
    if not white_right:
        grey = 255 - grey
    Image.fromarray(grey, "L").save(path)
    return path


@pytest.fixture
def dream(weights_file):
    return cli_invoker(weights_file)


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def test_the_photo_stays_unchanged_where_the_mask_is_black(dream, tmp_path):
    photo = save_photo(tmp_path / "photo.png")
    mask = half_mask(tmp_path / "mask.png")
    result = dream(photo, *FAST, "--mask", mask, "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    before, after = pixels(photo), pixels(tmp_path / "out.png")
    grey = torch.from_numpy(np.asarray(Image.open(mask), np.float32) / 255)
    hard = masking.hard_zone(grey, (64, 96)).numpy()
    assert hard[:, :30].all() and not hard[:, 48:].any()  # the feathering's hard zone: the left part
    assert np.abs(after - before)[hard].max() <= 1  # <= 1/255 after 8-bit rounding
    assert np.abs(after - before)[:, 60:].mean() > 2  # and the white half dreamed
    recorded = read_metadata(tmp_path / "out.png")["settings"]
    assert recorded["mask"] == str(mask) and recorded["mask_invert"] is False


def test_an_inverted_mask_keeps_the_other_half_and_the_picture_re_runs_it(dream, tmp_path):
    photo = save_photo(tmp_path / "photo.png")
    mask = half_mask(tmp_path / "mask.png", white_right=False)  # white left; inverted: white right
    first = tmp_path / "first.png"
    assert dream(photo, *FAST, "--mask", mask, "--mask-invert", "-o", first).exit_code == 0
    before, after = pixels(photo), pixels(first)
    assert np.abs(after - before)[:, :30].max() <= 1 and np.abs(after - before)[:, 66:].mean() > 2
    again = tmp_path / "again.png"
    result = dream(photo, "--preset", first, "-o", again)
    assert result.exit_code == 0, result.output
    assert np.array_equal(pixels(first), pixels(again))  # the recorded mask (and its inversion) re-ran


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_a_transparent_part_of_a_mask_counts_as_black(dream, tmp_path, mode):
    photo = save_photo(tmp_path / "photo.png")
    painted = np.full((64, 96, 4), 255, np.uint8)  # white everywhere, but the left half transparent
    painted[:, :48, 3] = 0
    mask = tmp_path / "mask.png"
    Image.fromarray(painted, "RGBA").convert(mode).save(mask)
    result = dream(photo, *FAST, "--mask", mask, "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    before, after = pixels(photo), pixels(tmp_path / "out.png")
    assert np.abs(after - before)[:, :30].max() <= 1  # the transparent half is the photo
    assert np.abs(after - before)[:, 60:].mean() > 2  # the painted half dreamed
    inverted = tmp_path / "inverted.png"
    assert dream(photo, *FAST, "--mask", mask, "--mask-invert", "-o", inverted).exit_code == 0
    changed = np.abs(pixels(inverted) - before)
    assert changed[:, 66:].max() <= 1 and changed[:, :30].mean() > 2  # inverted: the weight, not the RGB


@pytest.mark.parametrize(
    ("make", "invert", "said"),
    [
        (lambda p: Image.new("L", (90, 90), 255).save(p), False, "shapes differ"),
        (lambda p: p.write_bytes(b"not a picture"), False, "Pillow can read"),
        (lambda p: Image.new("L", (96, 64), 0).save(p), False, "nothing white"),
        (lambda p: Image.new("L", (96, 64), 255).save(p), True, "has nothing black"),
    ],
    ids=["aspect", "unreadable", "black", "inverted-white"],
)
def test_a_mask_that_cannot_serve_is_one_line_and_exit_2(dream, tmp_path, make, invert, said):
    photo = save_photo(tmp_path / "photo.png")
    mask = tmp_path / "mask.png"
    make(mask)
    result = dream(photo, *FAST, "--mask", mask, *(["--mask-invert"] if invert else []))
    assert result.exit_code == 2, result.output
    assert said in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "photo_dream.png").exists()


def test_no_dream_replaces_the_mask_or_the_guide_it_reads(dream, tmp_path):
    photo = save_photo(tmp_path / "photo.png")
    mask = half_mask(tmp_path / "mask.png")
    guide = save_photo(tmp_path / "guide.png", seed=3)
    for flag, path in (("--mask", mask), ("--guide", guide)):
        before = path.read_bytes()
        result = dream(photo, *FAST, flag, path, "-o", path, "--overwrite")
        assert result.exit_code == 2, result.output
        assert "this command reads; dreamcli never overwrites an input" in result.output
        assert path.read_bytes() == before


def test_a_relative_mask_is_recorded_whole_and_re_runs_from_another_folder(dream, tmp_path, monkeypatch):
    photo = save_photo(tmp_path / "photo.png")
    half_mask(tmp_path / "mask.png")
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "first.png"
    assert dream(photo, *FAST, "--mask", "mask.png", "-o", first).exit_code == 0
    assert read_metadata(first)["settings"]["mask"] == str(tmp_path / "mask.png")
    (tmp_path / "sub").mkdir()
    Image.new("L", (96, 64), 255).save(tmp_path / "sub" / "mask.png")  # another mask by that name
    monkeypatch.chdir(tmp_path / "sub")
    again = tmp_path / "again.png"
    assert dream(photo, "--preset", first, "-o", again).exit_code == 0
    assert np.array_equal(pixels(first), pixels(again))


def test_a_recorded_mask_invert_without_a_mask_is_refused(dream, tmp_path):
    from dreamcli.io.images import write_image

    photo = save_photo(tmp_path / "photo.png")
    first = tmp_path / "first.png"
    assert dream(photo, *FAST, "-o", first).exit_code == 0
    meta = read_metadata(first)
    meta["settings"].update(mask=None, mask_invert=True)
    hostile = tmp_path / "hostile.png"
    write_image(hostile, torch.rand(3, 64, 96), None, meta)
    result = dream(photo, "--preset", hostile, "-o", tmp_path / "again.png")
    assert result.exit_code == 2, result.output
    assert "no mask to invert" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "again.png").exists()


def test_mask_invert_without_a_mask_is_refused(dream, tmp_path):
    result = dream(save_photo(tmp_path / "photo.png"), *FAST, "--mask-invert")
    assert result.exit_code == 2 and "--mask" in result.output


def test_the_engine_blend_is_the_photo_at_weight_zero_and_the_dream_at_one():
    base, dreamed = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    weight = torch.zeros(1, 1, 8, 8)
    weight[..., 4:] = 1.0
    out = masking.blend(base, dreamed, weight)
    assert torch.equal(out[..., :4], base[..., :4]) and torch.allclose(out[..., 4:], dreamed[..., 4:])


def test_the_python_api_takes_a_mask_tensor(net):
    from dreamcli import Settings, dream

    image = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(64, 96)
    mask[:, 48:] = 1.0
    settings = Settings(layers=("inception3b",), octaves=1, iterations=2, seed=1)
    out = dream(net, image, settings=settings, mask=mask)
    hard = masking.hard_zone(mask, (64, 96))
    assert torch.equal(out[:, hard], image[:, hard]) and (out - image)[:, :, 60:].abs().mean() > 0.005


def test_the_python_api_reads_a_mask_path_with_its_transparency(net, tmp_path):
    from dreamcli import Settings, dream

    painted = np.full((64, 96, 4), 255, np.uint8)
    painted[:, :48, 3] = 0  # white, the left half transparent
    Image.fromarray(painted, "RGBA").save(tmp_path / "mask.png")
    image = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0))
    settings = Settings(
        layers=("inception3b",), octaves=1, iterations=2, seed=1, mask=str(tmp_path / "mask.png")
    )
    out = dream(net, image, settings=settings)
    assert torch.equal(out[:, :, :30], image[:, :, :30]) and (out - image)[:, :, 60:].abs().mean() > 0.005
