"""Benchmark the dream loop and the whole command (not a test: it prints figures).

    python benchmarks/bench.py                 # CPU or the first GPU, a few minutes
    python benchmarks/bench.py --device cpu --quick
    python benchmarks/bench.py --device cuda --only 3840 --only 7680   # some rows
    python benchmarks/bench.py --device cpu --models   # one row per network, 512x512

Per configuration it prints the dream-loop seconds (median of several runs;
model load and image I/O excluded), the whole `dream` command's seconds,
megapixel-iterations per second (pixels of every octave x iterations / loop
time), and peak memory (the CUDA allocator's peak, or the process's peak RSS
on the CPU).  Each configuration runs in its own process so that peaks do not
mix.  Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSIC = {"layers": ["inception4c"], "octaves": 4, "octave_scale": 1.4, "iterations": 10, "seed": 0}


def work_megapixels(height: int, width: int, batch: int = 1) -> float:
    from dreamcli.engine.steps import octave_sizes

    sizes = octave_sizes(height, width, CLASSIC["octaves"], CLASSIC["octave_scale"])
    return batch * sum(h * w for h, w in sizes) * CLASSIC["iterations"] / 1e6


def worker(args) -> None:
    """One configuration, in this process: print a JSON line of results."""
    import torch

    from dreamcli import models
    from dreamcli.config import Settings
    from dreamcli.engine.devices import choose_kernels, memory_budget, select_device
    from dreamcli.engine.octaves import dream
    from dreamcli.models.prepare import prepare_for_dreaming
    from dreamcli.run_options import MEMORY_SHARE, RunOptions

    device = select_device(args.device)
    choose_kernels(device, reproducible=False)
    network = models.get(args.model)
    net = network.build()
    net = net.to(device) if args.variant == "eager" else prepare_for_dreaming(net, device)
    height, width = args.height, args.width
    images = torch.rand(args.batch, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    # The classic run, at each network's default layer (inception_4c for GoogLeNet).
    layer = network.layers.resolve(network.default_layer)
    settings = Settings(**{**CLASSIC, "iterations": args.iterations, "layers": [layer]})
    if args.memory_gib and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(
            args.memory_gib * 2**30 / total,
            device.index if device.index is not None else torch.cuda.current_device(),
        )
    # As the CLI does: tile only what would not fit in 70 % of the free memory (or of the cap).
    memory = MEMORY_SHARE * args.memory_gib * 2**30 if args.memory_gib else memory_budget(device)
    graphs = args.variant == "graphs"

    notes = set()

    def noted(event) -> None:
        if hasattr(event, "message"):
            notes.add(event.message)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        dream(
            net,
            images,
            settings=settings,
            report=noted,
            options=RunOptions(
                precision=args.precision, memory=memory, tile_size=args.tile_size, graphs=graphs
            ),
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    first = once() if args.warmup else None  # on CUDA: cuDNN autotuning and graph recording
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [once() for _ in range(args.repeats)]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    loop = statistics.median(times)
    work = work_megapixels(height, width, args.batch) * args.iterations / CLASSIC["iterations"]
    result = {"loop_s": loop, "times": times, "first_s": first, "peak_gib": peak}
    print(json.dumps({**result, "mpix_it_per_s": work / loop, "notes": sorted(notes)}))


def run_worker(
    device,
    variant,
    precision,
    height,
    width,
    batch=1,
    repeats=3,
    warmup=True,
    memory_gib=None,
    tile_size=None,
    model="googlenet",
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--device",
        device,
        "--variant",
        variant,
        "--precision",
        precision,
        "--height",
        str(height),
        "--width",
        str(width),
        "--batch",
        str(batch),
        "--repeats",
        str(repeats),
        "--model",
        model,
    ]
    cmd += [] if warmup else ["--no-warmup"]
    cmd += ["--memory-gib", str(memory_gib)] if memory_gib else []
    cmd += ["--tile-size", str(tile_size)] if tile_size else []
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def whole_command(device: str, precision: str, height: int, width: int, folder: Path) -> float:
    """Seconds for the real `dream` command on one image: start-up, load, I/O and all."""
    import torch
    from PIL import Image

    from dreamcli import models

    weights = folder / "random.pth"
    if not weights.exists():
        torch.save(models.get().build().state_dict(), weights)
    src = folder / f"in_{width}x{height}.png"
    Image.effect_noise((width, height), 64).convert("RGB").save(src)
    cmd = [
        sys.executable,
        "-m",
        "dreamcli",
        str(src),
        "-o",
        str(folder / "out.png"),
        "--overwrite",
        "--weights",
        str(weights),
        "--device",
        device,
        "--precision",
        precision,
        "-q",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="fewer configurations and repeats")
    parser.add_argument(
        "--only", action="append", metavar="TEXT", help="run only configurations whose label holds TEXT"
    )
    parser.add_argument("--models", action="store_true", help="one row per network (512x512, fp32)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="googlenet", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="prepared", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, default=768, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument("--memory-gib", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tile-size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, default=CLASSIC["iterations"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    from dreamcli.engine.devices import select_device

    device = select_device(args.device)
    gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if gpu else platform.processor() or platform.machine()
    print(
        f"# dreamcli benchmark, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
        f"{name}, {torch.get_num_threads()} CPU threads"
    )
    print("# classic run: inception_4c, 4 octaves x 1.4, 10 iterations; random weights\n")
    # (label, variant, precision, height, width, batch, repeats, memory cap GiB)
    if gpu:
        configs = [
            ("512x512", "eager", "fp32", 512, 512, 1, 5, None),
            ("512x512", "prepared", "bf16", 512, 512, 1, 5, None),
            ("512x512", "graphs", "bf16", 512, 512, 1, 5, None),
            ("1024x768", "eager", "fp32", 768, 1024, 1, 5, None),
            ("1024x768", "prepared", "fp32", 768, 1024, 1, 5, None),
            ("1024x768", "prepared", "bf16", 768, 1024, 1, 5, None),
            ("1024x768", "graphs", "fp32", 768, 1024, 1, 5, None),
            ("1024x768", "graphs", "bf16", 768, 1024, 1, 5, None),
            ("1920x1080", "graphs", "bf16", 1080, 1920, 1, 3, None),
            ("3840x2160", "prepared", "bf16", 2160, 3840, 1, 3, None),
            ("3840x2160", "graphs", "bf16", 2160, 3840, 1, 3, None),
            ("7680x4320, 8 GiB cap", "graphs", "bf16", 4320, 7680, 1, 1, 8),
            ("16 x 512x512", "graphs", "bf16", 512, 512, 16, 3, None),
            ("64 x 512x512", "graphs", "bf16", 512, 512, 64, 3, None),
        ]
    else:
        configs = [
            ("512x512", "eager", "fp32", 512, 512, 1, 3, None),
            ("512x512", "prepared", "fp32", 512, 512, 1, 3, None),
            ("1024x768", "eager", "fp32", 768, 1024, 1, 3, None),
            ("1024x768", "prepared", "fp32", 768, 1024, 1, 3, None),
            ("1024x768", "prepared", "bf16", 768, 1024, 1, 3, None),
            ("8 x 512x512", "prepared", "fp32", 512, 512, 8, 1, None),
        ]
    if args.models:
        from dreamcli import models

        variant = "graphs" if gpu else "prepared"
        precision = "bf16" if gpu else "fp32"
        configs = [(name, variant, precision, 512, 512, 1, 3, None) for name in models.NETWORKS]
    whole_variant = "graphs" if gpu else "prepared"  # what the CLI runs
    if args.only:
        configs = [c for c in configs if any(text in c[0] for text in args.only)]
    if args.quick:
        configs = [(*c[:6], 1, c[7]) for c in configs if c[5] == 1 and c[3] <= 768]
    print(
        "| config | path | precision | loop s (median) | Mpix·it/s | images/s | peak GiB "
        "| first run s | whole command s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, variant, precision, height, width, batch, repeats, cap in configs:
            model = label if args.models else "googlenet"
            result = run_worker(
                args.device, variant, precision, height, width, batch, repeats, True, cap, model=model
            )
            if "error" in result:
                error = result["error"]
                print(f"| {label} | {variant} | {precision} | error: {error} | | | | | |", flush=True)
                continue
            whole = ""
            if batch == 1 and variant == whole_variant and not cap and not args.models:
                whole = f"{whole_command(args.device, precision, height, width, Path(tmp)):.2f}"
            print(
                f"| {label} | {variant} | {precision} | {result['loop_s']:.3f} | "
                f"{result['mpix_it_per_s']:.1f} | {batch / result['loop_s']:.2f} | "
                f"{result['peak_gib']:.2f} | {result['first_s'] or 0:.3f} | {whole} |",
                flush=True,
            )
            for note in result["notes"]:
                print(f"  note ({label}, {variant}): {note}", flush=True)


if __name__ == "__main__":
    main()
