"""``dream serve``: seconds from the click on Dream to the first octave's picture on the page.

    python benchmarks/serve_first_octave.py --runs 3          # random GoogLeNet weights, on the CPU

Starts ``dream serve --device cpu`` in its own process (random GoogLeNet weights
unless ``--weights``), opens its page in the system's headless Chromium
(Playwright), picks the sample photo and the default layer (inception_4c: a tile
at the default settings), clicks Dream and reads the page's own clock
(``window.dreamTimings``): the click, and the ``load`` of the tile's first
octave picture.  Each run is a new tile, after the last one finished; the
first run after the start also pays the network's one-time measurements.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--weights", help="a GoogLeNet state dict (default: random weights, seed 0)")
    parser.add_argument("--layer", default="inception_4c")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        weights = args.weights or _random_weights(Path(folder))
        command = [sys.executable, "-m", "dreamcli", "serve", "--port", "0", "--device", "cpu"]
        server = subprocess.Popen([*command, "--weights", weights], stdout=subprocess.PIPE, text=True)
        try:
            url = _address(server)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                page = browser.new_page()
                page.goto(url)
                page.wait_for_selector(f"#layers option[value='{args.layer}']", state="attached")
                page.click("#sample")
                page.select_option("#layers", [args.layer])
                for run in range(1, args.runs + 1):
                    page.click("#dream")
                    done = page.locator(".tile[data-state=done]").nth(run - 1)
                    done.wait_for(timeout=600_000)
                    timings = page.evaluate("window.dreamTimings")
                    tile = page.locator(".tile").nth(run - 1)
                    job = tile.get_attribute("data-job")
                    first = (timings["firstOctave"][job] - timings["clicked"]) / 1000
                    status = tile.locator(".status").inner_text()
                    print(f"run {run}: first octave on the page {first:.2f} s after the click; {status}")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)


def _random_weights(folder: Path) -> str:
    import torch

    from dreamcli import models

    path = folder / "random_googlenet.pth"
    torch.save(models.get("googlenet").build(seed=0).state_dict(), path)
    return str(path)


def _address(server: subprocess.Popen) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            raise SystemExit("dream serve stopped before printing its address")
        if "token=" in line:
            return line.strip()
    raise SystemExit("dream serve printed no address")


if __name__ == "__main__":
    main()
