import os

import numpy as np
import pytest
import torch
from PIL import Image

from dreamcli.errors import ImageError
from dreamcli.io.images import read_image, read_metadata, write_image

from conftest import photo_array, save_photo


def test_rgb_roundtrip_is_exact(tmp_path):
    src = save_photo(tmp_path / "a.png")
    pic = read_image(src)
    assert pic.rgb.shape == (3, 64, 96) and pic.alpha is None
    write_image(tmp_path / "b.png", pic.rgb)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), photo_array())


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "LA", "RGBA", "I;16"])
def test_every_common_mode_becomes_rgb(tmp_path, mode):
    img = Image.fromarray(photo_array())
    img = img.convert("I;16") if mode == "I;16" else img.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    if mode == "CMYK":
        path = tmp_path / "x.jpg"
    img.save(path)
    pic = read_image(path)
    assert pic.rgb.shape == (3, 64, 96) and pic.rgb.dtype == torch.float32
    assert pic.rgb.min() >= 0 and pic.rgb.max() <= 1
    assert (pic.alpha is not None) == (mode in ("LA", "RGBA"))


def test_16_bit_grey_keeps_its_precision(tmp_path):
    ramp = (np.arange(256 * 4, dtype=np.uint16).reshape(16, 64) * 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    pic = read_image(tmp_path / "g16.png")
    torch.testing.assert_close(pic.rgb[0], torch.from_numpy(ramp.astype(np.float32) / 65535))
    assert len(torch.unique(pic.rgb[0])) > 256  # more levels than 8 bits could hold


def test_palette_transparency_and_alpha_are_carried_to_png(tmp_path):
    rgba = np.dstack([photo_array(), np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (64, 1))])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pic = read_image(tmp_path / "a.png")
    write_image(tmp_path / "out.png", pic.rgb, pic.alpha)
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])
    write_image(tmp_path / "out.jpg", pic.rgb, pic.alpha)  # JPEG has no alpha: dropped
    assert Image.open(tmp_path / "out.jpg").mode == "RGB"
    pal = Image.fromarray(photo_array()).convert("P")
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert read_image(tmp_path / "p.png").alpha is not None


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(photo_array())  # 96 wide, 64 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "r.jpg").size == (64, 96)


def test_max_size_caps_the_long_side(tmp_path):
    src = save_photo(tmp_path / "a.png", 200, 100)
    assert read_image(src, max_size=50).size == (50, 25)
    assert read_image(src, max_size=500).size == (200, 100)


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tiff"])
def test_metadata_is_written_and_read_back(tmp_path, ext):
    meta = {"version": "x", "settings": {"octaves": 3, "layers": ["inception_4c"]}}
    write_image(tmp_path / f"o.{ext}", torch.rand(3, 16, 16), metadata=meta)
    assert read_metadata(tmp_path / f"o.{ext}") == meta


def test_unknown_output_extension_is_refused(tmp_path):
    with pytest.raises(ImageError, match=r"unknown image extension '.bmp'"):
        write_image(tmp_path / "o.bmp", torch.rand(3, 8, 8))


def test_failed_write_leaves_neither_a_partial_nor_a_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "o.png"
    target.write_bytes(b"old")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError, match="No space left"):
        write_image(target, torch.rand(3, 8, 8))
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["o.png"]


def test_written_file_honours_the_umask(tmp_path):
    write_image(tmp_path / "o.png", torch.rand(3, 8, 8))
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not an image"), (b"hello, I am text", "not an image")],
)
def test_non_images_get_one_clear_error(tmp_path, content, message):
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_image(path)


def test_truncated_jpeg_is_an_image_error(tmp_path):
    save_photo(tmp_path / "a.jpg", 200, 150)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="t.jpg"):
        read_image(tmp_path / "t.jpg")


def test_folder_and_missing_file_are_named(tmp_path):
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)
    with pytest.raises(ImageError, match="does not exist"):
        read_image(tmp_path / "nope.png")
