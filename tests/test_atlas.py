"""The activation atlas (dreamcli.jobs.atlas) and its objective, on random weights and tiny photos."""

import builtins
import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from dreamcli import models
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.objectives import Direction
from dreamcli.errors import SettingsError
from dreamcli.events import PhotoSkipped, Stage
from dreamcli.jobs.atlas import make_atlas, write_atlas
from dreamcli.jobs.atlas_layout import layout
from dreamcli.jobs.requests import AtlasOptions
from dreamcli.models.base import Loaded

from conftest import save_photo

LAYER = "inception_3b"
FAST = AtlasOptions(
    grid=3, cell_size=32, size=64, samples_per_image=5, method="pca", min_count=1, steps=4, batch=9, seed=0
)


@pytest.fixture(scope="module")
def loaded(net):
    return Loaded(models.get("googlenet"), net.eval(), "(random)")


@pytest.fixture
def photos(tmp_path):
    sizes = [(48, 64), (64, 48), (56, 56), (64, 60), (50, 64), (64, 64)]
    return [save_photo(tmp_path / f"p{i}.png", w, h, seed=i) for i, (w, h) in enumerate(sizes)]


def test_atlas_has_the_grid_and_names_real_photos(loaded, photos, tmp_path):
    events = []
    atlas = make_atlas(loaded, LAYER, photos, FAST, report=events.append)
    assert atlas.image.size == (3 * 32, 3 * 32)
    assert atlas.metadata["samples"] == 6 * 5 and atlas.metadata["method"] == "pca"
    assert sum(cell["count"] for cell in atlas.cells) == atlas.metadata["samples"]
    sizes = {str(p): Image.open(p).size for p in photos}
    for cell in atlas.cells:
        assert 0 <= cell["row"] < 3 and 0 <= cell["col"] < 3 and cell["photos"]
        for entry in cell["photos"]:
            width, height = sizes[entry["path"]]
            assert 0 <= entry["x"] < width and 0 <= entry["y"] < height
    # Rendered cells are pictures; the empty ones stay the background.
    pixels = np.asarray(atlas.image)
    filled = {(c["row"], c["col"]) for c in atlas.cells}
    for r in range(3):
        for c in range(3):
            tile = pixels[r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32]
            assert (tile == 255).all() != ((r, c) in filled)
    stages = {e.stage for e in events if isinstance(e, Stage)}
    assert stages == {"activations", "layout", "render"}
    write_atlas(atlas, tmp_path / "atlas.png")
    assert Image.open(tmp_path / "atlas.png").size == (96, 96)
    data = json.loads((tmp_path / "atlas.json").read_text())
    assert data["atlas"]["grid"] == 3 and data["atlas"]["layer"] == LAYER and data["skipped"] == []
    assert {e["path"] for c in data["cells"] for e in c["photos"]} <= set(sizes)


def test_same_seed_same_atlas(loaded, photos):
    first = make_atlas(loaded, LAYER, photos, FAST)
    second = make_atlas(loaded, LAYER, photos, FAST)
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    assert first.cells == second.cells


def test_a_bad_photo_is_reported_and_the_others_used(loaded, photos, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    events = []
    atlas = make_atlas(loaded, LAYER, [*photos[:3], bad, *photos[3:]], FAST, report=events.append)
    skipped = [e for e in events if isinstance(e, PhotoSkipped)]
    assert [e.source for e in skipped] == [bad] and "broken.jpg" in skipped[0].error
    assert atlas.skipped == [{"path": str(bad), "error": skipped[0].error}]
    assert atlas.metadata["photos_used"] == 6 and atlas.metadata["samples"] == 30


def test_reservoir_caps_the_samples_and_labels_name_classes(loaded, photos):
    options = AtlasOptions(**{**FAST.__dict__, "max_samples": 12, "labels": True})
    atlas = make_atlas(loaded, LAYER, photos, options)
    assert atlas.metadata["samples"] == 12 and atlas.metadata["samples_seen"] == 30
    assert sum(cell["count"] for cell in atlas.cells) == 12
    names = loaded.network.class_names()
    assert all(cell["label"] == names[cell["class"]] for cell in atlas.cells)


def test_direction_objective_value_and_ascent(net):
    act = torch.tensor([[[[3.0]], [[4.0]]], [[[0.0]], [[2.0]]]])  # 2 images, 2 channels, 1 position
    goal = Direction("x", torch.tensor([[1.0, 0.0], [0.0, 2.0]]), power=1.0)
    # image 0: dot 3, cos 3/5 -> 1.8; image 1: dot 2, cos 1 -> 2
    assert torch.allclose(goal({"x": act}), torch.tensor([1.8, 2.0]))
    assert torch.allclose(
        Direction("x", torch.tensor([1.0, 0.0]), power=0)({"x": act}), torch.tensor([3.0, 0.0])
    )
    # Pooled, the value is the mean activation's: two positions that each point elsewhere
    # ([3, 0] and [0, 4]) pool to [1.5, 2], whose dot with [0, 1] is 2 and cosine 0.8.
    spread = torch.tensor([[[[3.0, 0.0]], [[0.0, 4.0]]]])
    pooled = Direction("x", torch.tensor([0.0, 1.0]), power=1.0, pooled=True)({"x": spread})
    assert torch.allclose(pooled, torch.tensor([1.6]))
    each = Direction("x", torch.tensor([0.0, 1.0]), power=1.0)({"x": spread})
    assert torch.allclose(each, torch.tensor([(0.0 * 0.1 + 4.0 * 1.0) / 2]))
    # Optimised, the value rises.
    direction = torch.randn(480, generator=torch.Generator().manual_seed(0)).relu()
    goal = Direction("inception3b", direction)
    image = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=0.05)
    with LayerCapture(net, ["inception3b"]) as capture, torch.enable_grad():
        values = []
        for _ in range(8):
            optimizer.zero_grad()
            value = goal(capture(image))
            (-value.sum()).backward()
            optimizer.step()
            values.append(float(value.detach()))
    assert values[-1] > values[0]


def test_missing_umap_names_the_extra(loaded, photos, monkeypatch):
    real_import = builtins.__import__

    def no_umap(name, *args, **kwargs):
        if name == "umap" or name.startswith("umap.") or name.startswith("sklearn"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_umap)
    for method in ("umap", "tsne"):
        with pytest.raises(SettingsError, match=r"pip install 'dreamcli\[atlas\]'"):
            make_atlas(loaded, LAYER, photos, AtlasOptions(**{**FAST.__dict__, "method": method}))
        with pytest.raises(SettingsError, match="dreamcli"):
            layout(torch.randn(10, 4), method)


def test_bad_options_and_layer_are_settings_errors(loaded, photos):
    with pytest.raises(SettingsError, match="method"):
        AtlasOptions(method="mds")
    with pytest.raises(SettingsError, match="grid"):
        AtlasOptions(grid=0)
    with pytest.raises(SettingsError, match="inception_9x"):
        make_atlas(loaded, "inception_9x", photos, FAST)


def test_pca_layout_is_deterministic():
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    a, b = layout(x, "pca"), layout(x.clone(), "pca")
    assert a.shape == (50, 2) and torch.equal(a, b)


def test_the_dream_command_makes_an_atlas_of_a_folder(photos, tmp_path, weights_file):
    from conftest import cli_invoker

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a whole jpeg")
    fast = ["--grid", "3", "--method", "pca", "--samples", "4", "--photo-size", "64"]
    invoke = cli_invoker(weights_file, *fast, "--steps", "8", "--layer", LAYER)

    def run(*args):
        return invoke("atlas", *args)

    stale = tmp_path / "maps" / ".atlas.json.xyz12345.part"  # a JSON write killed days ago
    stale.parent.mkdir()
    stale.write_text("{half")
    os.utime(stale, (time.time() - 3 * 86400,) * 2)
    result = run(tmp_path, "-o", f"{tmp_path / 'maps'}/")
    assert result.exit_code == 1, result.output
    assert not stale.exists()  # the atlas is made; the broken photo is named
    assert "broken.jpg" in result.stderr and "Traceback" not in result.output
    atlas = Image.open(tmp_path / "maps" / "atlas.png")
    assert atlas.size == (3 * 64, 3 * 64)
    described = json.loads((tmp_path / "maps" / "atlas.json").read_text())
    assert described["atlas"]["photos_used"] == 6 and described["atlas"]["layer"] == LAYER
    named = {entry["path"] for cell in described["cells"] for entry in cell["photos"]}
    assert named <= {str(p) for p in photos} and named
    assert [s["path"] for s in described["skipped"]] == [str(tmp_path / "broken.jpg")]

    again = run(tmp_path, "-o", f"{tmp_path / 'maps'}/")
    assert again.exit_code == 0 and "Skipped" in again.stderr  # kept unless --overwrite
    # Another format of the same name would share (and replace) the first atlas's JSON.
    other = run(tmp_path, "-o", tmp_path / "maps" / "atlas.jpg")
    assert other.exit_code == 2 and "atlas.json exists, the map of atlas.png" in other.stderr
    assert json.loads((tmp_path / "maps" / "atlas.json").read_text()) == described
    # A run killed between the JSON and the picture: the same command makes the atlas again.
    (tmp_path / "maps" / "atlas.png").unlink()
    assert run(tmp_path, "-o", f"{tmp_path / 'maps'}/").exit_code == 1  # the broken photo, as before
    assert (tmp_path / "maps" / "atlas.png").exists()
    channels = run(tmp_path, "-o", tmp_path / "x.png", "--layer", "inception_4c[1]")
    assert channels.exit_code == 2 and "one whole layer" in channels.stderr


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (("-o", "{photos}/p0.png", "--overwrite"), 2, "never overwrites an input"),
        (("--zoom", "3"), 2, "it is now: dream zoom"),
        (("--shard", "1/2"), 2, "No such option"),
        (("--grid", "40", "--samples", "1"), 1, "make the grid smaller"),  # no cell has 3
        (("--preset", "deep"), 2, "add e.g. --layer"),
    ],
)
def test_atlas_refusals_are_one_line(photos, tmp_path, weights_file, extra, code, message):
    from conftest import cli_invoker

    before = photos[0].read_bytes()
    fast = ["--method", "pca", "--photo-size", "64", "--steps", "8"]
    run = cli_invoker(weights_file, *fast)
    extra = [e.format(photos=tmp_path) for e in extra]
    out = [] if "-o" in extra else ["-o", tmp_path / "a.png"]
    result = run("atlas", tmp_path, *out, *extra)
    assert result.exit_code == code, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert photos[0].read_bytes() == before
    assert not (tmp_path / "a.png").exists()


def test_an_atlas_of_photos_that_all_fail_exits_1(tmp_path, weights_file):
    from conftest import cli_invoker

    for name in ("x.jpg", "y.png"):
        (tmp_path / name).write_bytes(b"broken")
    result = cli_invoker(weights_file, "--method", "pca")("atlas", tmp_path, "-o", tmp_path / "a.png")
    assert result.exit_code == 1
    assert "none of the 2 photos" in result.stderr and "x.jpg" in result.stderr


@pytest.mark.skipif(os.name != "posix", reason="POSIX file names are bytes")
def test_a_photo_name_that_is_not_utf8_is_written_and_read_back(loaded, photos, tmp_path):
    odd = tmp_path / os.fsdecode(b"caf\xe9.png")
    odd.write_bytes(photos[0].read_bytes())
    atlas = make_atlas(loaded, LAYER, [odd, *photos[1:]], FAST)
    write_atlas(atlas, tmp_path / "atlas.png")  # the JSON first, then the picture: both, or neither
    described = json.loads((tmp_path / "atlas.json").read_text("ascii"))
    named = {os.fsencode(entry["path"]) for cell in described["cells"] for entry in cell["photos"]}
    assert os.fsencode(odd) in named
    assert (tmp_path / "atlas.png").exists()


def test_a_class_comparison_atlas_attributes_each_cell(loaded, photos, tmp_path):
    options = AtlasOptions(**{**FAST.__dict__, "compare": ("snorkel", "scuba diver")})
    atlas = make_atlas(loaded, LAYER, photos, options)
    legend = atlas.image.height - 3 * 32
    assert atlas.image.width == 3 * 32 and legend > 0  # the grid, and a legend under it
    for cell in atlas.cells:
        assert set(cell["attribution"]) == {"snorkel", "scuba diver"} and cell["photos"]
    again = make_atlas(loaded, LAYER, photos, options)
    assert again.cells == atlas.cells
    assert np.array_equal(np.asarray(again.image), np.asarray(atlas.image))
    # Framed cells: a cell's border is not its picture; the plain atlas has the same cells.
    plain = make_atlas(loaded, LAYER, photos, FAST)
    assert [(c["row"], c["col"], c["count"]) for c in plain.cells] == [
        (c["row"], c["col"], c["count"]) for c in atlas.cells
    ]
    write_atlas(atlas, tmp_path / "cmp.png")
    described = json.loads((tmp_path / "cmp.json").read_text())
    assert described["atlas"]["compare"] == ["snorkel", "scuba diver"]
    assert all("attribution" in cell for cell in described["cells"])


def test_attribution_is_activation_times_gradient(net):
    from dreamcli.jobs.atlas_samples import Attribution, _attributed

    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    act, scores = _attributed(net, "inception3b", Attribution("fc", 801, 983), image)
    with LayerCapture(net, ["inception3b"]) as capture:
        reference = capture(image)["inception3b"]
    assert torch.allclose(act, reference, atol=1e-5) and scores.shape == (2, *act.shape[-2:])
    # The difference of the two is the attribution to logit A - logit B (it is linear).
    leaf = act.clone().requires_grad_(True)
    rest = dict(net.named_modules())["inception3b"]
    handle = rest.register_forward_hook(lambda m, i, o: leaf)
    try:
        with torch.enable_grad(), LayerCapture(net, ["fc"]) as capture:
            logits = capture(image)["fc"][0]
            (grad,) = torch.autograd.grad(logits[801] - logits[983], leaf)
    finally:
        handle.remove()
    assert torch.allclose(scores[0] - scores[1], (act * grad).sum(1)[0], atol=1e-4)


def test_compare_refusals_are_one_line(photos, tmp_path, weights_file):
    from conftest import cli_invoker

    run = cli_invoker(weights_file, "--method", "pca", "--photo-size", "64", "--steps", "8", "--grid", "3")
    for value, message in (
        ("snorkel,scuba divr", "did you mean 'scuba diver'"),
        ("snorkel", "two different"),
    ):
        result = run("atlas", tmp_path, "-o", tmp_path / "a.png", "--compare", value)
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "a.png").exists()
    made = run("atlas", tmp_path, "-o", tmp_path / "a.png", "--compare", "snorkel, 983", "--samples", "4")
    assert made.exit_code == 0, made.output
    cells = json.loads((tmp_path / "a.json").read_text())["cells"]
    assert all(set(c["attribution"]) == {"snorkel", "scuba diver"} for c in cells)


def test_too_few_samples_and_too_thin_photos_are_said_plainly(loaded, photos, tmp_path):
    from dreamcli.errors import DreamError

    one = AtlasOptions(**{**FAST.__dict__, "samples_per_image": 2, "min_count": 3})
    with pytest.raises(
        DreamError, match=r"too few samples for an atlas: 2 from 1 photos, and a cell is drawn"
    ):
        make_atlas(loaded, LAYER, [photos[0]], one)  # was: "has 3 of the 2 samples"
    Image.new("RGB", (2000, 12), (90, 140, 40)).save(tmp_path / "wide.png")
    events = []
    make_atlas(loaded, "inception_4c", [*photos, tmp_path / "wide.png"], FAST, report=events.append)
    (skipped,) = [e for e in events if isinstance(e, PhotoSkipped)]
    assert "wide.png: it is 2000x12 px, too thin for layer inception4c" in skipped.error
    assert "Given input size" not in skipped.error
