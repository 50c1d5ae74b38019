"""Animations: the infinite zoom, and dreaming every frame of a video.

Zoom: each dream is zoomed (and optionally rotated and panned) a little and
dreamed again, so the picture falls into its own dream; the previous frame is
the start of the next, so the sequence is smooth.

Video: each source frame is dreamed, starting from the frame plus the previous
frame's dreamed detail (dream - source), optionally warped along the optical
flow between the two source frames so that patterns stick to moving objects.
Dreamed frames are kept as PNGs beside the output until the video is encoded,
so an interrupted run resumes where it stopped; the audio track is copied.

Codecs come from the optional extra ``dreamcli[video]`` (PyAV for video,
OpenCV for optical flow); GIF and WebP need only Pillow.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dreamcli.config import Settings, refuse_picks
from dreamcli.engine.devices import memory_budget
from dreamcli.engine.octaves import dream
from dreamcli.errors import DreamError, ImageError, ImageTooLargeError
from dreamcli.events import FrameDone, Report, ignore
from dreamcli.io.atomic import atomic_write, remove_stale_parts
from dreamcli.io.formats import frame_names
from dreamcli.io.images import read_image, shrink, to_pil, write_image
from dreamcli.io.metadata import save_options
from dreamcli.jobs.requests import VideoRequest, ZoomRequest
from dreamcli.models import Loaded
from dreamcli.run_options import RunOptions


def require(module: str, purpose: str):
    """Import an optional dependency, or say which extra installs it."""
    try:
        return __import__(module)
    except ImportError:
        raise DreamError(
            f"{purpose} needs the video extra, which is not installed: pip install 'dreamcli[video]'"
        ) from None


# ---------------------------------------------------------------- zoom


def zoom_step(
    image: torch.Tensor, zoom: float, rotate: float = 0.0, pan: tuple[float, float] = (0, 0)
) -> torch.Tensor:
    """Zoom into the centre by ``zoom`` (1.05 = 5 %), rotate by ``rotate`` degrees, pan by pixels."""
    height, width = image.shape[-2:]
    angle = math.radians(rotate)
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    theta = torch.tensor(
        [[cos, -sin * height / width, 2 * pan[0] / width], [sin * width / height, cos, 2 * pan[1] / height]],
        dtype=image.dtype,
        device=image.device,
    )
    grid = F.affine_grid(theta[None], [1, *image.shape[-3:]], align_corners=False)
    return F.grid_sample(image[None], grid, mode="bicubic", padding_mode="reflection", align_corners=False)[
        0
    ].clamp(0, 1)


def zoom_frames(
    model: nn.Module,
    start: torch.Tensor,
    settings: Settings,
    frames: int,
    zoom: float,
    rotate: float = 0.0,
    pan: tuple[float, float] = (0.0, 0.0),
    *,
    options: RunOptions | None = None,
    report: Report = ignore,
) -> Iterator[torch.Tensor]:
    """Yield ``frames`` dreamed frames, each dreamed from the zoomed previous one."""
    # One seed for every frame: the jitter pattern stays steady, so nothing flickers
    # from frame to frame but what the zoom moves.
    steady = settings.seeded(steady=True)
    frame = start
    for _ in range(frames):
        frame = dream(model, frame, settings=steady, options=options, report=report)
        yield frame
        frame = zoom_step(frame, zoom, rotate, pan)


def write_animation(path: Path, frames: list[torch.Tensor], fps: float, metadata: dict | None = None) -> None:
    """GIF, WebP (Pillow) or MP4 (PyAV) by extension, or numbered PNGs when ``path`` is a folder.

    ``metadata`` (the settings) goes into each PNG, the GIF's comment, the WebP's
    EXIF or the MP4's comment.
    """
    suffix = path.suffix.lower()
    if suffix == "":
        path.mkdir(parents=True, exist_ok=True)
        for name, frame in zip(frame_names(len(frames)), frames, strict=True):
            write_image(path / name, frame, None, metadata)
        return
    if suffix == ".mp4":
        encode_mp4(path, (np.asarray(to_pil(f)) for f in frames), fps, metadata=metadata)
        return
    fmt = "GIF" if suffix == ".gif" else "WEBP"
    images = [to_pil(frame) for frame in frames]
    options = {"save_all": True, "append_images": images[1:], "duration": round(1000 / fps), "loop": 0}
    options.update(save_options(fmt, metadata) if metadata else {})
    if fmt == "WEBP":
        options["quality"] = 90
    atomic_write(path, lambda handle: images[0].save(handle, format=fmt, **options))


# ---------------------------------------------------------------- video


def encode_mp4(
    path: Path, frames, fps: float, audio_from: Path | None = None, metadata: dict | None = None
) -> None:
    """H.264 (yuv420p, even sizes) MP4 from RGB uint8 arrays, with ``audio_from``'s audio copied
    and ``metadata`` as JSON in the container's comment."""
    av = require("av", "writing MP4")
    from fractions import Fraction

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ImageError(f"cannot write {path}: there are no frames")
    height, width = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2  # yuv420p needs even sizes

    def write(handle) -> None:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(av.open(handle, "w", format="mp4"))
            if metadata:
                out.metadata["comment"] = json.dumps(metadata, sort_keys=True)
            src = stack.enter_context(av.open(str(audio_from))) if audio_from is not None else None
            # Every stream must exist before the first packet is written.
            audio_in = src.streams.audio[0] if src is not None and src.streams.audio else None
            audio_out = out.add_stream_from_template(audio_in) if audio_in is not None else None
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            rate = Fraction(fps).limit_denominator(1001)
            video = out.add_stream(codec, rate=rate)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            for index, array in enumerate((first, *frames)):
                frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(array[:height, :width]), format="rgb24"
                )
                frame.pts, frame.time_base = index, 1 / rate
                out.mux(video.encode(frame))
            out.mux(video.encode())
            if src is not None and audio_in is not None:
                for packet in src.demux(audio_in):
                    if packet.dts is not None:
                        packet.stream = audio_out
                        out.mux(packet)

    atomic_write(path, write)


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frames: int
    size: tuple[int, int]  # (width, height)
    has_audio: bool


def probe_video(path: Path) -> VideoInfo:
    av = require("av", "reading video")
    try:
        with av.open(str(path)) as src:
            if not src.streams.video:
                raise ImageError(f"{path} has no video stream")
            stream = src.streams.video[0]
            frames = stream.frames or sum(1 for _ in src.decode(stream))
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            return VideoInfo(rate, frames, (stream.width, stream.height), bool(src.streams.audio))
    except av.error.FFmpegError as exc:
        raise ImageError(f"cannot read video {path}: {ffmpeg_reason(exc)}") from None


def ffmpeg_reason(exc: Exception) -> str:
    """FFmpeg's words for an error, without PyAV's raw errno (``[Errno 1094995529] ...``)."""
    reason = str(getattr(exc, "strerror", None) or type(exc).__name__).strip().rstrip(".")
    return f"{reason[:160]}; is it a whole video file (MP4, MOV, MKV, WebM, AVI)?"


def decode_frames(path: Path, max_size: int | None = None) -> Iterator[torch.Tensor]:
    av = require("av", "reading video")
    try:
        with av.open(str(path)) as src:
            for frame in src.decode(src.streams.video[0]):
                rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255
                yield (
                    shrink(rgb, max_size) if max_size is not None and max(rgb.shape[-2:]) > max_size else rgb
                )
    except av.error.FFmpegError as exc:  # damaged after the part that probe_video read
        raise ImageError(f"cannot read video {path}: {ffmpeg_reason(exc)}") from None


def warp_detail(detail: torch.Tensor, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Move ``detail`` (dreamed on ``previous``) along the optical flow to ``current`` (Farneback)."""
    cv2 = require("cv2", "--flow")

    def grey(img: torch.Tensor) -> np.ndarray:
        return (img.mean(0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)

    # Flow from the current frame back to the previous one: where each pixel came from.
    # Parameters are OpenCV's documented example values (pyramid 0.5, 3 levels, window 15).
    flow = cv2.calcOpticalFlowFarneback(grey(current), grey(previous), None, 0.5, 3, 15, 3, 5, 1.2, 0)
    height, width = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    maps = (xs + flow[..., 0], ys + flow[..., 1])
    planes = [
        cv2.remap(c, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT) for c in detail.cpu().numpy()
    ]
    return torch.from_numpy(np.stack(planes)).to(detail)


def dream_video(
    model: nn.Module,
    source: Path,
    output: Path,
    settings: Settings,
    blend: float = 0.5,
    flow: bool = False,
    *,
    options: RunOptions | None = None,
    report: Report = ignore,
    metadata: dict | None = None,
) -> VideoInfo:
    """Dream every frame of ``source`` into ``output`` (MP4), resuming from frames already written."""
    info = probe_video(source)
    if flow:
        require("cv2", "--flow")
    work = output.with_name(f".{output.name}.frames")
    steady = settings.seeded(steady=True)
    previous: tuple[torch.Tensor, torch.Tensor] | None = None  # (source frame, its dream)
    for index, frame in enumerate(decode_frames(source, settings.max_size), start=1):
        png = work / f"{index:06d}.png"
        if png.exists():  # written by an earlier, interrupted run
            previous = (frame, read_image(png).rgb)
            report(FrameDone(index, info.frames, resumed=True))
            continue
        start = frame
        if previous is not None and blend > 0:
            detail = previous[1].to(frame) - previous[0].to(frame)
            if flow:
                detail = warp_detail(detail, previous[0], frame)
            start = (frame + blend * detail).clamp(0, 1)
        # The same seed each frame keeps the jitter pattern steady, which reduces flicker.
        dreamed = dream(model, start, settings=steady, options=options, report=report)
        dreamed = dreamed.cpu()
        work.mkdir(parents=True, exist_ok=True)  # only once there is a frame to keep
        write_image(png, dreamed)
        previous = (frame, dreamed)
        report(FrameDone(index, info.frames))
    pngs = sorted(work.glob("*.png"))
    frames = (np.asarray(Image.open(p).convert("RGB")) for p in pngs)
    encode_mp4(output, frames, info.fps, source, metadata)
    shutil.rmtree(work, ignore_errors=True)
    return info


# ---------------------------------------------------------------- the zoom and video jobs


def _prepare_folder(path: Path) -> None:
    """Make the output's folder, and clear what killed runs left in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path.parent)


def run_zoom(model: Loaded, request: ZoomRequest, options: RunOptions, report: Report = ignore) -> Path:
    """Dream, zoom, dream again; write the frames as GIF, WebP, MP4 or a folder of PNGs."""
    # Animations keep one seed for every frame (0 unless given), so nothing flickers but what moves.
    settings = request.settings.seeded(steady=True)
    refuse_picks(settings.layers, "an animation")
    if request.photo is not None:
        image = read_image(request.photo, settings.max_size).rgb
    else:
        generator = torch.Generator().manual_seed(settings.seed or 0)
        width, height = request.size
        image = 0.45 + 0.1 * torch.rand(3, height, width, generator=generator)  # the notebook's img_noise
    held = request.output.suffix != ""  # a folder takes each frame as it comes; a file, all at the end
    if held:
        check_frames_memory(
            request.frames, image.shape[-1], image.shape[-2], memory_budget(torch.device("cpu"))
        )
    frames = []
    sequence = zoom_frames(
        model.module,
        image,
        model.resolved(settings),
        request.frames,
        request.scale,
        request.rotate,
        request.pan,
        options=options,
        report=report,
    )
    meta = dict(request.metadata, zoom=request.frames, zoom_scale=request.scale, rotate=request.rotate)
    meta.update(
        pan=list(request.pan), start="photo" if request.photo else "noise", settings=settings.to_dict()
    )
    _prepare_folder(request.output)
    if not held:
        request.output.mkdir(parents=True, exist_ok=True)
    for (index, frame), name in zip(enumerate(sequence, start=1), frame_names(request.frames), strict=True):
        if held:
            frames.append(frame.cpu())
        else:
            write_image(request.output / name, frame.cpu(), None, meta)
        report(FrameDone(index, request.frames))
    if held:
        write_animation(request.output, frames, request.fps, meta)
    return request.output


FRAME_BYTES = 3 * 4  # a held frame: float32 RGB per pixel


def check_frames_memory(frames: int, width: int, height: int, memory: float | None) -> None:
    """A zoom into a file holds every frame until it is encoded: refuse up front what the
    memory cannot hold, with the number of frames that fits (a folder of frames holds none)."""
    need = frames * width * height * FRAME_BYTES
    if memory is None or need <= memory:
        return
    fits = int(memory // (width * height * FRAME_BYTES))
    held = (
        f"{frames} frames of {width}x{height} need {_size(need)} until they are encoded, "
        f"more than the {_size(memory)} free"
    )
    if fits < 1:
        raise ImageTooLargeError(
            f"{held}; use a smaller picture or -o FOLDER/ (PNG frames, written as they come)"
        )
    raise ImageTooLargeError(
        f"{held}; use --frames {fits} or fewer, a smaller picture, "
        "or -o FOLDER/ (PNG frames, written as they come)"
    )


def _size(count: float) -> str:
    """Bytes as the unit a reader can compare: GiB from one GiB up, else MB."""
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 1e6:.1f} MB"


def run_video(
    model: Loaded, request: VideoRequest, options: RunOptions, report: Report = ignore
) -> VideoInfo:
    """Dream every frame of the source into the output; the settings go into the MP4's comment."""
    settings = request.settings.seeded(steady=True)  # the same for a resumed run's frames
    refuse_picks(settings.layers, "an animation")
    meta = dict(request.metadata, settings=settings.to_dict(), blend=request.blend, flow=request.flow)
    meta["input"] = request.source.name
    _prepare_folder(request.output)
    return dream_video(
        model.module,
        request.source,
        request.output,
        model.resolved(settings),
        request.blend,
        request.flow,
        options=options,
        report=report,
        metadata=meta,
    )
