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
from dreamcli.events import Report, Stage, ignore
from dreamcli.io.images import to_pil, write_pil
from dreamcli.jobs.patches import Classifier, PatchReport, drawn_side, score, usable_photos
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
