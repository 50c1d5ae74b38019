"""Images per second of one folder: the local batch against a local Ray with 1 and 2 workers.

    python benchmarks/ray_throughput.py               # 24 images of 256x256, the classic settings
    python benchmarks/ray_throughput.py --images 48 --size 384 --workers 1 2 4

Needs the ray extra (pip install 'dreamcli[ray]').  Each run is the real `dream`
command in a fresh process, so start-up counts; the figures are printed twice:
over the whole command, and between the first and the last file's --json line
(the steady rate, without start-up).  Weights are random: speed does not
depend on them.  Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_folder(folder: Path, count: int, size: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        Image.effect_mandelbrot((size, size), (-2 + i / count, -1.2, 0.8, 1.2), 64 + i).convert("RGB").save(
            folder / f"img{i:04}.png"
        )
    return folder


def one_run(inputs: Path, out: Path, weights: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "dreamcli", str(inputs), "-o", str(out), "--weights", str(weights)]
    cmd += ["--seed", "0", "--json", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    arrivals = []
    for line in proc.stdout:
        if json.loads(line)["status"] == "done":
            arrivals.append(time.perf_counter() - start)
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    whole = time.perf_counter() - start
    steady = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else float("nan")
    return {"files": len(arrivals), "seconds": whole, "per_s": len(arrivals) / whole, "steady_per_s": steady}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import torch

    from dreamcli import models

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"# {args.images} images of {args.size}x{args.size}, classic settings, random weights")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = tmp / "random.pth"
        torch.save(models.get().build().state_dict(), weights)
        inputs = make_folder(tmp / "in", args.images, args.size)
        runs = [("local batch", [])] + [
            (f"ray local, {n} worker(s)", ["--ray", "local", "--ray-workers", str(n)]) for n in args.workers
        ]
        print(f"{'run':<24} {'seconds':>8} {'images/s':>9} {'steady images/s':>16}")
        for name, extra in runs:
            r = one_run(inputs, tmp / "out", weights, extra)
            print(f"{name:<24} {r['seconds']:8.1f} {r['per_s']:9.2f} {r['steady_per_s']:16.2f}", flush=True)


if __name__ == "__main__":
    main()
