"""Reading and writing images with Pillow: any common mode in, atomic writes out.

Images travel as float32 tensors in [0, 1]: RGB (3, H, W), and alpha (1, H, W)
when the input has one.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from dreamcli.errors import ImageError, describe
from dreamcli.io.atomic import atomic_write
from dreamcli.io.formats import KEEPS_ALPHA, file_problem, output_format
from dreamcli.io.metadata import read_metadata, save_options

__all__ = [
    "Picture",
    "read_image",
    "read_metadata",
    "shrink",
    "to_pil",
    "write_image",
    "write_pil",
]


@dataclass
class Picture:
    """A decoded image: RGB in [0, 1], optional alpha, and what was done to it."""

    rgb: torch.Tensor
    alpha: torch.Tensor | None = None
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), Pillow's order."""
        return self.rgb.shape[-1], self.rgb.shape[-2]


def read_image(path: str | Path, max_size: int | None = None) -> Picture:
    """Decode ``path``: EXIF rotation applied, any mode converted, long side capped at ``max_size``.

    Every problem with the file, whatever the decoder raises, is one ImageError
    that names the file; Pillow's warnings about it become the picture's notes.
    """
    return fit(decode_image(path, max_size), max_size)


def decode_image(path: str | Path, max_size: int | None = None) -> Picture:
    """``read_image`` without the final resize: Pillow and NumPy only, no torch kernel.

    For read-ahead threads.  A torch operation in a second thread starts a second
    OpenMP team whose threads compete with the dreaming thread's: on 2 cores it
    made every dream in a batch ~50 % slower (benchmarks/README.md, "I/O threads").
    ``fit`` finishes the picture on the dreaming thread.
    """
    path = Path(path)
    quiet_libtiff()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            rgb, alpha, notes = _decode(path, max_size)
        except ImageError:
            raise
        except MemoryError:
            raise ImageError(f"cannot read {path}: it is too large to decode in the memory free") from None
        except Exception as exc:  # truncated multi-frame files raise IndexError, struct.error, TypeError...
            raise ImageError(
                f"cannot read {path}: the file is damaged or truncated ({describe(exc)})"
            ) from None
    notes += [f"{path.name}: {warning.message}" for warning in caught]
    rgb_t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))  # no copy by torch
    alpha_t = torch.from_numpy(alpha)[None] if alpha is not None else None
    return Picture(rgb_t, alpha_t, tuple(notes))


@functools.cache
def quiet_libtiff() -> None:
    """Silence libtiff's own error messages (``tempfile.tif: Using code not yet in table.``),
    which it writes to the process's stderr, below Python: Pillow still raises for a damaged
    TIFF, and dreamcli says so in one line.  Its warnings go the same way.

    The libtiff that Pillow loaded is found in ``/proc/self/maps`` (Linux); elsewhere, or if
    anything is not as expected, nothing is changed.
    """
    import ctypes

    from PIL import _imaging  # noqa: F401 - loads libtiff

    with contextlib.suppress(Exception), open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        libraries = {line.split()[-1] for line in maps if "libtiff" in line and "/" in line}
        for library in libraries:
            lib = ctypes.CDLL(library)
            for handler in (lib.TIFFSetErrorHandler, lib.TIFFSetWarningHandler):
                handler.restype, handler.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
                handler(None)  # libtiff: no handler, no message


def fit(picture: Picture, max_size: int | None) -> Picture:
    """The picture with its long side at most ``max_size`` (antialiased), else as it is."""
    if max_size is None or max(picture.rgb.shape[-2:]) <= max_size:
        return picture
    alpha = shrink(picture.alpha, max_size) if picture.alpha is not None else None
    return Picture(shrink(picture.rgb, max_size), alpha, picture.notes)


def _decode(path: Path, max_size: int | None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    with _open(path) as img:
        notes = []
        if getattr(img, "n_frames", 1) > 1:
            notes.append(f"{path.name} has {img.n_frames} frames; dreaming the first")
        if max_size is not None and img.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that is still above
            # max_size: a huge photo never has to be decoded at full size.
            img.draft("RGB", (max_size, max_size))
        img = ImageOps.exif_transpose(img)
        rgb, alpha = _to_arrays(img)
    return rgb, alpha, notes


# What an input's problem adds after ``file_problem``'s words: what to do.
_INPUT_FIX = {
    "does not exist": "; check the path",
    "is a folder": ", not an image; give a file (or pass several inputs for batch mode)",
}


def _check_regular(path: Path) -> None:
    """Only regular files are images (``file_problem``)."""
    problem = file_problem(path)
    if problem is not None:
        fix = _INPUT_FIX.get(problem, "; only regular files are images" if "regular" in problem else "")
        raise ImageError(f"{path} {problem}{fix}")


@contextlib.contextmanager
def _open(path: Path):
    _check_regular(path)
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise ImageError(f"{path} does not exist; check the path") from None
    except PermissionError:
        raise ImageError(f"{path} cannot be read (permission denied); check its permissions") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow only warns between 1x and 2x its pixel limit; read_image refuses those too.
        limit = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageError(
            f"{path} declares more than {limit:.0f} megapixels, Pillow's limit against decompression bombs; "
            "shrink it with another tool first"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path} is not an image Pillow can read (empty, damaged, or another kind of file)"
        ) from None
    with img:
        if img.format == "PNG":
            _verify(path)
        yield img


def _verify(path: Path) -> None:
    """Check a PNG's chunk checksums, which decoding alone does not (Pillow's verify needs its own open)."""
    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read {path}: the file is damaged or truncated ({exc})") from None


def _to_arrays(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) RGB and optional (H, W) alpha, float32 in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey (PNG); Pillow's own convert("RGB") would clip it to 8 bits badly.
        grey = np.asarray(img, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2), None
    if img.mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float32) / 255.0, 0, 1)
        return np.repeat(grey[..., None], 3, axis=2), None
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    img = img.convert("RGBA" if has_alpha else "RGB")
    pixels = np.asarray(img, dtype=np.float32) / 255.0
    if has_alpha:
        return np.ascontiguousarray(pixels[..., :3]), np.ascontiguousarray(pixels[..., 3])
    return pixels, None


def shrink(image: torch.Tensor, max_size: int) -> torch.Tensor:
    """Antialiased bicubic resize so that the long side is ``max_size``: (C, H, W) in and out."""
    height, width = image.shape[-2:]
    scale = max_size / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = F.interpolate(image[None], size=size, mode="bicubic", antialias=True, align_corners=False)
    return small[0].clamp(0.0, 1.0)


def to_pil(rgb: torch.Tensor, alpha: torch.Tensor | None = None) -> Image.Image:
    """Tensor(s) in [0, 1] -> an 8-bit RGB or RGBA Pillow image."""
    channels = [rgb] if alpha is None else [rgb, alpha.to(rgb.device)]
    data = torch.cat(channels).detach().float().cpu().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return Image.fromarray(data.permute(1, 2, 0).numpy(), "RGB" if alpha is None else "RGBA")


def write_image(
    path: str | Path,
    rgb: torch.Tensor,
    alpha: torch.Tensor | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``.

    A kill at any moment leaves either the old file (or none) or the whole new
    one, never a half-written image.
    """
    write_pil(path, output_picture(path, rgb, alpha), metadata)


def output_picture(path: str | Path, rgb: torch.Tensor, alpha: torch.Tensor | None = None) -> Image.Image:
    """The 8-bit picture ``write_image`` would encode for ``path`` (alpha only where the format
    keeps it): made on the dreaming thread, so a writer thread runs no torch kernel."""
    return to_pil(rgb, alpha if output_format(path) in KEEPS_ALPHA else None)


def write_pil(
    path: str | Path, image: Image.Image, metadata: dict[str, Any] | None = None, run: str | None = None
) -> None:
    """``write_image`` for a Pillow image (contact sheets, heat maps); ``run`` (8 hex digits)
    names the cluster run whose worker writes it, in the temporary's name."""
    path = Path(path)
    fmt = output_format(path)
    limit = MAX_SIDE.get(fmt)
    if limit is not None and max(image.size) > limit:
        raise ImageError(
            f"cannot write {path}: {fmt} pictures are at most {limit} px a side and this one is "
            f"{image.width}x{image.height}; use --max-size {limit} or write a .png"
        )
    if fmt not in KEEPS_ALPHA and image.mode != "RGB":
        image = image.convert("RGB")
    options = save_options(fmt, metadata) if metadata else {}
    if fmt == "JPEG":
        options["quality"] = 95

    def save(handle) -> None:
        image.save(handle, format=fmt, **options)

    atomic_write(path, save, suffix=f".{run}.part" if run else ".part")


# Encoders' size limits (libwebp: 16383; JPEG: 65535).
MAX_SIDE = {"WEBP": 16383, "JPEG": 65535}


def label_font(size: int):
    """The font of labels on sheets and atlases: Pillow's bundled scalable one, where FreeType is."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def fit_label(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """Shorten a label with an ellipsis until it fits ``width`` pixels."""
    while len(text) > 2 and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…"
    return text
