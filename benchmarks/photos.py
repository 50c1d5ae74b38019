"""Dreams that stay photos (issue 35), measured on EfficientNet-Lite0 with real weights.

    OMP_NUM_THREADS=2 python benchmarks/photos.py --out /tmp/photos/ [--part accent|mask|strong|invert]
        [--steps 80] [--pulls 10,3,1]

chelsea.png at 224 px (../shared/images).  ``accent``: three classes Lite0 gives the
photo under 1 %, accentuated (``engine.accentuation``) and dreamed plainly toward the
same class with the same number of steps, for each pull of ``--pulls`` (the default's
calibration): the class probability, the mean absolute change (0-255) and SSIM (8x8
windows, luminance) against the photo; ``accent_sheet.png``: photo | accentuated at
the first pull | DeepDream, for the first class.  ``mask``: the
left half kept; the largest change in the feathering's hard zone and the mean change in
the right quarter against the unmasked dream's.  ``strong``: the mean activation of
``_blocks.10[strong:8]`` after a dream on them, against 8 random channels' after theirs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality
from quality import luminance

from dreamcli.config import LayerSpec, Settings
from dreamcli.engine import choosing, masking
from dreamcli.engine.accentuation import accentuate
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.octaves import dream
from dreamcli.io.images import read_image, write_image

# ../shared beside the checkout; from a worktree under /work/wt it is two folders up.
SHARED = next(
    (p for p in (quality.SHARED, quality.SHARED.parent.parent / "shared") if p.is_dir()), quality.SHARED
)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of the luminance in 8x8 windows (Wang et al. 2004 constants, 0-1 range)."""
    x, y = luminance(a), luminance(b)
    mx, my = F.avg_pool2d(x, 8, 1), F.avg_pool2d(y, 8, 1)
    vx = F.avg_pool2d(x * x, 8, 1) - mx**2
    vy = F.avg_pool2d(y * y, 8, 1) - my**2
    cxy = F.avg_pool2d(x * y, 8, 1) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def probabilities(net, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(image[None]).softmax(1)[0]


def accent(net, photo, out: Path, steps: int, pulls: list[float]) -> None:
    p = probabilities(net, photo)
    classes = [int(c) for c in torch.argsort(p) if 0.001 < p[c] < 0.01][-3:]  # the likeliest under 1 %
    print(f"photo: top-1 {int(p.argmax())} p={float(p.max()):.3f}")
    print("| pull | class | p before | how | p after | top-1 after | mean |change| | SSIM |")
    for c in classes:
        plain = dream(
            net, photo, settings=Settings(layers=(LayerSpec("_fc", channels=(c,)),), octaves=1,
                                          iterations=steps, seed=0),
        )  # fmt: skip
        made = {}
        for pull in pulls:
            settings = Settings(layers=(LayerSpec("_fc", channels=(c,)),), seed=0, step_size=1.5)
            made[pull] = accentuate(net, photo, settings=settings, pull=pull, steps=steps)
        rows = [(f"{pull:g}", "accentuate", m.images) for pull, m in made.items()] + [
            ("-", "DeepDream", plain)
        ]
        for pull_shown, how, image in rows:
            q = probabilities(net, image)
            moved = float((image - photo).abs().mean() * 255)
            print(
                f"| {pull_shown} | {c} | {float(p[c]):.4f} | {how} | {float(q[c]):.3f} | {int(q.argmax())} | "
                f"{moved:.1f} | {ssim(image, photo):.3f} |"
            )
            write_image(out / f"accent_{c}_{how}_{pull_shown}.png", image)
        first = made[pulls[0]]
        write_image(out / f"accent_{c}_changed.png", first.changed.expand(3, -1, -1))
        if c == classes[0]:
            write_image(out / "accent_sheet.png", torch.cat([photo, first.images, plain], dim=-1))


def mask(net, photo, out: Path) -> None:
    h, w = photo.shape[-2:]
    m = torch.zeros(h, w)
    m[:, w // 2 :] = 1.0
    settings = Settings(layers=("_blocks.10",), seed=0)
    masked = dream(net, photo, settings=settings, mask=m)
    whole = dream(net, photo, settings=settings)
    hard = masking.hard_zone(m, (h, w))
    q = lambda t: (t * 255).round()  # noqa: E731
    diff = (q(masked) - q(photo)).abs()[:, hard].max()
    inside_m = float((masked - photo)[..., 3 * w // 4 :].abs().mean() * 255)
    inside_w = float((whole - photo)[..., 3 * w // 4 :].abs().mean() * 255)
    print(f"mask: hard zone {int(hard.sum())} px, max 8-bit diff {int(diff)}; right quarter mean change "
          f"{inside_m:.1f} masked, {inside_w:.1f} unmasked")  # fmt: skip
    write_image(out / "mask_half.png", masked)
    write_image(out / "mask_none.png", whole)


def strong(net, photo, out: Path) -> None:
    layer = "_blocks.10"
    base = Settings(layers=(f"{layer}[strong:8]",), seed=0)
    chosen, _ = choosing.choose(net, photo, base, base)
    picked = chosen.layers[0].channels or ()
    count = int(choosing.strengths(net, photo, base)[layer].numel())
    others = tuple(sorted(torch.randperm(count, generator=torch.Generator().manual_seed(0))[:8].tolist()))
    print(f"strong: {layer} {count} channels, strongest 8 {picked}, random 8 {others}")
    for name, channels in (("strong", picked), ("random", others)):
        settings = Settings(layers=(LayerSpec(layer, channels=channels),), seed=0)
        made = dream(net, photo, settings=settings)
        with LayerCapture(net, [layer]) as capture, torch.no_grad():
            before = capture(photo[None])[layer][0, list(channels)].mean()
            after = capture(made[None])[layer][0, list(channels)].mean()
        print(f"| {name} | {float(before):.3f} | {float(after):.3f} |")
        write_image(out / f"strong_{name}.png", made)


def invert(net, photo, out: Path) -> None:
    """``dream features --like``: inversion and caricature at two depths, 160 fft steps, 224x336."""
    from dreamcli.engine.featurevis import feature_pictures
    from dreamcli.engine.objectives import Matching

    for layer in ("_blocks.6", "_blocks.10"):
        with LayerCapture(net, [layer]) as capture, torch.no_grad():
            target = capture(photo[None])[layer].float()
        for caricature in (False, True):
            goal = Matching(layer, target, caricature=caricature)
            made = feature_pictures(
                net, tuple(photo.shape[-2:]), settings=Settings(seed=0), goal=goal, steps=160
            )
            with LayerCapture(net, [layer]) as capture, torch.no_grad():
                got = capture(made.images)[layer].float()
            cos = F.cosine_similarity(got.flatten(), target.flatten(), dim=0)
            how = "caricature" if caricature else "inversion"
            print(f"| {layer} | {how} | {float(cos):.3f} |")
            write_image(out / f"invert_{layer}_{how}.png", made.images[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/photos"))
    parser.add_argument("--part", default="all")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pulls", default="10,3,1", help="pulls of the accentuation, the first drawn")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    quality.SHARED = SHARED
    net = quality.realnet()
    photo = F.interpolate(read_image(SHARED / "images" / "chelsea.png").rgb[None], size=(224, 336),
                          mode="bilinear", antialias=True)[0]  # fmt: skip
    parts = {
        "accent": lambda: accent(net, photo, args.out, args.steps, [float(x) for x in args.pulls.split(",")]),
        "mask": lambda: mask(net, photo, args.out),
        "strong": lambda: strong(net, photo, args.out),
        "invert": lambda: invert(net, photo, args.out),
    }
    for name, part in parts.items():
        if args.part in ("all", name):
            part()


if __name__ == "__main__":
    main()
