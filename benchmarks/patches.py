"""Adversarial patches with real weights: EfficientNet-Lite0 (../shared/realnet) on the photos in
../shared/images plus crops and flips (benchmarks/README.md, "Adversarial patches").

    python benchmarks/patches.py --out /tmp/patches            # ~20-40 min on 2 shared cores
    python benchmarks/patches.py --out /tmp/patches --steps 20 # a quick look

1. The photo set: each of the 5 photos, its mirror image, and 5 crops (70 % of the short side:
   4 corners and the centre) each with its mirror: 12 pictures a photo, 60 in all.
2. ``make_patch`` on the 48 pictures of 4 photos (``--held-out`` names the 5th), 224 px,
   batches of 16, area 4-10 %, ±22.5°; timed.  Its own report is on new placements of the
   training pictures; then ``evaluate_patch`` on the 12 pictures of the held-out photo at a
   fixed 10 % and 5 % of the area, and at 4-10 %.
3. A random-noise patch of the same side, tested the same way (expected near 0 %).
Writes the patch, the noise patch, contact sheets and a JSON of every figure into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps

from dreamcli.io.images import to_pil, write_pil
from dreamcli.jobs.patch_training import make_patch, write_patch
from dreamcli.jobs.patches import contact_sheet, evaluate_patch
from dreamcli.jobs.requests import PatchOptions

SHARED = Path(__file__).resolve().parents[2] / "shared"


def photo_set(folder: Path) -> dict[str, list[Path]]:
    """Each photo's 12 pictures (itself, crops, mirror images), written as PNGs into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[Path]] = {}
    for source in sorted((SHARED / "images").glob("*.*g")):
        image = ImageOps.exif_transpose(Image.open(source)).convert("RGB")
        width, height = image.size
        side = int(min(width, height) * 0.7)
        corners = [(0, 0), (width - side, 0), (0, height - side), (width - side, height - side)]
        corners.append(((width - side) // 2, (height - side) // 2))
        variants = {"full": image}
        for k, (x, y) in enumerate(corners):
            variants[f"crop{k}"] = image.crop((x, y, x + side, y + side))
        for name in list(variants):
            variants[f"{name}_flip"] = ImageOps.mirror(variants[name])
        paths = []
        for name, picture in variants.items():
            path = folder / f"{source.stem}_{name}.png"
            picture.save(path)
            paths.append(path)
        made[source.stem] = paths
    return made


def comparison_atlas(model, names, pictures, args) -> None:
    """The atlas of ``--layer`` over the photo set, each cell framed by its attribution to A vs B."""
    from dreamcli.jobs.atlas import make_atlas, write_atlas
    from dreamcli.jobs.requests import AtlasOptions

    a, b = (name.strip() for name in args.atlas.split(","))
    options = AtlasOptions(grid=8, method="pca", samples_per_image=32, labels=True, compare=(a, b), seed=0)
    paths = [p for group in pictures.values() for p in group]
    started = time.perf_counter()
    atlas = make_atlas(model, args.layer, paths, options, class_names=names)
    write_atlas(atlas, args.out / "compare_atlas.png")
    print(f"{len(atlas.cells)} cells in {time.perf_counter() - started:.0f} s")
    ordered = sorted(atlas.cells, key=lambda c: c["attribution"][b] - c["attribution"][a])
    for cell in ordered[:5] + ordered[-5:]:
        print(
            cell["row"],
            cell["col"],
            cell["count"],
            cell.get("label"),
            cell["attribution"],
            [Path(p["path"]).name for p in cell["photos"][:3]],
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--target", default="toaster")
    parser.add_argument("--held-out", default="chelsea", help="the photo whose pictures training never sees")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--atlas", metavar="A,B", help="make only a class-comparison atlas of the photo set")
    parser.add_argument("--layer", default="_blocks.10", help="the atlas's layer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(SHARED / "realnet"))
    import lite0

    model = lite0.load()
    names = (
        (Path(__file__).resolve().parents[1] / "dreamcli/data/classes/imagenet.txt").read_text().splitlines()
    )
    pictures = photo_set(args.out / "photos")
    if args.atlas:
        comparison_atlas(model, names, pictures, args)
        return
    held = pictures.pop(args.held_out)
    training = [p for paths in pictures.values() for p in paths]
    options = PatchOptions(
        size=224,
        area=(0.04, 0.10),
        rotate=22.5,
        placements=16,
        steps=args.steps,
        batch=16,
        rate=args.rate,
        holdout=0.0,
        seed=0,
    )

    marks: dict[int, float] = {}

    def progress(event) -> None:
        if getattr(event, "stage", "") == "training":
            marks[event.done] = time.perf_counter()
        if getattr(event, "stage", "") == "training" and event.done % 10 == 0:
            print(f"step {event.done}/{event.total} {time.strftime('%H:%M:%S')}", flush=True)

    started = time.perf_counter()
    made = make_patch(model, training, args.target, options, class_names=names, report=progress)
    seconds = time.perf_counter() - started
    write_patch(made, args.out / f"patch_{args.target}.png", {"model": "efficientnet-lite0"})
    figures = {
        "cpu_threads": args.threads,
        "os_cpus": os.cpu_count(),
        "make_seconds": round(seconds, 1),
        "training_loop_seconds": round(marks[args.steps] - marks[0], 1),
        "steps": args.steps,
        "rate": args.rate,
        "training_pictures": len(training),
        "losses_every_10": [round(v, 3) for v in made.losses[::10]],
        "trained_new_placements": made.report.summary,
    }
    noise = torch.rand(made.patch.shape, generator=torch.Generator().manual_seed(1))
    write_pil(args.out / "noise.png", to_pil(noise))
    for label, area in (("10%", (0.10, 0.10)), ("5%", (0.05, 0.05)), ("4-10%", (0.04, 0.10))):
        test = PatchOptions(size=224, area=area, rotate=22.5, placements=16, seed=7)
        for kind, patch in (("patch", made.patch), ("noise", noise)):
            result = evaluate_patch(model, held, patch, args.target, test, class_names=names)
            figures[f"held_out_{kind}_{label}"] = {
                "summary": result.summary,
                "photos": [
                    {k: p[k] for k in ("path", "success_rate", "target_after")}
                    | {"before": p["before"][0]["name"], "after": p["after"][0]["name"]}
                    for p in result.photos
                ],
            }
            if label == "10%":
                write_pil(args.out / f"sheet_{kind}_10.png", contact_sheet(result))
            print(kind, label, result.summary["success_rate"], flush=True)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps({k: v for k, v in figures.items() if not k.startswith("held_out")}, indent=1))


if __name__ == "__main__":
    main()
