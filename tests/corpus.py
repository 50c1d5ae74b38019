"""Hostile and odd input files, made by code (no binary blobs in git)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import photo_array, save_photo


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG whose header claims an enormous image (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )
    return path


def bad_crc_png(path: Path) -> Path:
    save_photo(path, 40, 32)
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    data[idat + 4 + length] ^= 0xFF  # flip a byte of the IDAT chunk's CRC
    path.write_bytes(bytes(data))
    return path


def truncated(path: Path, source: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def exif_rotated(path: Path, orientation: int) -> Path:
    """A 48x32 photo with a red marker at its top-left pixel block, tagged with an orientation."""
    pixels = photo_array(48, 32)
    pixels[:6, :6] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    return path


def animated_gif(path: Path, frames: int = 3) -> Path:
    images = [Image.fromarray(photo_array(40, 32, seed=i)).convert("P") for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def sixteen_bit_grey(path: Path) -> Path:
    grey = (photo_array(40, 32)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey).save(path)
    return path


def synthetic_video(
    path: Path,
    frames: int = 6,
    size: tuple[int, int] = (64, 48),
    fps: int = 12,
    audio_seconds: float | None = None,
) -> Path:
    """A tiny H.264 MP4 of a bright square moving right, with a 440 Hz AAC tone."""
    import av

    width, height = size
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for i in range(frames):
            pixels = photo_array(width, height, seed=1).copy()
            pixels[10:26, 4 + 4 * i : 20 + 4 * i] = (250, 240, 60)
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        seconds = audio_seconds if audio_seconds is not None else frames / fps
        samples = np.sin(2 * np.pi * 440 * np.arange(int(44100 * seconds)) / 44100).astype(np.float32)
        for start in range(0, len(samples), 1024):
            chunk = samples[start : start + 1024][None]
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = 44100
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path


def bad_tag_tiff(path: Path) -> Path:
    """A TIFF whose XResolution tag claims 3 values: Pillow warns 'had too many entries'."""
    Image.fromarray(photo_array(40, 32)).save(path, tiffinfo={282: 72.0, 283: 72.0, 296: 2})
    data = bytearray(path.read_bytes())
    entry = data.find(struct.pack("<HH", 282, 5))  # tag 282, type RATIONAL
    data[entry + 4 : entry + 8] = struct.pack("<I", 3)
    path.write_bytes(bytes(data))
    return path


def truncated_multiframe(path: Path, fmt: str, keep: float = 0.6) -> Path:
    """A 3-frame GIF or TIFF cut short, as a partial download leaves it."""
    frames = [Image.fromarray(photo_array(40, 32, seed=i)) for i in range(3)]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
