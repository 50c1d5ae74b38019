"""Where a first dream's time goes (not a test: it prints figures).

    python benchmarks/first_dream.py                        # the default dream of a 1024x768 photo
    python benchmarks/first_dream.py --preset preview       # a preset's dream (its max_size applies)
    python benchmarks/first_dream.py --size 640x480 --repeats 3

Each part is printed beside its baseline, measured in the same run:

- start-up: ``python -c pass``; ``import torch`` alone; the imports of a dream (what ``dream
  photo.jpg`` imports: torch, the engine, the batch, the CLI) in a fresh process;
- weights: ``torch.load`` of the file alone, then the whole load (build, BatchNorm folded,
  channels-last) that ``dream`` does;
- probes: the smallest input the layers take (beside the old bisection from 512 px, run first
  so that it pays the first forward pass's own set-up) and the bytes a pixel costs, measured
  once per model;
- the first dream, then the same dream again: the second is the loop alone, so the difference is
  the set-up of the first shapes (oneDNN / cuDNN kernels for each octave's size, allocations);
- the whole command in a fresh process (``dream PHOTO --weights FILE``), and what it spends
  beyond the parts above (decoding, encoding, the process itself).

Weights are random (speed does not depend on them), saved once to a temporary file with the real
file's size.  Take the figures on a quiet machine: on a shared CPU only the shares mean anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What ``dream photo.jpg`` imports before its first step (the CLI, the batch, the engine).
DREAM_IMPORTS = "import dreamcli.cli, dreamcli.cli.dreaming, dreamcli.jobs.batch, dreamcli.models.loading"


def seconds_of(code: str, repeats: int) -> float:
    """The median wall time of ``python -c code`` in fresh processes."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bisected_from_512(capture, device) -> int:
    """The smallest-input probe before issue 33: a bisection that starts with a 512x512 pass."""
    import torch

    def works(side: int) -> bool:
        try:
            with torch.no_grad():
                capture(torch.zeros(1, 3, side, side, device=device))
            return True
        except RuntimeError:
            return False

    low, high = 0, 512
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if works(mid) else (mid, high)
    return high


def timed(work):
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def row(name: str, seconds: float, baseline: str = "") -> None:
    print(f"  {name:<44} {seconds:8.2f} s   {baseline}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="1024x768", help="the photo's WIDTHxHEIGHT (default 1024x768)")
    parser.add_argument("--preset", help="dream with this preset's settings (default: the defaults)")
    parser.add_argument("--model", default="googlenet")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per start-up figure")
    parser.add_argument("--no-command", action="store_true", help="leave out the whole command")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.lower().split("x"))

    print(f"First dream: {args.model}, {width}x{height}, preset {args.preset or '(defaults)'}")
    print(f"  {os.cpu_count()} CPUs seen; medians of {args.repeats} fresh processes for start-up")
    python = seconds_of("pass", args.repeats)
    torch_alone = seconds_of("import torch", args.repeats)
    dream_imports = seconds_of(DREAM_IMPORTS, args.repeats)
    print("start-up")
    row("python itself", python)
    row("import torch", torch_alone - python, "(beyond python itself)")
    row(
        "the rest of a dream's imports",
        dream_imports - torch_alone,
        f"(all of them: {dream_imports - python:.2f} s)",
    )

    import torch

    from dreamcli import models
    from dreamcli import presets as preset_files
    from dreamcli.config import Settings
    from dreamcli.engine.capture import LayerCapture, smallest_input
    from dreamcli.engine.devices import run_options
    from dreamcli.engine.octaves import dream
    from dreamcli.engine.step_policy import measured
    from dreamcli.engine.tiling import bytes_per_pixel
    from dreamcli.io.images import Picture, fit
    from dreamcli.models.loading import load

    network = models.get(args.model)
    settings = Settings(model=network.name)
    if args.preset:
        settings = preset_files.find(args.preset, preset_files.search_path([])).apply(settings)
    settings = Settings.from_mapping({"seed": 0}, base=settings)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"random_{network.name}.pth"
        torch.save(network.build(seed=0).state_dict(), weights)
        photo = Path(tmp) / "photo.png"
        pixels = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
        from PIL import Image

        Image.fromarray((pixels.permute(1, 2, 0) * 255).byte().numpy()).save(photo)

        options = run_options("cpu", reproducible=True)
        print(f"weights ({weights.stat().st_size / 1e6:.0f} MB file) and probes, in this process")
        read, _ = timed(lambda: torch.load(weights, map_location="cpu", weights_only=True))
        loading, loaded = timed(lambda: load(network, weights=weights, device=options.device))
        row("torch.load of the file", read)
        row(
            "the whole load (build, fold, channels-last)",
            loading,
            f"(beyond torch.load: {loading - read:.2f} s)",
        )
        resolved = loaded.resolved(settings)
        image = fit(Picture(pixels), settings.max_size).rgb
        names = [spec.name for spec in resolved.layers]
        with LayerCapture(loaded.module, names) as capture:
            device = torch.device(options.device)
            old_side, _ = timed(lambda: bisected_from_512(capture, device))
            side, _ = timed(lambda: measured(capture, "min_side", lambda: smallest_input(capture, device)))
            per_pixel, _ = timed(
                lambda: measured(capture, "per_pixel", lambda: bytes_per_pixel(capture, device))
            )
        row("probe: smallest input", side, f"(bisected down from 512 px, as before: {old_side:.2f} s)")
        row("probe: bytes per pixel", per_pixel)
        octaves = f"{settings.octaves} octaves x {settings.iterations} steps"
        print(f"the dream ({image.shape[-1]}x{image.shape[-2]}, {octaves})")
        first, _ = timed(lambda: dream(loaded.module, image, settings=resolved, options=options))
        second, _ = timed(lambda: dream(loaded.module, image, settings=resolved, options=options))
        row("the loop (the same dream again)", second)
        row("first shapes' set-up (first - second)", first - second, f"(the first dream: {first:.2f} s)")
        parts = (dream_imports - python) + loading + side + per_pixel + first
        if not args.no_command:
            argv = [
                "-m",
                "dreamcli",
                str(photo),
                "-o",
                str(Path(tmp) / "out.png"),
                "-q",
                "--weights",
                str(weights),
            ]
            argv += ["--preset", args.preset] if args.preset else []
            argv += ["--model", network.name, "--seed", "0", "--device", "cpu", "--overwrite"]
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], check=True)
            whole = time.perf_counter() - start
            print("the whole command, in a fresh process")
            row("dream PHOTO (python itself left out)", whole - python, f"(the parts above: {parts:.2f} s)")
            row("beyond the parts (decode, encode, the rest)", whole - python - parts)


if __name__ == "__main__":
    main()
