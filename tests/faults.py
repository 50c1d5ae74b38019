"""Helpers of the tests of bad input and faults: damaged files, odd metadata, hostile presets,
processes to signal; shared by the module test files."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import corpus
import pytest
import torch
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from dreamcli.cli import main
from dreamcli.config import FIELDS, Settings
from dreamcli.io.metadata import EXIF_IMAGE_DESCRIPTION, METADATA_KEY

from conftest import TINY, save_photo  # noqa: F401 - TINY: the tests take it from here too

# This machine's name as dreamcli writes it into its temporaries' names (imageio._HOST).
HOST = "".join(c if c.isalnum() or c in "_-" else "_" for c in socket.gethostname())[:16]


POSIX = pytest.mark.skipif(os.name != "posix", reason="needs POSIX files and signals")


def photos(folder: Path, *names: str, size=(40, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        fmt = "JPEG" if ".jp" in name else "PNG"  # by content: some test names end oddly
        save_photo(folder / name, *size, seed=i, format=fmt)
    return folder


def errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


# A batch of 30 photos at these settings is still going when its first picture is out: what
# the signal tests interrupt.
INTERRUPTIBLE = ("--octaves", "1", "--iterations", "3", "--layer", "inception_4c", "--seed", "0")


def dream_process(*args, **popen):
    """``dream ARGS`` as a real process (for signals, pipes and blocking files)."""
    command = [sys.executable, "-m", "dreamcli", *[str(a) for a in args]]
    return subprocess.Popen(command, text=True, **popen)


# `dream ARGS`, its third dream held until the file RELEASE exists: the first file's line is
# out by then, so a test can see the run still going, however slow the machine.
HELD_DREAM = """
import sys, time
from pathlib import Path
import dreamcli.jobs.batch
from dreamcli.cli import main
real, calls, release = dreamcli.jobs.batch.dream, [], Path(sys.argv.pop(1))
def held(*args, **kwargs):
    calls.append(1)
    deadline = time.monotonic() + 120
    while len(calls) == 3 and not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return real(*args, **kwargs)
dreamcli.jobs.batch.dream = held
main(prog_name="dream")
"""


FUZZ_FORMATS = ("PNG", "JPEG", "GIF", "TIFF", "WEBP", "BMP", "PPM", "TGA")


def _sample(fmt: str) -> bytes:
    """A small valid file of ``fmt``; GIF and TIFF with three frames, as partial downloads cut them."""
    import io

    from conftest import photo_array

    frames = [Image.fromarray(photo_array(24, 16, seed=i)) for i in range(3)]
    buffer = io.BytesIO()
    if fmt in ("GIF", "TIFF"):
        frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:])
    else:
        frames[0].save(buffer, format=fmt)
    return buffer.getvalue()


SAMPLES = {fmt: _sample(fmt) for fmt in FUZZ_FORMATS}


def clean(result, code):
    """The run ended with ``code``, without a traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.output


def photos_in(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        save_photo(folder / name, 40, 32, format="PNG")
    return folder


def png_with_text(path: Path, text: str, itxt: bool = False) -> Path:
    """A PNG whose ``dreamcli`` chunk holds ``text``: tEXt (Latin-1) or iTXt (UTF-8)."""
    info = PngImagePlugin.PngInfo()
    if itxt:
        info.add_itxt(METADATA_KEY, text)
    else:
        info.add_text(METADATA_KEY, text.encode("latin-1", "replace"))
    return save_photo(path, 40, 32, pnginfo=info)


def exif_description(kind: int, count: int, payload: bytes) -> bytes:
    """Raw EXIF whose ImageDescription has any TIFF type (Pillow would write text only)."""
    field, extra = (payload.ljust(4, b"\0"), b"") if len(payload) <= 4 else (struct.pack("<I", 26), payload)
    entry = struct.pack("<HHI", EXIF_IMAGE_DESCRIPTION, kind, count) + field
    return b"Exif\0\0II*\0" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0) + extra


def jpeg_with_description(path: Path, value) -> Path:
    if isinstance(value, str):
        raw = exif_description(2, len(value) + 1, value.encode() + b"\0")
    elif isinstance(value, bytes):
        raw = exif_description(7, len(value), value)
    elif isinstance(value, tuple):  # a RATIONAL
        raw = exif_description(5, 1, struct.pack("<II", *value))
    else:
        short = value < 65536
        raw = exif_description(3 if short else 4, 1, struct.pack("<H" if short else "<I", value))
    save_photo(path, 40, 32, exif=raw)
    return path


def dream_metadata(**extra) -> str:
    settings = Settings(layers=["conv2/3x3"], octaves=1, iterations=1, seed=0).to_dict()
    return json.dumps({"settings": settings, **extra})


def _save_state(net, path: Path, change) -> Path:
    state = {k: change(k, v) for k, v in net.state_dict().items()}
    torch.save(state, path)
    return path


def _claim_file(output: Path) -> Path:
    return output.with_name(f".{output.name}.claim")


def _lzw_tiff_damaged(path: Path) -> Path:
    save_photo(path, 40, 32, compression="tiff_lzw")
    data = bytearray(path.read_bytes())
    for i in range(200, 400):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


keys = st.sampled_from([*FIELDS, "layers", "model", "description", "preset", "settings"]) | st.text(
    max_size=8
)


# Text a picture may carry: anything, JSON of any shape, or dreamcli's own shape with odd values.
metadata_text = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.dictionaries(keys, json_values, max_size=5).map(lambda s: json.dumps({"settings": s, "preset": "x"})),
    st.integers(1, 3000).map(lambda n: "[" * n),
)


# An EXIF ImageDescription of any TIFF type: BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SLONG...
exif_fields = st.tuples(
    st.sampled_from([1, 2, 3, 4, 5, 7, 9, 10, 11, 12]),
    st.integers(0, 2) | st.integers(0, 64),  # mostly one value: the shape a reader meets
    st.binary(min_size=16, max_size=64),
)


# A preset: YAML text of any shape, or a mapping of known keys to any values.
preset_text = st.one_of(
    st.text(max_size=300),
    st.dictionaries(keys, json_values, max_size=6).map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.sampled_from(
        ["a: &a [1]\nb: *a\n", "layers: " + "[" * 5000, "octaves: !!python/object:os.system {}\n"]
    ),
)


def cli(*args) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def through_the_cli(picture: Path) -> None:
    """The picture in a folder walk (its output exists: no model is loaded) and as a preset."""
    out = picture.parent.parent / "out"
    out.mkdir(exist_ok=True)
    save_photo(out / f"{picture.stem}_dream.png", 32, 32)
    cli(picture.parent, "-o", out, "-q")
    cli("--preset", picture, "--show-settings")


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
