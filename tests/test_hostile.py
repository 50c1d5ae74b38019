"""Hostile inputs and faults: one clear line, a documented exit code, nothing lost."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import corpus
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dreamcli.cli import main
from dreamcli.errors import ImageError
from dreamcli.io.images import read_image, write_image

from conftest import save_photo

TINY = ["--octaves", "1", "--iterations", "1", "--layer", "conv2/3x3", "--seed", "0", "-q"]


@pytest.fixture
def run(weights_file):
    def invoke(*args, tiny=True, weights=True):
        argv = [str(a) for a in args] + (["--weights", str(weights_file)] if weights else [])
        argv += TINY if tiny else ["-q"]
        return CliRunner().invoke(main, argv, catch_exceptions=True)

    return invoke


def one_error_line(result, *fragments):
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def build(kind: str, folder: Path) -> Path:
    source = save_photo(folder / "source.jpg", 120, 90)
    png = save_photo(folder / "source.png", 120, 90)
    return {
        "zero-byte": lambda: corpus.written(folder / "empty.jpg", b""),
        "text-as-jpg": lambda: corpus.written(folder / "text.jpg", b"hello, I am text"),
        "truncated-jpeg": lambda: corpus.truncated(folder / "cut.jpg", source, 0.4),
        "truncated-png": lambda: corpus.truncated(folder / "cut.png", png, 0.5),
        "bad-crc-png": lambda: corpus.bad_crc_png(folder / "crc.png"),
        "bomb": lambda: corpus.bomb_png(folder / "bomb.png"),
    }[kind]()


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
def test_broken_files_fail_with_one_line_and_exit_1(run, tmp_path, kind, fragment):
    bad = build(kind, tmp_path)
    before = bad.read_bytes()
    result = run(bad, "-o", tmp_path / "out.png")
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


@pytest.mark.parametrize(("width", "height"), [(1, 1), (7, 3)])
def test_tiny_images_get_a_too_small_error(run, tmp_path, width, height):
    src = tmp_path / f"tiny{width}x{height}.png"
    Image.new("RGB", (width, height), (10, 200, 30)).save(src)
    result = run(src, "--layer", "inception_4c", "--iterations", "1", tiny=False)
    assert result.exit_code == 1
    one_error_line(result, src.name, f"{width}x{height} px, too small", "at least")


def test_extreme_aspect_ratio_adapts_the_octave_plan(run, tmp_path):
    src = tmp_path / "strip.png"
    Image.fromarray(np.tile(np.arange(16, dtype=np.uint8)[:, None, None] * 8, (1, 2000, 3))).save(src)
    result = run(src, "--layer", "inception_4c", "--iterations", "1", "--octaves", "4", tiny=False)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "strip_dream.png").size == (2000, 16)


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


def test_odd_modes_all_dream(run, tmp_path):
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
    result = run(*files, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == sorted(f"{f.stem}_dream.png" for f in files)
    kept = np.asarray(Image.open(out / "rgba_dream.png"))
    assert kept.shape == (32, 40, 4) and np.array_equal(kept[..., 3], alpha)
    assert Image.open(out / "pal_dream.png").mode == "RGBA"


def test_animated_gif_says_it_dreams_the_first_frame(weights_file, tmp_path):
    gif = corpus.animated_gif(tmp_path / "anim.gif")
    args = [str(gif), "--weights", str(weights_file), *TINY[:-1]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    assert "anim.gif has 3 frames; dreaming the first" in result.output


def test_names_with_spaces_and_non_ascii(run, tmp_path):
    folder = tmp_path / "mes photos d'été"
    folder.mkdir()
    src = save_photo(folder / "café crème ☕.png", 40, 32)
    result = run(src)
    assert result.exit_code == 0, result.output
    assert (folder / "café crème ☕_dream.png").is_file()


def test_folder_where_a_file_is_expected(run, tmp_path):
    src = save_photo(tmp_path / "a.png", 40, 32)
    (tmp_path / "dir.pth").mkdir()
    one_error_line(run(src, "--weights", tmp_path / "dir.pth", weights=False), "dir.pth is a folder")
    (tmp_path / "dir.yaml").mkdir()
    result = run(src, "--preset", tmp_path / "dir.yaml")
    assert result.exit_code == 2
    one_error_line(result, "dir.yaml is a folder")


def test_unreadable_file(run, tmp_path, monkeypatch):
    src = save_photo(tmp_path / "secret.png", 40, 32)
    real_open = Image.open

    def denied(fp, *args, **kwargs):
        if str(fp) == str(src):
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    # Tests run as root, where chmod 000 does not stop reading: simulate the refusal.
    monkeypatch.setattr(Image, "open", denied)
    result = run(src, "-o", tmp_path / "o.png")
    assert result.exit_code == 1
    one_error_line(result, "secret.png cannot be read (permission denied)")


def test_output_folder_that_cannot_be_written(run, tmp_path, monkeypatch):
    src = save_photo(tmp_path / "a.png", 40, 32)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")
    result = run(src, save_photo(tmp_path / "b.png", 40, 32), "-o", blocker / "out")
    assert result.exit_code == 1
    assert result.output.count("Error:") == 2 and "cannot create" in result.output
    import dreamcli.io.atomic

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(dreamcli.io.atomic.os, "replace", read_only)
    result = run(src, "-o", tmp_path / "ro.png")
    assert result.exit_code == 1
    one_error_line(result, "cannot write", "ro.png", "Permission denied")
    assert [p for p in os.listdir(tmp_path) if ".part" in p] == []


def test_ctrl_c_during_a_single_image(run, tmp_path, monkeypatch):
    src = save_photo(tmp_path / "a.png", 40, 32)
    import dreamcli.jobs.batch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dreamcli.jobs.batch, "dream", interrupted)
    result = run(src)
    assert result.exit_code == 130
    assert os.listdir(tmp_path) == ["a.png"]


KILLED_WRITER = """
import sys, time, torch
from PIL import Image
from dreamcli.io.images import write_image
real_save = Image.Image.save
def slow_save(self, fp, *args, **kwargs):
    fp.write(b"partial bytes")
    fp.flush()
    print("writing", flush=True)
    time.sleep(60)
Image.Image.save = slow_save
write_image(sys.argv[1], torch.rand(3, 16, 16))
"""


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


# Values on both sides of every range, plus nonsense.
numbers = st.one_of(
    st.integers(-3, 30), st.floats(-2, 5), st.sampled_from([float("nan"), float("inf"), 1e300])
)
flag_values = st.fixed_dictionaries(
    {},
    optional={
        "--octaves": st.integers(-2, 25),
        "--octave-scale": numbers,
        "--iterations": st.integers(-2, 2),
        "--step-size": numbers,
        "--jitter": st.integers(-5, 5000),
        "--max-size": st.integers(-5, 80),
        "--seed": st.integers(-5, 2**33),
        "--layer": st.sampled_from(
            [
                "inception_3a",
                "conv2-3x3",
                "inception_4c[0-3]:2",
                "inception_3b[999]",
                "x[",
                "pool5",
                ":",
                "a:0",
            ]
        ),
        "--tile-size": st.integers(-1, 100),
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=flag_values)
def test_random_settings_never_give_a_traceback(weights_file, tmp_path, values):
    src = tmp_path / "p.png"
    if not src.exists():
        save_photo(src, 40, 32)
    args = [str(src), "-o", str(tmp_path / "o.png"), "--overwrite", "--weights", str(weights_file), "-q"]
    for flag, value in values.items():
        args += [flag, str(value)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    if result.exit_code:
        assert "Error:" in result.output, result.output
