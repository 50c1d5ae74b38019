"""Feature pictures from noise, measured on a network with real weights (prints a table, draws sheets).

    OMP_NUM_THREADS=2 python benchmarks/feature_quality.py --out /tmp/fq/   # about 25 min on 2 shared cores

EfficientNet-Lite0 with real ImageNet weights (../shared/realnet), 16 channels of
``_blocks.10`` (a linear layer: no ReLU after it) and 10 ImageNet classes, made
the ways dreamcli can make them:

* pixel: the 2015 way, DeepDream's octave steps from near-grey noise, squared objective;
* fft bare: the Fourier picture with the squared objective and no transforms;
* fft today: the Fourier picture, squared objective, Lucid's transforms (before issue 26);
* fft: the Fourier picture, the papers' objectives (signed channel mean, logit), transforms;
* maco: magnitude-constrained Fourier (fixed 1/f magnitude, free phase, random crops), paper objectives.

Columns: robust self-classification (the share of class pictures that the network
classifies as their class after a random crop of 50-100 % of the area resized to 224,
8 crops each); HF, the mean absolute Laplacian of the channel pictures' luminance in
0-255 units (lower = less speckle); neg, the share of the pictured channel's energy
(sum of squares) that is negative on the final picture; seconds per picture.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import LAYER, high_frequency, realnet

from dreamcli.config import Settings
from dreamcli.engine import transforms as tf
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.featurevis import feature_pictures
from dreamcli.engine.objectives import ChannelPerImage
from dreamcli.engine.octaves import dream
from dreamcli.engine.transforms import RandomAffine
from dreamcli.jobs.sheets import contact_sheet, start_image

CHANNELS = [3, 9, 17, 24, 37, 45, 58, 66, 71, 80, 88, 95, 101, 110, 7, 50]
CLASSES = {1: "goldfish", 130: "flamingo", 207: "golden retriever", 291: "lion", 323: "monarch",
           417: "balloon", 508: "keyboard", 817: "sports car", 954: "banana", 980: "volcano"}  # fmt: skip
METHODS = ("pixel", "fft bare", "fft today", "fft", "maco")


def pictures(model, method: str, layer: str, indices: list[int], size: int, steps: int) -> torch.Tensor:
    settings = Settings(layers=[layer], seed=0)
    signed = method in ("fft", "maco") or layer == "_fc"  # logits always counted linearly
    goal = ChannelPerImage(layer, indices, signed=signed)
    if method == "pixel":
        noise = start_image("noise", size, size, seed=0).expand(len(indices), 3, size, size)
        return dream(model, noise, settings=settings, goal=goal.with_transform(RandomAffine(0)))
    param = "maco" if method == "maco" else "fft"
    transform = tf.NONE if method == "fft bare" else None
    return feature_pictures(
        model, (size, size), settings=settings, goal=goal, batch=len(indices), param=param,
        transform=transform, steps=steps,
    ).images  # fmt: skip


def self_classified(model, images: torch.Tensor, classes: list[int], crops: int = 8) -> float:
    generator = torch.Generator().manual_seed(0)
    hits = 0
    with torch.no_grad():
        for _ in range(crops):
            views = tf.RandomCrops(1, (0.5, 1.0), (224, 224), noise=0.0)(images, generator)
            hits += int((model(views).argmax(1) == torch.tensor(classes)).sum())
    return hits / (crops * len(classes))


def negative_share(model, images: torch.Tensor, layer: str, channels: list[int]) -> float:
    with LayerCapture(model, [layer]) as capture, torch.no_grad():
        act = capture(images)[layer][torch.arange(len(channels)), channels]
    return float(act.clamp(max=0).pow(2).sum() / act.pow(2).sum().clamp_min(1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/fq"))
    parser.add_argument("--size", type=int, default=96, help="picture side for the comparison")
    parser.add_argument("--steps", type=int, default=48, help="Adam steps of the Fourier pictures")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--timing", type=int, default=0, metavar="STEPS",
        help="instead: time 16 channel pictures at 224 px (the --each default) over STEPS Adam steps "
        "per param, and scale to the default 320 steps",
    )  # fmt: skip
    parser.add_argument(
        "--look", action="store_true",
        help="instead: channels 3 and 101 at 224 px, 160 steps (squared fft, signed fft, signed maco); "
        "goldfish and monarch with maco and --alpha at 192 px, 128 steps",
    )  # fmt: skip
    args = parser.parse_args()
    if args.timing:
        return timing(args.timing)
    if args.look:
        return look(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
    model = realnet().eval().requires_grad_(False)
    classes = list(CLASSES)
    print(f"# feature pictures, {time.strftime('%Y-%m-%d')}, EfficientNet-Lite0 (real weights), "
          f"{args.size} px, {args.steps} Adam steps (pixel: 4 x 10), seed 0\n")  # fmt: skip
    print("| method | self-classified (10 classes x 8 crops) | HF, 16 channels | neg. energy | s / picture |")
    print("|---|---|---|---|---|")
    for method in args.methods.split(","):
        start = time.perf_counter()
        chans = pictures(model, method, LAYER, CHANNELS, args.size, args.steps)
        logits = pictures(model, method, "_fc", classes, args.size, args.steps)
        seconds = (time.perf_counter() - start) / (len(CHANNELS) + len(classes))
        hf = sum(high_frequency(p) for p in chans) / len(chans)
        print(
            f"| {method} | {self_classified(model, logits, classes):.0%} | {hf:.1f} | "
            f"{negative_share(model, chans, LAYER, CHANNELS):.0%} | {seconds:.1f} |",
            flush=True,
        )
        tiles = [(f"[{c}]", p) for c, p in zip(CHANNELS, chans, strict=True)]
        tiles += [(CLASSES[c], p) for c, p in zip(classes, logits, strict=True)]
        name = method.replace(" ", "_")
        contact_sheet(tiles, columns=math.ceil(len(tiles) / 3), width=128).save(args.out / f"{name}.png")


def timing(steps: int) -> None:
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
    model = realnet().eval().requires_grad_(False)
    settings = Settings(layers=[LAYER], seed=0)
    for param in ("fft", "maco"):
        goal = ChannelPerImage(LAYER, CHANNELS, signed=True)
        start = time.perf_counter()
        feature_pictures(model, (224, 224), settings=settings, goal=goal, batch=16, param=param, steps=steps)
        seconds = (time.perf_counter() - start) / 16
        default = settings.octaves * settings.iterations * 8
        print(
            f"{param}: {seconds:.2f} s per picture for {steps} steps -> "
            f"{seconds * default / steps:.0f} s at {default}"
        )


def look(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
    model = realnet().eval().requires_grad_(False)
    settings = Settings(layers=[LAYER], seed=0)
    tiles = []
    for label, signed, param in (
        ("squared fft", False, "fft"),
        ("signed fft", True, "fft"),
        ("maco", True, "maco"),
    ):
        goal = ChannelPerImage(LAYER, [3, 101], signed=signed)
        made = feature_pictures(
            model, (224, 224), settings=settings, goal=goal, batch=2, param=param, steps=160
        )
        print(label, "HF", [round(high_frequency(p), 1) for p in made.images], flush=True)
        tiles += [(f"{label} [3]", made.images[0]), (f"{label} [101]", made.images[1])]
    contact_sheet(tiles, columns=6, width=224).save(out / "look160.png")
    tiles = []  # MACO class pictures and their transparency maps, 192 px, 128 steps
    for index in (1, 323):
        goal = ChannelPerImage("_fc", [index], signed=True)
        made = feature_pictures(model, (192, 192), settings=settings, goal=goal, param="maco", steps=128)
        with torch.no_grad():
            probability = float(model(made.images).softmax(1)[0, index])
        print(CLASSES[index], f"p = {probability:.4f}", flush=True)
        tiles += [(CLASSES[index], made.images[0]), ("alpha", made.alpha[0].expand(3, -1, -1))]
    contact_sheet(tiles, columns=4, width=192).save(out / "alpha.png")


if __name__ == "__main__":
    main()
