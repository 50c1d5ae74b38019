"""The picture knobs (``engine/shaping``, issue 16): gradient smoothing, Laplacian normalisation,
keeping colours.  Exact tensors where possible; the CLI on tiny images.  (Their look is measured
with real weights in benchmarks/quality.py.)  Feature pictures from a spectrum: test_features."""

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dreamcli.config import Settings
from dreamcli.engine.shaping import Shaping, _merge, _split, cascade_smooth, lap_normalize
from dreamcli.io.images import read_metadata

from conftest import cli_invoker, save_photo

FAST = ["--octaves", "2", "--iterations", "3", "--layer", "inception_3b", "--seed", "0", "-q"]


def high_frequency(x: torch.Tensor) -> float:
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return float(torch.nn.functional.conv2d(x.mean(1, keepdim=True), kernel).abs().mean())


def cbcr(x: np.ndarray) -> np.ndarray:
    r, g, b = (x[..., i].astype(float) for i in range(3))
    return np.stack([-0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b])


def test_the_laplacian_pyramid_splits_exactly_and_normalises_every_band():
    x = torch.randn(2, 3, 37, 50, generator=torch.Generator().manual_seed(0))
    low, high = _split(x)
    assert low.shape[-2:] == (19, 25)
    torch.testing.assert_close(_merge(low, high), x, atol=1e-5, rtol=0)
    # A gradient made of one coarse and one fine pattern: normalising the bands evens them out.
    y = torch.linspace(0, 1, 64)
    coarse = torch.sin(2 * torch.pi * y)[None, :] * torch.ones(64, 1)
    fine = 0.01 * (-1.0) ** torch.arange(64)[None, :] * torch.ones(64, 1)
    grad = (coarse + fine).expand(1, 3, 64, 64)
    shaped = lap_normalize(grad)
    assert high_frequency(shaped) / shaped.std() > 2 * high_frequency(grad) / grad.std()


def test_cascade_smoothing_removes_high_frequencies_and_grows_over_an_octave():
    noise = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    assert high_frequency(cascade_smooth(noise, 2.0)) < 0.3 * high_frequency(noise)
    shaping = Shaping(smooth=2.0)
    first, last = shaping(noise, 0, 10), shaping(noise, 9, 10)
    assert high_frequency(last) < high_frequency(first) < high_frequency(noise)


def test_luminance_only_steps_leave_cb_and_cr_alone():
    grad = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    step = Shaping(luminance=True)(grad, 0, 1)
    image = torch.rand(2, 3, 8, 8) * 0.5 + 0.25
    before = cbcr(image.permute(0, 2, 3, 1).numpy())
    after = cbcr((image + 0.1 * step).permute(0, 2, 3, 1).numpy())
    assert np.abs(after - before).max() < 1e-5
    assert Shaping.of(Settings()) is None  # the 2015 step, untouched, when every knob is off


@pytest.mark.parametrize(
    ("flags", "key", "value"),
    [
        (["--smooth", "2"], "smooth", 2.0),
        (["--lapnorm"], "lapnorm", True),
        (["--keep-colors"], "keep_colors", True),
    ],
)
def test_each_knob_changes_the_dream_and_is_recorded(weights_file, tmp_path, flags, key, value):
    photo = save_photo(tmp_path / "p.png", 96, 64)
    run = cli_invoker(weights_file, *FAST)
    assert run(photo, "-o", tmp_path / "plain.png").exit_code == 0
    result = run(photo, *flags, "-o", tmp_path / "knob.png")
    assert result.exit_code == 0, result.output
    plain = np.asarray(Image.open(tmp_path / "plain.png"), dtype=float)
    knob = np.asarray(Image.open(tmp_path / "knob.png"), dtype=float)
    assert np.abs(plain - knob).mean() > 0.5
    assert read_metadata(tmp_path / "knob.png")["settings"][key] == value


def test_keep_colors_keeps_the_photos_colours(weights_file, tmp_path):
    photo = save_photo(tmp_path / "p.png", 96, 64)
    run = cli_invoker(weights_file, *FAST, "--step-size", "4")
    assert run(photo, "-o", tmp_path / "plain.png").exit_code == 0
    assert run(photo, "--keep-colors", "-o", tmp_path / "kept.png").exit_code == 0
    original = cbcr(np.asarray(Image.open(photo)))
    plain = np.abs(cbcr(np.asarray(Image.open(tmp_path / "plain.png"))) - original).mean()
    kept = np.abs(cbcr(np.asarray(Image.open(tmp_path / "kept.png"))) - original).mean()
    assert kept < 0.25 * plain, (kept, plain)  # only 8-bit rounding and clipping at 0 and 255 are left


def test_the_knobs_are_preset_keys(tmp_path, weights_file):
    preset = tmp_path / "soft.yaml"
    preset.write_text("smooth: 1.5\nlapnorm: true\nkeep_colors: true\nparam: fft\n")
    shown = yaml.safe_load(cli_invoker(weights_file)("--preset", preset, "--show-settings").stdout)
    assert (shown["smooth"], shown["lapnorm"], shown["keep_colors"]) == (1.5, True, True)
    assert "param" not in shown  # retired (it set nothing): old presets and pictures hold it, it is dropped
    undone = yaml.safe_load(
        cli_invoker(weights_file)("--preset", preset, "--no-lapnorm", "--show-settings").stdout
    )
    assert undone["lapnorm"] is False
    (tmp_path / "bad.yaml").write_text("lapnorm: maybe\n")
    result = cli_invoker(weights_file)("--preset", tmp_path / "bad.yaml", "--show-settings")
    assert result.exit_code == 2 and "lapnorm: expected true or false, got 'maybe'" in result.output


# Run in a child process: a hung oneDNN kernel never gives the interpreter back, so only a
# process boundary can turn a hang into a failure.
_BF16_SHAPING = """
import functools, torch
from torch import nn
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.shaping import Shaping
from dreamcli.engine.objectives import Activations
from dreamcli.run_options import RunOptions
from dreamcli.engine.step_policy import StepPolicy

grad = torch.randn(1, 3, 23, 35, generator=torch.Generator().manual_seed(0))
shaping = Shaping(smooth=4.0, lapnorm=True, luminance=True)
plain = shaping(grad, 9, 10)
with torch.autocast("cpu", torch.bfloat16):
    shaped = shaping(grad, 9, 10)
assert shaped.dtype == torch.float32, shaped.dtype
torch.testing.assert_close(shaped, plain)
net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)).eval().requires_grad_(False)
image = torch.rand(1, 3, 23, 35, generator=torch.Generator().manual_seed(1))
with LayerCapture(net, ["2"]) as capture:
    policy = StepPolicy(capture, torch.device("cpu"), RunOptions(precision="bf16"), shaping=shaping)
    goal = Activations(["2"])
    shape = functools.partial(shaping, iteration=9, iterations=10)
    out, loss = policy.step(image, goal, 1.5, (3, -2), print, shape)
assert out.dtype == torch.float32 and torch.isfinite(out).all() and not torch.equal(out, image)
print("ok")
"""


def test_gradient_shaping_under_bf16_autocast_runs_in_float32_and_returns():
    """Issue 23: on AMX Xeons, oneDNN's bf16 depthwise kernel for the blur of a 23x35 gradient
    (sigma 4) never returned, and `dream --preset silky` hung.  Shaping runs in float32 whatever
    autocast is open, and a bf16 step with shaping finishes (on every CPU, within a minute)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _BF16_SHAPING], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
