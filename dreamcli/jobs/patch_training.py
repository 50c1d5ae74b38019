"""Making an adversarial patch: gradient ascent on the target's log-probability over random
placements, sizes and rotations (expectation over transformation; Brown et al.,
"Adversarial Patch", 2017).

A share of the photos (``holdout``) is kept out of training; the patch is then
tested on them at placements training never drew (``patches.score``), which is
the report ``make_patch`` returns.  With fewer than 4 usable photos there is
nothing to hold out: training uses them all and only the placements are new.
Every draw (the split, the start, each step's photos and placements) comes
from ``seed``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dreamcli.engine.placement import draw, paste
from dreamcli.errors import DreamError, ImageTooLargeError, SettingsError
from dreamcli.events import PhotoSkipped, Report, Stage, ignore
from dreamcli.io.images import to_pil, write_pil
from dreamcli.jobs.patches import Classifier, PatchReport, drawn_side, read_photos, score
from dreamcli.jobs.requests import PatchOptions
from dreamcli.models import Loaded

MIN_HOLDOUT_PHOTOS = 4  # fewer usable photos: held-out placements only
HELD_OUT_SALT = 1  # the held-out placements' own stream, never the training's


@dataclass
class MadePatch:
    """The patch (3, side, side) in [0, 1] on the CPU, its held-out report and what made it."""

    patch: torch.Tensor
    report: PatchReport
    metadata: dict[str, Any]
    losses: list[float] = field(default_factory=list)  # per step: -log p(target), the batch's mean


def usable_photos(
    paths: Sequence[str | Path], size: int, report: Report, memory: float | None = None
) -> tuple[list[Path], torch.Tensor, list[dict[str, str]]]:
    """The usable photos, all held at once (training draws from them every step); each
    unreadable one reported and listed.  Refused up front where ``memory`` (bytes) cannot
    hold them; DreamError when none is left."""
    skipped: list[dict[str, str]] = []

    def skip(path: Path, error: str) -> None:
        skipped.append({"path": str(path), "error": error})
        report(PhotoSkipped(path, error))

    photo_paths = [Path(p) for p in paths]
    if not photo_paths:
        raise SettingsError("no photos to paste the patch into")
    check_photo_memory(len(photo_paths), size, memory)
    found = list(read_photos(photo_paths, size, skip))
    if not found:
        raise DreamError(f"none of the {len(photo_paths)} photos could be read (each is named above)")
    return [path for path, _ in found], torch.stack([photo for _, photo in found]), skipped


# A photo held for training: 3 float32 planes of size x size, twice (on the CPU and, moved for
# training, on the device: on the CPU that copy is a second one too).
PHOTO_COPIES = 2


def check_photo_memory(count: int, size: int, memory: float | None) -> None:
    """Refuse before reading when ``count`` photos at ``size`` cannot be held in ``memory``."""
    need = count * PHOTO_COPIES * 3 * size * size * 4
    if memory is None or need <= memory:
        return
    fits = int(memory // (PHOTO_COPIES * 3 * size * size * 4))
    side = int((memory / (count * PHOTO_COPIES * 3 * 4)) ** 0.5)
    raise ImageTooLargeError(
        f"{count} photos at --size {size} need {need / 2**30:.1f} GiB to train on, more than the "
        f"{memory / 2**30:.1f} GiB free for them; "
        + (
            f"give at most {fits} photos, or --size {max(32, side)}"
            if fits
            else f"use --size {max(32, side)}"
        )
    )


def start_picture(picture: torch.Tensor, side: int) -> torch.Tensor:
    """A starting picture (3, h, w) as the patch's (3, side, side): stretched to the square."""
    if picture.shape[-2:] == (side, side):
        return picture.clone()
    small = max(picture.shape[-2:]) > side
    return F.interpolate(
        picture[None], size=(side, side), mode="bicubic" if small else "bilinear", antialias=small
    )[0].clamp(0.0, 1.0)


def make_patch(
    model: Loaded | nn.Module,
    paths: Sequence[str | Path],
    target: str,
    options: PatchOptions | None = None,
    *,
    start: torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    precision: str = "fp32",
    report: Report = ignore,
    memory: float | None = None,
) -> MadePatch:
    """A patch that makes ``model`` say ``target`` wherever it is pasted into the photos.

    ``start`` (3, h, w) in [0, 1] is the picture training starts from (default: seeded
    uniform noise).  Progress is reported as ``Stage("training", step, steps)``.  ``memory``:
    the bytes the photos may take (``RunOptions.memory``); more photos are refused up front.
    """
    options = options or PatchOptions()
    classifier = Classifier.of(model, class_names, precision)
    goal = classifier.index(model, target)
    started = time.perf_counter()
    paths, photos, skipped = usable_photos(paths, options.size, report, memory)
    generator = torch.Generator().manual_seed(options.seed)
    count = len(paths)
    if count >= MIN_HOLDOUT_PHOTOS and options.holdout > 0:
        held = max(1, round(options.holdout * count))
        order = torch.randperm(count, generator=generator).tolist()
        held_out, trained = sorted(order[:held]), sorted(order[held:])
        mode = "photos"
    else:
        held_out = trained = list(range(count))
        mode = "placements"
    side = options.side or drawn_side(options)
    device = classifier.device
    if start is None:
        initial = torch.rand(3, side, side, generator=generator)
    else:
        initial = start_picture(start.float(), side)
    patch = initial.to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([patch], lr=options.rate)
    training = photos[trained].to(device)
    losses = []
    report(Stage("training", 0, options.steps))
    with torch.enable_grad():
        for step in range(1, options.steps + 1):
            chosen = torch.randint(0, len(trained), (options.batch,), generator=generator)
            where = draw(options.batch, options.area, options.rotate, generator)
            logits = classifier(paste(training[chosen.to(device)], patch, where))
            loss = -logits.log_softmax(1)[:, goal].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                patch.clamp_(0.0, 1.0)
            losses.append(float(loss.detach()))
            report(Stage("training", step, options.steps))
    made = patch.detach().cpu()
    result = score(
        classifier,
        [(paths[i], photos[i]) for i in held_out],
        len(held_out),
        made,
        None,
        goal,
        options,
        salt=HELD_OUT_SALT,
        indices=held_out,
        report=report,
    )
    result.skipped = skipped
    seconds = round(time.perf_counter() - started, 2)
    result.summary.update(
        {"held_out": mode, "trained_on": len(trained), "skipped": len(skipped), "seconds": seconds}
    )
    metadata = {
        "target": classifier.name(goal),
        "class": goal,
        "model": classifier.label,
        "size": options.size,
        "area": list(options.area),
        "rotate": options.rotate,
        "steps": options.steps,
        "batch": options.batch,
        "rate": options.rate,
        "holdout": options.holdout,
        "seed": options.seed,
        "side": side,
        "held_out": mode,
        "trained_on": [str(paths[i]) for i in trained],
        "tested_on": [str(paths[i]) for i in held_out],
        "held_out_success": result.summary["success_rate"],
        "final_loss": round(losses[-1], 4) if losses else None,
        "seconds": seconds,
    }
    return MadePatch(made, result, metadata, losses)


def write_patch(made: MadePatch, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """The patch as a picture (atomically), with what made it in its metadata (``patch``)."""
    write_pil(path, to_pil(made.patch), {**(extra or {}), "patch": made.metadata})
