"""Reading and writing images with Pillow: any common mode in, atomic writes out.

Images travel as float32 tensors in [0, 1]: RGB (3, H, W), and alpha (1, H, W)
when the input has one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from dreamcli.errors import ImageError, SettingsError
from dreamcli.formats import FORMATS, KEEPS_ALPHA

METADATA_KEY = "dreamcli"  # PNG text chunk with the settings as JSON
EXIF_IMAGE_DESCRIPTION = 0x010E  # TIFF/EXIF tag 270, used for JPEG, WebP and TIFF


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask is process-wide and writes happen in a worker thread.
FILE_MODE = 0o666 & ~_current_umask()


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


def output_format(path: str | Path) -> str:
    """The Pillow format for an output path, or an error that lists the choices."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        choices = ", ".join(sorted({s.lstrip(".") for s in FORMATS}))
        raise ImageError(
            f"cannot write {path}: unknown image extension {suffix or '(none)'!r}; use one of {choices}"
        )
    return FORMATS[suffix]


def check_output(path: str | Path) -> None:
    """``output_format`` as a usage error (exit 2), for outputs checked before any work."""
    try:
        output_format(path)
    except ImageError as exc:
        hint = "; to write into a folder, end the path with /" if not Path(path).suffix else ""
        raise SettingsError(f"{exc}{hint}") from None


def read_image(path: str | Path, max_size: int | None = None) -> Picture:
    """Decode ``path``: EXIF rotation applied, any mode converted, long side capped at ``max_size``."""
    path = Path(path)
    with _open(path) as img:
        notes = []
        if getattr(img, "n_frames", 1) > 1:
            notes.append(f"{path.name} has {img.n_frames} frames; dreaming the first")
        if max_size is not None and img.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that is still above
            # max_size: a huge photo never has to be decoded at full size.
            img.draft("RGB", (max_size, max_size))
        try:
            img = ImageOps.exif_transpose(img)
            rgb, alpha = _to_arrays(img)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"cannot read {path}: the file is damaged or truncated ({exc})") from None
    rgb_t = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    alpha_t = torch.from_numpy(alpha)[None] if alpha is not None else None
    if max_size is not None and max(rgb_t.shape[-2:]) > max_size:
        rgb_t, alpha_t = (
            shrink(rgb_t, max_size),
            (shrink(alpha_t, max_size) if alpha_t is not None else None),
        )
    return Picture(rgb_t, alpha_t, tuple(notes))


@contextlib.contextmanager
def _open(path: Path):
    if path.is_dir():
        raise ImageError(
            f"{path} is a folder, not an image; give a file (or pass several inputs for batch mode)"
        )
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except FileNotFoundError:
        raise ImageError(f"{path} does not exist; check the path") from None
    except PermissionError:
        raise ImageError(f"{path} cannot be read (permission denied); check its permissions") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = Image.MAX_IMAGE_PIXELS / 1e6
        raise ImageError(
            f"{path} declares more than {limit:.0f} megapixels, Pillow's limit against decompression bombs; "
            "shrink it with another tool first"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path} is not an image Pillow can read (empty, damaged, or another kind of file)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read {path}: the file is damaged or truncated ({exc})") from None
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
    fmt = output_format(path)
    write_pil(path, to_pil(rgb, alpha if fmt in KEEPS_ALPHA else None), metadata)


def write_pil(path: str | Path, image: Image.Image, metadata: dict[str, Any] | None = None) -> None:
    """``write_image`` for a Pillow image (contact sheets, heat maps)."""
    path = Path(path)
    fmt = output_format(path)
    if fmt not in KEEPS_ALPHA and image.mode != "RGB":
        image = image.convert("RGB")
    options = _metadata_options(fmt, metadata) if metadata else {}
    if fmt == "JPEG":
        options["quality"] = 95

    def save(handle) -> None:
        image.save(handle, format=fmt, **options)

    atomic_write(path, save)


def atomic_write(path: str | Path, write: Callable[[Any], None], suffix: str = ".part") -> None:
    """Call ``write(file)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    A kill at any moment leaves either the old file (or none) or the whole new
    one; on an error the temporary file is removed and an ImageError names the path.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed or removed
            dir=folder, prefix=f".{path.name}.", suffix=suffix, delete=False
        )
    except FileNotFoundError:
        raise ImageError(f"cannot write {path}: the folder {folder} does not exist") from None
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc} in {folder}") from None
    temp = Path(handle.name)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, FILE_MODE)  # mkstemp makes 0600; a normal file honours the umask
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def _metadata_options(fmt: str, metadata: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(metadata, sort_keys=True)
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(METADATA_KEY, text)
        info.add_text("Software", f"dreamcli {metadata.get('version', '')}".strip())
        return {"pnginfo": info}
    exif = Image.Exif()
    exif[EXIF_IMAGE_DESCRIPTION] = text
    return {"exif": exif.tobytes()}


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The settings a dreamcli image was made with, or None."""
    with Image.open(path) as img:
        text = img.info.get(METADATA_KEY) or img.getexif().get(EXIF_IMAGE_DESCRIPTION)
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
