"""dream explain: one photo's activation grid, neuron groups and attribution (random weights)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from dreamcli import models
from dreamcli.jobs import explain as explaining
from dreamcli.jobs.explain_page import write_explanation
from dreamcli.jobs.unit_options import ExplainOptions
from dreamcli.models import Loaded

from conftest import cli_invoker, save_photo

TINY = ExplainOptions(photo_size=64, grid=3, groups=2, classes=2, cell_size=32, steps=8, channels=4)


@pytest.fixture(scope="module")
def loaded():
    from dreamcli.models.prepare import prepare_for_dreaming

    network = models.get("googlenet")
    return Loaded(network, prepare_for_dreaming(network.build(seed=0), "cpu"), "random")


def test_grid_cells_and_attribution_add_up(loaded, tmp_path):
    photo = save_photo(tmp_path / "photo.png", 96, 64)
    made = explaining.explain(loaded, "inception_4a", photo, TINY)
    data = made.data
    assert data["explain"]["positions"] == [2, 4] and data["explain"]["grid"] == [2, 3]
    assert len(data["cells"]) == 6 and made.cell_pictures.shape == (6, 3, 32, 32)
    assert made.group_pictures.shape == (2, 3, 32, 32) and (made.group_maps >= 0).all()
    assert [c["name"] for c in data["classes"]] and len(data["classes"]) == 2
    # Each cell's attribution is its positions' activation x gradient: together, the whole map's.
    act, grads, classes, _ = explaining.gradients(
        loaded.module, loaded.resolve("inception_4a"), "fc", read(photo), 2
    )
    assert classes == [c["class"] for c in data["classes"]]
    total = float((act * grads[0]).sum())
    first = data["classes"][0]["name"]
    assert sum(c["attribution"][first] for c in data["cells"]) == pytest.approx(total, rel=1e-3, abs=1e-3)
    chosen = data["cell"]
    best = max(data["cells"], key=lambda c: c["attribution"][first])
    assert (chosen["row"], chosen["col"]) == (best["row"], best["col"]) and len(chosen["channels"]) == 4
    values = [abs(c["value"]) for c in chosen["channels"]]
    assert values == sorted(values, reverse=True)


def read(photo):
    from dreamcli.jobs.spatial import read_photo

    return read_photo(photo, 64)[None]


def test_a_vit_token_grid_is_explained_like_a_spatial_layer(tmp_path):
    from dreamcli.models.prepare import prepare_for_dreaming

    network = models.get("torchvision:vit_b_16")
    vit = Loaded(network, prepare_for_dreaming(network.build(None, seed=0), "cpu"), "random")
    photo = save_photo(tmp_path / "photo.png", 64, 48)
    options = ExplainOptions(photo_size=64, grid=8, groups=2, classes=1, cell_size=32, steps=8, channels=3)
    made = explaining.explain(vit, "encoder_layer_1", photo, options)
    assert made.data["explain"]["positions"] == [3, 4] and len(made.data["cells"]) == 12
    assert (made.group_maps >= 0).all() and made.data["groups"]["share"] > 0
    assert torch.isfinite(made.cell_pictures).all()


def test_the_poster_page_and_json_are_written_and_link_to_unit_pages(loaded, tmp_path):
    photo = save_photo(tmp_path / "photo.png", 96, 64)
    made = explaining.explain(loaded, "inception_4a", photo, TINY)
    site = tmp_path / "units"
    site.mkdir()
    strongest = made.data["cell"]["channels"][0]["channel"]
    (site / f"unit_{strongest:04d}.html").write_text("<p>unit</p>")
    out = tmp_path / "out" / "photo_explain.png"
    out.parent.mkdir()
    write_explanation(made, out, site)
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["poster"] == out.name
    html = out.with_suffix(".html").read_text()
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert f"../units/unit_{strongest:04d}.html" in hrefs and "photo_explain.json" in hrefs
    assert all((out.parent / h).is_file() for h in hrefs)
    assert not re.search(r'src="(?!data:)', html)  # offline: every picture inline


def test_dream_explain_from_the_command_line(weights_file, tmp_path):
    photo = save_photo(tmp_path / "photo.png", 96, 64)
    invoke = cli_invoker(weights_file, "-q")
    flags = ["--photo-size", "64", "--grid", "2", "--groups", "2", "--steps", "8", "--layer", "inception_4a"]
    result = invoke("explain", photo, *flags, "-o", f"{tmp_path / 'out'}/")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "photo_explain.html", "photo_explain.json", "photo_explain.png",
    ]  # fmt: skip
    for bad, message in (
        (["explain", tmp_path / "missing.png", *flags], "missing.png does not exist"),
        (["explain", photo, *flags, "--cell", "9,9", "-o", tmp_path / "x.png"], "outside the"),
        (["explain", photo, *flags, "--cell", "a", "-o", tmp_path / "x.png"], "ROW,COL"),
        (["explain", photo, *flags, "-o", tmp_path / "x.jpg"], "use one of png"),
        (["explain", photo, *flags, "--units", tmp_path, "-o", tmp_path / "x.png"], "no units.json"),
    ):
        result = invoke(*bad)
        assert result.exit_code != 0 and message in result.output, result.output
        assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.json").exists()


def test_an_explanation_says_how_long_its_pictures_will_take(loaded, tmp_path):
    from dreamcli.events import Note

    photo = save_photo(tmp_path / "photo.png", 96, 64)
    heard = []
    explaining.explain(loaded, "inception_4a", photo, TINY, report=heard.append)
    notes = [e.message for e in heard if isinstance(e, Note)]
    # 6 cells + 2 groups, one batch: said once, after its first steps
    assert len(notes) == 1 and re.fullmatch(
        r"8 pictures \(cells and groups\) at 32 px, 8 steps: about \d+ min here", notes[0]
    )
