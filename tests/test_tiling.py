"""Tiled gradients: the same gradient as the whole image, seamless, and used when memory is short."""

import pytest
import torch

from dreamcli.config import Settings
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.objectives import Activations
from dreamcli.engine.octaves import dream
from dreamcli.engine.steps import gradient
from dreamcli.engine.tiling import Geometry, TiledGradient, choose_tile, geometry, windows
from dreamcli.errors import ImageTooLargeError
from dreamcli.events import Note
from dreamcli.run_options import RunOptions


@pytest.mark.parametrize("layers", [["conv2"], ["inception3b"], ["inception3a", "inception4c:0.5"]])
def test_tiled_gradient_matches_the_whole_image(net, layers):
    specs = Activations(layers)
    image = torch.rand(1, 3, 150, 230, generator=torch.Generator().manual_seed(1))
    with LayerCapture(net, specs.layers) as capture:
        whole, _ = gradient(capture, image, specs)
        geom = geometry(capture, torch.device("cpu"))
        tiled, _ = TiledGradient(48, geom)(capture, image, specs)
    assert geom.margin > 0 and geom.stride in (4, 8, 16)
    torch.testing.assert_close(tiled, whole, atol=1e-7 * float(whole.abs().max()) * 100, rtol=1e-4)


def test_too_small_a_margin_would_show_seams(net):
    # The check above can fail: with no margin the tiles' borders are visibly wrong.
    spec = Activations(["inception3b"])
    image = torch.rand(1, 3, 144, 240, generator=torch.Generator().manual_seed(1))
    with LayerCapture(net, ["inception3b"]) as capture:
        whole, _ = gradient(capture, image, spec)
        tiled, _ = TiledGradient(48, Geometry(0, 8))(capture, image, spec)
    assert (tiled - whole).abs().max() > 0.05 * whole.abs().max()


def test_windows_cover_the_axis_once():
    spans = windows(100, 32, 8)
    assert [(t0, t1) for _, _, t0, t1 in spans] == [(0, 32), (32, 64), (64, 96), (96, 100)]
    assert spans[1][:2] == (24, 72) and spans[0][0] == 0 and spans[-1][1] == 100


def test_forced_tiles_dream_like_the_whole_image(net):
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(2))
    settings = Settings(layers=["inception3b"], octaves=2, iterations=2, seed=0)
    whole = dream(net, image, settings=settings)
    tiled = dream(net, image, settings=settings, options=RunOptions(tile_size=32))
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=0)


def test_short_memory_tiles_and_hopeless_memory_refuses(net, monkeypatch):
    import dreamcli.engine.tiling

    used = []
    real = dreamcli.engine.tiling.TiledGradient.__init__
    monkeypatch.setattr(
        dreamcli.engine.tiling.TiledGradient, "__init__", lambda self, *a: used.append(a) or real(self, *a)
    )
    image = torch.rand(3, 96, 128)
    settings = Settings(layers=["conv2"], octaves=1, iterations=1, seed=0)
    dream(net, image, settings=settings, options=RunOptions(memory=1e9))
    assert used == []  # fits: no tiles
    dream(
        net, image, settings=settings, options=RunOptions(memory=4e6)
    )  # less than the whole image needs: tiled
    assert used and 32 <= used[0][0] < 96
    with pytest.raises(ImageTooLargeError, match=r"128x96 image does not fit in the 1.0 MB.*--max-size"):
        dream(net, image, settings=settings, options=RunOptions(memory=1e6))


def test_choose_tile_keeps_within_budget():
    geom = Geometry(margin=64, stride=16)
    assert choose_tile((100, 100), 10.0, 1e6, geom) is None
    tile = choose_tile((4000, 6000), 1000.0, 1e9, geom)
    assert tile % 16 == 0 and (tile + 128) ** 2 * 1000.0 <= 1e9


def test_out_of_memory_retries_in_tiles(net, monkeypatch):
    import dreamcli.engine.step_policy as engine

    real = engine.gradient
    whole_calls = []

    def whole_image_runs_out(capture, image, layers, sizes=None, dtype=torch.float32):
        if sizes is None:  # only the untiled call has no sizes
            whole_calls.append(1)
            raise engine.OUT_OF_MEMORY("CUDA out of memory (simulated)")
        return real(capture, image, layers, sizes, dtype)

    monkeypatch.setattr(engine, "gradient", whole_image_runs_out)
    notes = []
    image = torch.rand(3, 96, 128)
    out = dream(
        net,
        image,
        settings=Settings(layers=["inception3b"], octaves=1, iterations=2, seed=0),
        report=notes.append,
    )
    assert any(isinstance(n, Note) and "retrying in tiles" in n.message for n in notes)
    assert len(whole_calls) == 1  # the tile size is remembered for the next steps
    assert out.shape == image.shape and not torch.equal(out, image)


def test_tiles_match_for_per_image_channels_and_ignore_view_transforms(net):
    from dreamcli.engine.objectives import ChannelPerImage
    from dreamcli.engine.transforms import RandomAffine

    image = torch.rand(2, 3, 150, 230, generator=torch.Generator().manual_seed(3))
    goal = ChannelPerImage("inception3b", [5, 9])
    with LayerCapture(net, ["inception3b"]) as capture:
        whole, _ = gradient(capture, image, goal)
        geom = geometry(capture, torch.device("cpu"))
        tiled, _ = TiledGradient(48, geom)(capture, image, goal)
        transformed = ChannelPerImage("inception3b", [5, 9], transform=RandomAffine(0))
        tiled_without_view, _ = TiledGradient(48, geom)(capture, image, transformed)
    torch.testing.assert_close(tiled, whole, atol=1e-5 * float(whole.abs().max()), rtol=1e-4)
    torch.testing.assert_close(tiled_without_view, whole, atol=1e-5 * float(whole.abs().max()), rtol=1e-4)


@pytest.mark.parametrize("size", [(161, 133), (160, 128)])
def test_tiles_are_exact_on_same_padding_at_odd_sizes(size):
    """inception5h pads like TensorFlow ("SAME", by the input's size): each window is padded as the
    whole image is, since the windows' sizes follow the image's modulo the stride."""
    from dreamcli import models
    from dreamcli.engine.tiling import full_sizes
    from dreamcli.models.prepare import prepare_for_dreaming

    def cosine(a, b):
        return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))

    model = prepare_for_dreaming(models.get("inception5h").build(None, seed=0), "cpu")
    specs = Activations(["mixed3a"])
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(2))
    with LayerCapture(model, specs.layers) as capture:
        whole, _ = gradient(capture, image, specs)
        geom = geometry(capture, torch.device("cpu"))
        tiled, _ = TiledGradient(32, geom)(capture, image, specs)
        sizes, unaligned = full_sizes(capture, size), torch.zeros_like(whole)
        for ya, yb, y0, y1 in windows(size[0], 32, geom.margin):  # the windows of the tile grid alone
            for xa, xb, x0, x1 in windows(size[1], 32, geom.margin):
                part, _ = gradient(capture, image[..., ya:yb, xa:xb], specs, sizes)
                unaligned[..., y0:y1, x0:x1] = part[..., y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    torch.testing.assert_close(tiled, whole, atol=1e-5 * float(whole.abs().max()), rtol=1e-3)
    odd = size[0] % 2 or size[1] % 2
    assert (cosine(unaligned, whole) < 0.9) == bool(odd)  # what the windows' sizes fix
