"""Shared fixtures: a GoogLeNet with random weights (fixed seed) and small test images.

Random weights check the mechanics, never the look.  Nothing here touches the
network or ../shared.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamcli import models

# The Ctrl-C tests need SIGINT delivered. A suite started in the background by a
# non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, which Python keeps, and so
# would every `dream` they start: three such tests failed on exactly that. Python's own
# handler here also gives the children SIGINT's default back (exec resets a handler, not an
# ignore).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def net():
    return models.get("googlenet").build(seed=0)


KEYS = Path(__file__).parent / "model_keys"


def state_in_real_layout(name: str, seed: int = 0) -> dict:
    """Random weights for network ``name`` with exactly the keys and shapes users' files have.

    The ported networks' layouts are copied from the files users have (tests/model_keys);
    torchvision's networks use torchvision's own keys.  He-scaled, so activations keep
    their size through the layers, as in the mechanics tests of GoogLeNet.
    """
    layout = KEYS / f"{name}.keys.tsv"
    if not layout.is_file():
        return models.get(name).build(seed=seed).state_dict()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for line in layout.read_text().splitlines():
        key, shape = line.split("\t")
        shape = tuple(int(n) for n in shape.strip("()").split(",") if n.strip())
        if key.endswith(".bias"):
            state[key] = torch.zeros(shape)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
    return state


@pytest.fixture(scope="session")
def model_weights(tmp_path_factory):
    """``model_weights(name)``: a saved file of random weights in the network's real key layout."""
    made = {}

    def weights(name: str) -> Path:
        if name not in made:
            made[name] = tmp_path_factory.mktemp("weights") / f"{name}.pth"
            torch.save(state_in_real_layout(name), made[name])
        return made[name]

    return weights


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory, net):
    """The random network saved as a state dict, for the CLI's --weights."""
    path = tmp_path_factory.mktemp("weights") / "random_googlenet.pth"
    torch.save(net.state_dict(), path)
    return path


def photo_array(width: int = 96, height: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like RGB picture: gradients plus a few soft blobs (uint8, HxWx3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width, y / height, 0.5 + 0.3 * np.sin(x / 7.0) * np.cos(y / 5.0)], axis=-1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(6, 16)
        img += rng.uniform(-0.4, 0.4, 3) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def save_photo(path, width: int = 96, height: int = 64, seed: int = 0, mode: str = "RGB", **save_args):
    img = Image.fromarray(photo_array(width, height, seed)).convert(mode)
    img.save(path, **save_args)
    return path


def wait_for_a_picture(folder: Path, seconds: float = 120) -> None:
    """Until a running ``dream`` has written a picture into ``folder``: a signal sent after
    this lands in the work, not in start-up."""
    deadline = time.monotonic() + seconds
    while not (folder.exists() and any(folder.glob("*.png"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert folder.exists() and any(folder.glob("*.png")), (
        f"no output within {seconds:g} s: the signal would land in start-up"
    )


def cli_invoker(weights_file, *flags: str, catch_exceptions: bool = False):
    """Run ``dream ARGS... --weights FILE FLAGS...`` through Click's CliRunner."""
    from click.testing import CliRunner

    from dreamcli.cli import main

    def invoke(*args, input=None):
        argv = [str(a) for a in args] + ["--weights", str(weights_file), *flags]
        return CliRunner().invoke(main, argv, input=input, catch_exceptions=catch_exceptions)

    return invoke


@pytest.fixture
def photo(tmp_path):
    return save_photo(tmp_path / "photo.png")


# The tiniest dream: one octave, one step, an early layer.  The tests of bad input and faults
# (``faults.py``) run the CLI with it.
TINY = ["--octaves", "1", "--iterations", "1", "--layer", "conv2/3x3", "--seed", "0"]


@pytest.fixture
def tiny(weights_file):
    """``dream ARGS`` with the tiniest dream; exceptions propagate."""
    return cli_invoker(weights_file, *TINY)


@pytest.fixture
def tiny_caught(weights_file):
    """``dream ARGS`` with the tiniest dream; an exception is kept in the result (for checks)."""
    return cli_invoker(weights_file, *TINY, catch_exceptions=True)


@pytest.fixture
def tiny_quiet(weights_file):
    """``dream ARGS -q`` (``tiny=False``: without the tiniest dream's flags; ``weights=False``:
    without --weights); an exception is kept in the result."""
    from click.testing import CliRunner

    from dreamcli.cli import main

    def invoke(*args, tiny=True, weights=True):
        argv = [str(a) for a in args] + (["--weights", str(weights_file)] if weights else [])
        argv += [*TINY, "-q"] if tiny else ["-q"]
        return CliRunner().invoke(main, argv, catch_exceptions=True)

    return invoke
