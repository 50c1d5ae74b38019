import os
import signal
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import corpus
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from faults import (
    FUZZ,
    FUZZ_FORMATS,
    KILLED_WRITER,
    POSIX,
    SAMPLES,
    TINY,
    _lzw_tiff_damaged,
    build,
    dream_metadata,
    dream_process,
    exif_description,
    exif_fields,
    jpeg_with_description,
    metadata_text,
    one_error_line,
    photos,
    photos_in,
    png_with_text,
    through_the_cli,
)
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from dreamcli.cli import main
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


@POSIX
def test_a_fifo_named_png_fails_alone_instead_of_hanging(tmp_path, weights_file):
    folder = photos(tmp_path / "in", "a.png")
    os.mkfifo(folder / "pipe.png")
    proc = dream_process(
        folder, "-o", tmp_path / "out", "--weights", weights_file, *TINY, stderr=subprocess.PIPE
    )
    try:
        _, err = proc.communicate(timeout=120)  # before the fix: blocked forever in open()
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "pipe.png is a FIFO, not a regular file" in err
    assert os.listdir(tmp_path / "out") == ["a_dream.png"]


def test_truncated_multiframe_files_are_one_line_errors(tmp_path):
    from dreamcli.errors import ImageError
    from dreamcli.io.images import read_image

    for fmt, name in (("GIF", "cut.gif"), ("TIFF", "cut.tif")):
        for keep in (0.3, 0.6, 0.9):
            path = corpus.truncated_multiframe(tmp_path / name, fmt, keep)
            try:
                read_image(path)
            except ImageError as exc:
                assert str(path) in str(exc) and "\n" not in str(exc)


def test_a_webp_over_the_encoders_limit_is_a_per_file_error(tmp_path):
    from dreamcli.errors import ImageError
    from dreamcli.io.images import write_pil

    with pytest.raises(ImageError, match=r"wide.webp: WEBP pictures are at most 16383 px a side.*--max-size"):
        write_pil(tmp_path / "wide.webp", Image.new("RGB", (16384, 1)))
    assert os.listdir(tmp_path) == []


def test_pillow_warnings_name_the_file_and_stay_quiet_under_q(tiny, tmp_path):
    tiff = corpus.bad_tag_tiff(tmp_path / "tags.tif")
    loud = tiny(tiff, "-o", tmp_path / "a.png", "--overwrite")
    assert "Note: tags.tif: Metadata Warning, tag 282 had too many entries" in loud.output
    quiet = tiny(tiff, "-o", tmp_path / "b.png", "-q")
    assert quiet.exit_code == 0 and quiet.output == ""


@pytest.mark.parametrize("fmt", FUZZ_FORMATS)
def test_no_mutation_of_any_format_escapes_as_anything_but_one_image_error(tmp_path, fmt):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dreamcli.errors import ImageError
    from dreamcli.io.images import read_image

    data = SAMPLES[fmt]
    path = tmp_path / f"fuzz.{fmt.lower()}"

    @settings(max_examples=40, deadline=None, database=None)
    @given(
        cut=st.integers(0, len(data)),
        flips=st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), max_size=4),
    )
    def decode(cut, flips):
        mutated = bytearray(data)
        for where, mask in flips:
            mutated[where] ^= mask
        path.write_bytes(bytes(mutated[:cut]))
        try:
            picture = read_image(path)
        except ImageError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
        else:
            assert picture.rgb.shape[0] == 3

    decode()


@pytest.mark.parametrize(
    "value",
    [7, 70000, (1, 2), b"\xff\xfe not text", "[" * 20_000 + "]" * 20_000, '{"settings": ' * 3000],
    ids=["short", "long", "tuple", "bytes", "deep-list", "deep-object"],
)
def test_read_metadata_never_raises_on_an_exif_description(tmp_path, value):
    picture = jpeg_with_description(tmp_path / "odd.jpg", value)
    assert read_metadata(picture) is None


def test_read_metadata_ignores_deep_and_huge_png_text(tmp_path):
    assert read_metadata(png_with_text(tmp_path / "deep.png", "[" * 100_000)) is None
    big = dream_metadata(pad="x" * (2 << 20))
    assert read_metadata(png_with_text(tmp_path / "big.png", big)) is None
    assert read_metadata(png_with_text(tmp_path / "ok.png", dream_metadata())) is not None


def test_reading_metadata_raises_no_warning(tmp_path):
    picture = tmp_path / "odd.jpg"
    save_photo(picture, 40, 32, exif=exif_description(5, 2, struct.pack("<IIII", 1, 2, 3, 4)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_metadata(picture) is None
    assert caught == []


def test_quiet_leaves_only_error_lines_on_stderr_even_from_libtiff(tmp_path, weights_file):
    folder = photos_in(tmp_path / "in", "ok.png")
    save_photo(folder / "odd.jpg", 40, 32, exif=exif_description(5, 2, struct.pack("<IIII", 1, 2, 3, 4)))
    _lzw_tiff_damaged(folder / "bad.tif")
    argv = [folder, "-o", tmp_path / "out", "--weights", weights_file, *TINY, "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "dreamcli", *map(str, argv)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "bad.tif" in lines[0], done.stderr


def test_a_library_warning_is_a_note_or_nothing_under_quiet(capsys):
    from dreamcli.cli.display import Display

    for quiet, text in ((True, "said under -q"), (False, "said aloud")):
        with Display(quiet, False, False):
            warnings.warn_explicit(text, UserWarning, "/usr/lib/python3/site-packages/PIL/x.py", 7)
    err = capsys.readouterr().err
    assert err == "Note: said aloud\n"


@FUZZ
@given(text=metadata_text, itxt=st.booleans())
def test_png_text_chunks_never_break_reading_or_the_cli(text, itxt):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in").mkdir()
        picture = png_with_text(Path(tmp) / "in" / "fuzz.png", text, itxt)
        data = read_metadata(picture)
        assert data is None or isinstance(data.get("settings"), dict)
        through_the_cli(picture)


@FUZZ
@given(field=exif_fields, text=metadata_text)
def test_exif_descriptions_of_any_type_never_break_reading_or_the_cli(field, text):
    kind, count, payload = field
    if kind == 2:  # ASCII: give it the text too, NUL-terminated
        payload = text.encode("utf-8")[:2000] + b"\0"
        count = len(payload)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in").mkdir()
        picture = Path(tmp) / "in" / "fuzz.jpg"
        save_photo(picture, 32, 32, exif=exif_description(kind, count, payload))
        read_metadata(picture)
        through_the_cli(picture)


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("zero-byte", "not an image Pillow can read"),
        ("text-as-jpg", "not an image Pillow can read"),
        ("truncated-jpeg", "damaged or truncated"),
        ("truncated-png", "damaged or truncated"),
        ("bad-crc-png", "damaged or truncated"),
        ("bomb", "decompression bombs"),
    ],
)
def test_broken_files_fail_with_one_line_and_exit_1(tiny_quiet, tmp_path, kind, fragment):
    bad = build(kind, tmp_path)
    before = bad.read_bytes()
    result = tiny_quiet(bad, "-o", tmp_path / "out.png")
    assert result.exit_code == 1
    one_error_line(result, bad.name, fragment)
    assert not (tmp_path / "out.png").exists()
    assert bad.read_bytes() == before
    assert [p for p in os.listdir(tmp_path) if p.endswith(".part")] == []


def test_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = corpus.bomb_png(tmp_path / "bomb.png")
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels were decoded"))
    with pytest.raises(ImageError, match="decompression bombs"):
        read_image(bomb, max_size=64)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations(tmp_path, orientation):
    path = corpus.exif_rotated(tmp_path / f"o{orientation}.jpg", orientation)
    upright = Image.open(path)
    from PIL import ImageOps

    expected = np.asarray(ImageOps.exif_transpose(upright).convert("RGB"), dtype=np.float32) / 255
    pic = read_image(path)
    rotated = orientation >= 5
    assert pic.size == ((32, 48) if rotated else (48, 32))
    got = pic.rgb.permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() < 1e-6
    # The red marker is somewhere in a corner, never in the middle.
    red = (got[..., 0] > 0.8) & (got[..., 1] < 0.3)
    ys, xs = np.nonzero(red)
    assert (
        len(ys)
        and (ys.max() < 8 or ys.min() > got.shape[0] - 9)
        and (xs.max() < 8 or xs.min() > got.shape[1] - 9)
    )


def test_odd_modes_all_dream(tiny_quiet, tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(corpus.photo_array(40, 32)).convert("CMYK").save(cmyk)
    rgba = tmp_path / "rgba.png"
    alpha = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (32, 1))
    Image.fromarray(np.dstack([corpus.photo_array(40, 32), alpha]), "RGBA").save(rgba)
    pal = tmp_path / "pal.png"
    Image.fromarray(corpus.photo_array(40, 32)).convert("P").save(pal, transparency=3)
    files = [
        cmyk,
        rgba,
        pal,
        corpus.sixteen_bit_grey(tmp_path / "g16.png"),
        corpus.animated_gif(tmp_path / "anim.gif"),
    ]
    result = tiny_quiet(*files, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == sorted(f"{f.stem}_dream.png" for f in files)
    kept = np.asarray(Image.open(out / "rgba_dream.png"))
    assert kept.shape == (32, 40, 4) and np.array_equal(kept[..., 3], alpha)
    assert Image.open(out / "pal_dream.png").mode == "RGBA"


def test_animated_gif_says_it_dreams_the_first_frame(weights_file, tmp_path):
    gif = corpus.animated_gif(tmp_path / "anim.gif")
    args = [str(gif), "--weights", str(weights_file), *TINY]  # not quiet: its note is the point
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    assert "anim.gif has 3 frames; dreaming the first" in result.output


def test_unreadable_file(tiny_quiet, tmp_path, monkeypatch):
    src = save_photo(tmp_path / "secret.png", 40, 32)
    real_open = Image.open

    def denied(fp, *args, **kwargs):
        if str(fp) == str(src):
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    # Tests run as root, where chmod 000 does not stop reading: simulate the refusal.
    monkeypatch.setattr(Image, "open", denied)
    result = tiny_quiet(src, "-o", tmp_path / "o.png")
    assert result.exit_code == 1
    one_error_line(result, "secret.png cannot be read (permission denied)")


def test_kill_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "dream.png"
    write_image(target, torch.rand(3, 16, 16))
    before = target.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert target.read_bytes() == before
    Image.open(target).load()


def test_full_disk_leaves_nothing_behind(tmp_path, monkeypatch):
    def enospc(self, fp, *args, **kwargs):
        fp.write(b"x" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", enospc)
    with pytest.raises(ImageError, match="No space left on device"):
        write_image(tmp_path / "new.png", torch.rand(3, 8, 8))
    assert os.listdir(tmp_path) == []
