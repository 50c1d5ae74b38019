"""dream units: unit pages with dataset examples from the photos (random weights: mechanics only)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from dreamcli.events import Note
from dreamcli.jobs import unit_pictures, units
from dreamcli.jobs.spatial import groups_of, layer_map, nmf, read_photo
from dreamcli.jobs.unit_options import UnitsOptions
from dreamcli.models import Loaded, get

from conftest import cli_invoker, save_photo

LAYER = "inception_4a"
TINY = {"photo_size": 64, "size": 32, "steps": 8, "diverse": 2, "examples": 3, "batch": 2}


@pytest.fixture(scope="module")
def loaded():
    network = get("googlenet")
    from dreamcli.models.prepare import prepare_for_dreaming

    return Loaded(network, prepare_for_dreaming(network.build(seed=0), "cpu"), "random")


@pytest.fixture
def photos(tmp_path):
    return [save_photo(tmp_path / f"p{i}.png", 80 + 8 * i, 64, seed=i) for i in range(3)]


def links(folder: Path) -> list[str]:
    """Every href and src of the site's pages, which must all be relative files in it."""
    found = []
    for page in folder.glob("*.html"):
        found += re.findall(r'(?:href|src)="([^"]+)"', page.read_text(encoding="utf-8"))
    return found


def test_examples_are_the_views_a_brute_force_scan_ranks_highest(loaded, photos, tmp_path):
    options = UnitsOptions(channels=(3, 40, 7), **TINY)
    site = units.make_units(loaded, LAYER, photos, tmp_path / "site", options)
    module, name = loaded.module, loaded.resolve(LAYER)
    every = []  # (value, photo, view) of every view, each channel's peak by a full scan
    for path in photos:
        rgb = read_photo(path, 64, zoom=2)
        for view, _box, image in units.views_of(rgb, 64, crops=True):
            every.append((str(path), view, layer_map(module, name, image[None])[0].amax((1, 2))))
    assert len(every) == 15
    for unit in site["list"]:
        channel = unit["channel"]
        ranked = sorted(every, key=lambda e: -float(e[2][channel]))[:3]
        assert [(e["photo"], e["view"]) for e in unit["examples"]] == [(p, v) for p, v, _ in ranked]
        for example, (_, _, peaks) in zip(unit["examples"], ranked, strict=True):
            assert example["value"] == pytest.approx(float(peaks[channel]), abs=1e-4)
            left, top, right, bottom = example["box"]
            assert 0 <= left < example["x"] < right <= 1 and 0 <= top < example["y"] < bottom <= 1
    # The index is sorted by how strongly the photos drive each unit.
    scores = [u["score"] for u in site["list"]]
    assert scores == sorted(scores, reverse=True) and {u["channel"] for u in site["list"]} == {3, 40, 7}


def test_the_site_is_offline_and_its_links_resolve(loaded, photos, tmp_path):
    folder = tmp_path / "site"
    site = units.make_units(loaded, LAYER, photos, folder, UnitsOptions(top=2, **TINY))
    assert len(site["list"]) == 2 and (folder / "index.html").is_file()
    found = links(folder)
    assert len(found) > 10
    for link in found:
        assert not re.match(r"[a-z]+:", link) and not link.startswith("/"), link
        assert (folder / link).is_file(), link
    described = json.loads((folder / "units.json").read_text())
    unit = described["list"][0]
    assert set(unit["pictures"]) == {"feature", "negative", "diverse1", "diverse2"}
    assert unit["values"]["feature"]["mean"] > unit["values"]["negative"]["mean"]


def test_a_rerun_with_more_channels_makes_only_the_new_ones(loaded, photos, tmp_path, monkeypatch):
    made: list[list[int]] = []
    real = units.make_unit_pictures

    def counting(module, layer, channels, options, **kwargs):
        made.append(list(channels))
        return real(module, layer, channels, options, **kwargs)

    monkeypatch.setattr(units, "make_unit_pictures", counting)
    folder = tmp_path / "site"
    units.make_units(loaded, LAYER, photos[:2], folder, UnitsOptions(channels=(1, 2), **TINY))
    site = units.make_units(loaded, LAYER, photos, folder, UnitsOptions(channels=(1, 2, 5), **TINY))
    assert made == [[1, 2], [5]] and len(site["list"]) == 3
    assert len(site["units"]["photos"]) == 3  # the examples come from the photos of this run
    # Other picture settings are another key: made again.
    units.make_units(loaded, LAYER, photos, folder, UnitsOptions(channels=(1,), **{**TINY, "steps": 16}))
    assert made[-1] == [1]


def test_an_interrupted_run_leaves_a_valid_site_of_the_finished_units(loaded, photos, tmp_path, monkeypatch):
    real = units.make_unit_pictures
    calls = []

    def interrupted(module, layer, channels, options, **kwargs):
        calls.append(channels)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(module, layer, channels, options, **kwargs)

    monkeypatch.setattr(units, "make_unit_pictures", interrupted)
    folder = tmp_path / "site"
    with pytest.raises(KeyboardInterrupt):
        units.make_units(loaded, LAYER, photos, folder, UnitsOptions(channels=(1, 2, 3, 4), **TINY))
    described = json.loads((folder / "units.json").read_text())
    assert sorted(u["channel"] for u in described["list"]) == [1, 2]
    assert all((folder / link).is_file() for link in links(folder))
    assert not list(folder.rglob("*.part"))


def test_diverse_pictures_of_a_unit_push_apart_at_the_layer():
    act = torch.rand(4, 6, 3, 3, generator=torch.Generator().manual_seed(0))
    cos = unit_pictures.gram_cosines(act)
    assert cos.shape == (4, 4) and torch.allclose(cos.diagonal(), torch.ones(4))
    slots = unit_pictures.plan([2, 5], diverse=2)
    assert [(s.channel, s.kind) for s in slots] == [
        (2, "feature"), (5, "feature"), (2, "negative"), (5, "negative"),
        (2, "diverse"), (2, "diverse"), (5, "diverse"), (5, "diverse"),
    ]  # fmt: skip
    outputs = {"x": torch.rand(8, 6, 3, 3, generator=torch.Generator().manual_seed(1))}
    plain = unit_pictures.UnitGoal("x", slots, 0.0)(outputs)
    diverse = unit_pictures.UnitGoal("x", slots, 1.0)(outputs)
    assert torch.equal(plain[:4], diverse[:4]) and (diverse[4:] < plain[4:]).all()
    assert torch.isclose(plain[2], -outputs["x"][2, 2].mean())


def test_groups_are_non_negative_and_reconstruct_the_activations(loaded, photos):
    rank3 = torch.rand(40, 3, generator=torch.Generator().manual_seed(0)) @ torch.rand(3, 12)
    w, h = nmf(rank3, 3, iterations=2000)
    assert (w >= 0).all() and (h >= 0).all()
    assert float((rank3 - w @ h).norm() / rank3.norm()) < 0.02
    act = layer_map(loaded.module, loaded.resolve(LAYER), read_photo(photos[0], 96)[None])[0]
    shares = []
    for k in (2, 6):
        groups = groups_of(act, k)
        assert (groups.maps >= 0).all() and groups.maps.shape == (k, *act.shape[1:])
        rebuilt = torch.einsum("kp,kc->cp", groups.maps.flatten(1), groups.directions).reshape(act.shape)
        share = 1 - float((act - rebuilt).pow(2).sum() / act.pow(2).sum())
        assert share == pytest.approx(groups.share, abs=1e-4)
        shares.append(share)
    assert 0 < shares[0] < shares[1] <= 1
    signed = act - act.mean()  # a layer without ReLU: split into positive and negative parts
    groups = groups_of(signed, 6)
    assert (groups.maps >= 0).all() and (groups.directions < 0).any() and groups.share > 0.5


def test_dream_units_from_the_command_line(weights_file, photos, tmp_path):
    invoke = cli_invoker(weights_file, "-q")
    folder = tmp_path / "site"
    sizes = ["--photo-size", "64", "--size", "32", "--steps", "8", "--diverse", "2", "--examples", "2"]
    result = invoke("units", *photos[:2], "--layer", f"{LAYER}[0-1]", *sizes, "-o", folder)
    assert result.exit_code == 0, result.output
    assert len(json.loads((folder / "units.json").read_text())["list"]) == 2
    (tmp_path / "file").write_text("x")
    result = invoke("units", *photos, "--layer", LAYER, "-o", tmp_path / "file")
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "it is a file" in result.output
    result = invoke("units", *photos, "--layer", f"{LAYER}[0-1]", "--diverse", "1", "-o", tmp_path / "new")
    assert (
        result.exit_code == 2 and "at least 2 pictures" in result.output and not (tmp_path / "new").exists()
    )


def test_a_unit_site_says_how_long_its_pictures_will_take(loaded, photos, tmp_path):
    heard = []
    units.make_units(
        loaded, LAYER, photos, tmp_path / "site", UnitsOptions(top=2, **TINY), report=heard.append
    )
    notes = [e.message for e in heard if isinstance(e, Note)]
    assert len(notes) == 1 and notes[0].startswith("2 units to picture at 32 px")
    assert "a rerun keeps the units already made" in notes[0]


def test_a_vit_token_grid_has_unit_pages_like_a_spatial_layer(photos, tmp_path):
    from dreamcli.models.prepare import prepare_for_dreaming

    network = get("torchvision:vit_b_16")
    vit = Loaded(network, prepare_for_dreaming(network.build(None, seed=0), "cpu"), "random")
    options = UnitsOptions(channels=(5, 700), **{**TINY, "photo_size": 48, "diverse": 0})
    site = units.make_units(vit, "encoder_layer_1", photos, tmp_path / "site", options)
    assert sorted(u["channel"] for u in site["list"]) == [5, 700] and site["units"]["channels"] == 768
    # An example's place is a token's: on the 3x3 grid of a 48-px photo, each centre is (k + 0.5) / 3
    # of its view (the whole photo: its four corners were scanned at 48 px too).
    whole = [e for u in site["list"] for e in u["examples"] if e["view"] == "whole"]
    assert whole and all(round(e["x"] * 3 - 0.5, 4) % 1 == 0 for e in whole)
    assert all((tmp_path / "site" / link).is_file() for link in links(tmp_path / "site"))
