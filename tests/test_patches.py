"""Adversarial patches (dreamcli.jobs.patches, patch_training, engine.placement, dream patch), on
random weights and tiny photos: mechanics only."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dreamcli import models
from dreamcli.engine.placement import draw, paste
from dreamcli.errors import SettingsError
from dreamcli.events import PhotoSkipped, Stage
from dreamcli.io.metadata import METADATA_KEY
from dreamcli.jobs.patch_training import make_patch, write_patch
from dreamcli.jobs.patches import contact_sheet, evaluate_patch, read_patch
from dreamcli.jobs.requests import PatchOptions
from dreamcli.models.base import Loaded

from conftest import cli_invoker, save_photo

FAST = PatchOptions(size=48, area=(0.05, 0.2), placements=3, steps=3, batch=4, seed=0)


@pytest.fixture(scope="module")
def loaded(net):
    return Loaded(models.get("googlenet"), net.eval(), "(random)")


@pytest.fixture
def photos(tmp_path):
    sizes = [(48, 64), (64, 48), (56, 56), (64, 60), (50, 64)]
    return [save_photo(tmp_path / f"p{i}.png", w, h, seed=i) for i, (w, h) in enumerate(sizes)]


def noise(side=12, seed=0):
    return torch.rand(3, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("height", "width"), [(40, 40), (30, 60), (64, 32)])
def test_a_placed_patch_covers_its_share_inside_the_image(height, width):
    placements = draw(6, (0.05, 0.2), 45.0, torch.Generator().manual_seed(3), aspect=width / height)
    covered = paste(torch.zeros(6, 3, height, width), torch.ones(3, 16, 16), placements)[:, 0]
    # All of the patch is inside (nothing clipped), so it covers its share of the area.
    assert torch.allclose(covered.mean((1, 2)), placements.area, atol=0.02)
    assert ((placements.area >= 0.05) & (placements.area <= 0.2)).all()
    assert (placements.angle.abs() <= 45).all()


def test_placements_are_seeded_and_the_paste_reaches_the_patch():
    a = draw(5, (0.1, 0.2), 22.5, torch.Generator().manual_seed(1))
    b = draw(5, (0.1, 0.2), 22.5, torch.Generator().manual_seed(1))
    assert a.to_list() == b.to_list() and len(a.to_list()) == 5
    patch = noise().requires_grad_(True)
    alpha = torch.zeros(1, 12, 12)
    alpha[:, :, :6] = 1  # the left half only
    out = paste(torch.zeros(5, 3, 32, 32), patch, a, alpha)
    out.sum().backward()
    assert patch.grad is not None and patch.grad[:, :, :4].abs().sum() > 0
    assert patch.grad[:, :, 8:].abs().sum() == 0  # transparent: no effect, no gradient
    with pytest.raises(ValueError, match="placements"):
        paste(torch.zeros(2, 3, 8, 8), patch, a)


def test_testing_a_patch_names_every_photo_and_is_seeded(loaded, photos, tmp_path):
    events = []
    result = evaluate_patch(loaded, photos, noise(), "toaster", FAST, report=events.append)
    assert [p["path"] for p in result.photos] == [str(p) for p in photos]
    for photo in result.photos:
        assert len(photo["before"]) == 5 and len(photo["after"]) == 5
        assert photo["placements"] == 3 and 0 <= photo["successes"] <= 3 and photo["target"] == "toaster"
        assert photo["before"][0]["p"] >= photo["before"][1]["p"]
    summary = result.summary
    assert summary["photos"] == 5 and summary["placements"] == 15 and summary["class"] == 859
    assert {e.stage for e in events if isinstance(e, Stage)} == {"testing"}
    again = evaluate_patch(loaded, photos, noise(), "toaster", FAST)
    assert again.photos == result.photos
    lines = result.lines()
    assert len(lines) == 6 and lines[-1]["summary"] is True
    json.dumps(lines)  # JSON-ready
    other = evaluate_patch(loaded, photos, noise(), "toaster", PatchOptions(**{**FAST.__dict__, "seed": 5}))
    assert other.photos != result.photos  # other placements
    sheet = contact_sheet(result)
    assert sheet.size[0] == 5 * 160 and sheet.size[1] > 160


def test_a_bad_photo_is_reported_and_left_out(loaded, photos, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    events = []
    result = evaluate_patch(loaded, [photos[0], bad, photos[1]], noise(), "859", FAST, report=events.append)
    assert [e.source for e in events if isinstance(e, PhotoSkipped)] == [bad]
    assert [s["path"] for s in result.skipped] == [str(bad)]
    assert [p["path"] for p in result.photos] == [str(photos[0]), str(photos[1])]
    # Photo 1's placements depend on its index only: the same with or without the bad photo.
    alone = evaluate_patch(loaded, [photos[0], photos[1]], noise(), "859", FAST)
    assert alone.photos[0] == result.photos[0]


def test_unknown_class_and_bad_patch_file(loaded, photos, tmp_path):
    with pytest.raises(SettingsError, match="did you mean 'toaster'"):
        evaluate_patch(loaded, photos, noise(), "toastr", FAST)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(SettingsError, match=r"--patch: .*bad\.png"):
        read_patch(tmp_path / "bad.png")
    with pytest.raises(SettingsError, match="area"):
        PatchOptions(area=(0.3, 0.2))


def test_making_a_patch_is_seeded_and_holds_photos_out(loaded, photos, tmp_path):
    events = []
    made = make_patch(loaded, photos, "toaster", FAST, report=events.append)
    side = round(48 * 0.2**0.5)
    assert made.patch.shape == (3, side, side) and made.patch.min() >= 0 and made.patch.max() <= 1
    assert len(made.losses) == 3 and made.metadata["held_out"] == "photos"
    held = made.metadata["tested_on"]
    assert len(held) == 1 and held[0] not in made.metadata["trained_on"]
    assert [p["path"] for p in made.report.photos] == held
    assert ("training", 3, 3) in {(e.stage, e.done, e.total) for e in events if isinstance(e, Stage)}
    again = make_patch(loaded, photos, "toaster", FAST)
    assert torch.equal(again.patch, made.patch) and again.report.photos == made.report.photos
    # Under 4 photos: all train, and the report is on new placements of the same photos.
    few = make_patch(loaded, photos[:2], "toaster", FAST)
    assert few.metadata["held_out"] == "placements" and len(few.report.photos) == 2
    write_patch(made, tmp_path / "patch.png", {"version": "x"})
    recorded = json.loads(Image.open(tmp_path / "patch.png").info[METADATA_KEY])
    assert recorded["patch"]["target"] == "toaster" and recorded["patch"]["side"] == side


def test_training_raises_the_target(loaded, photos):
    options = PatchOptions(size=48, area=(0.2, 0.25), placements=4, steps=12, batch=4, rate=0.1, holdout=0)
    made = make_patch(loaded, photos, "toaster", options)
    assert np.mean(made.losses[-3:]) < np.mean(made.losses[:3])


def test_patch_commands_end_to_end(photos, tmp_path, weights_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = cli_invoker(weights_file, "--size", "48", "--placements", "2")
    Image.fromarray((np.random.default_rng(0).random((10, 10, 3)) * 255).astype("uint8")).save("n.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    result = run("patch", "test", tmp_path, "--patch", "n.png", "--target", "toaster", "--json")
    assert result.exit_code == 1, result.output  # the broken photo
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines[:-1]] == [str(p) for p in photos]
    assert lines[-1]["summary"] and lines[-1]["photos"] == 5
    assert "broken.jpg" in result.stderr and (tmp_path / "patch_test.png").exists()
    table = run("patch", "test", *photos, "--patch", "n.png", "--target", "toaster", "--no-sheet")
    assert table.exit_code == 0 and "toaster: top-1 in" in table.stdout
    assert "p4.png" in table.stdout

    made = run("patch", "make", *photos, "--target", "toaster", "--steps", "2", "--batch", "2", "-o", "t.png")
    assert made.exit_code == 0, made.output
    assert "Wrote t.png" in made.stderr and "toaster: top-1 in" in made.stdout
    recorded = json.loads(Image.open("t.png").info[METADATA_KEY])
    assert recorded["patch"]["steps"] == 2 and recorded["model"].startswith("googlenet")
    again = run("patch", "make", *photos, "--target", "toaster", "--steps", "2", "-o", "t.png")
    assert again.exit_code == 0 and "Skipped" in again.stderr
    start = (
        "--start",
        f"crop:{photos[2]}:4,4,20,20",
        "--steps",
        "1",
        "-o",
        "s.png",
        "--sheet",
        "s_sheet.png",
    )
    cropped = run("patch", "make", *photos[:2], "--target", "toaster", *start)
    assert cropped.exit_code == 0 and "held-out placements" in cropped.stderr
    assert (tmp_path / "s_sheet.png").exists()
    sheet = json.loads(Image.open(tmp_path / "s_sheet.png").info[METADATA_KEY])
    assert sheet["model"] == recorded["model"] and "patch_sheet" in sheet  # the session's metadata


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("test", "--patch", "bad.png", "--target", "toaster"), "--patch: "),
        (("test", "--patch", "missing.png", "--target", "toaster"), "missing.png"),
        (("test", "--patch", "n.png", "--target", "toastr"), "did you mean 'toaster'"),
        (("make", "--target", "scuba divr"), "did you mean 'scuba diver'"),
        (("make", "--target", "toaster", "--area", "0.9"), "--area"),
        (("make", "--target", "toaster", "--start", "crop:{photo}:0,0,999,9"), "not inside"),
        (("make", "--target", "toaster", "--start", "nope.png"), "--start"),
    ],
)
def test_patch_refusals_are_one_line(photos, tmp_path, weights_file, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    save_photo(tmp_path / "n.png", 8, 8)
    args = [a.format(photo=photos[0]) for a in args]
    result = cli_invoker(weights_file, "--size", "48")("patch", *args[:1], photos[0], *args[1:])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "patch.png").exists() and not (tmp_path / "patch_test.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("make", "--target", "toaster", "--start", "s.png", "-o", "s.png", "--overwrite"), "--start s.png"),
        (("make", "--target", "toaster", "--start", "crop:s.png", "-o", "s.png", "--overwrite"), "--start"),
        (("make", "--target", "toaster", "--sheet", "s.png", "--start", "s.png", "--overwrite"), "--start"),
        (("test", "--target", "toaster", "--patch", "n.png", "-o", "n.png", "--overwrite"), "--patch n.png"),
    ],
)
def test_no_patch_output_replaces_a_file_it_reads(photos, tmp_path, weights_file, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    save_photo(tmp_path / "s.png", 40, 40, seed=7)
    save_photo(tmp_path / "n.png", 8, 8)
    before = {name: (tmp_path / name).read_bytes() for name in ("s.png", "n.png")}
    result = cli_invoker(weights_file, "--size", "48")("patch", args[0], photos[0], *args[1:])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "never overwrites an input" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert before == {name: (tmp_path / name).read_bytes() for name in before}


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ("crop:{photo}:4,4", "is not X,Y,W,H"),  # was: the photo 'p0.png:4,4' does not exist
        ("crop:{photo}:4,4,10,x", "is not X,Y,W,H"),
        ("crop:{photo}:4,4,1,1", "is 1x1; a patch needs at least 2x2 pixels"),  # was: not inside
        ("crop:{photo}:40,40,30,30", "X+W at most 48"),
    ],
)
def test_a_bad_crop_box_is_named_as_a_box(photos, tmp_path, weights_file, monkeypatch, start, message):
    monkeypatch.chdir(tmp_path)
    run = cli_invoker(weights_file, "--size", "48")
    result = run("patch", "make", photos[1], "--target", "toaster", "--start", start.format(photo=photos[0]))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "does not exist" not in result.stderr


def test_a_long_thin_patch_is_called_thin_not_small(tmp_path):
    Image.new("RGB", (10000, 10), (200, 30, 30)).save(tmp_path / "thin.png")
    with pytest.raises(SettingsError, match=r"thin.png is 10000x10, too thin for a patch: .*crop it"):
        read_patch(tmp_path / "thin.png")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(SettingsError, match=r"dot.png is 1x1, too small for a patch"):
        read_patch(tmp_path / "dot.png")


def test_patch_make_leaves_its_own_outputs_out_of_the_photos(photos, tmp_path, weights_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = cli_invoker(weights_file, "--size", "48", "--steps", "1", "--batch", "2", "--placements", "1")
    first = run("patch", "make", tmp_path, "--target", "toaster", "-o", "made.png", "--sheet", "sheet.png")
    assert first.exit_code == 0, first.output
    second = run("patch", "make", tmp_path, "--target", "toaster", "-o", "again.png", "--json")
    assert second.exit_code == 0, second.output
    recorded = json.loads(Image.open(tmp_path / "again.png").info[METADATA_KEY])["patch"]
    used = recorded["trained_on"] + recorded["tested_on"]
    assert sorted(used) == sorted({str(p) for p in photos}), used  # not made.png, not sheet.png


def test_patch_test_streams_photo_by_photo(loaded, photos, monkeypatch):
    import dreamcli.jobs.patches as patches

    seen = []
    real = patches.read_image
    monkeypatch.setattr(patches, "read_image", lambda path, *a: seen.append(("read", path)) or real(path, *a))
    result = evaluate_patch(
        loaded, photos, noise(), "toaster", FAST, on_photo=lambda line: seen.append(("scored", line["path"]))
    )
    # Each photo is read, scored and reported before the next is read: none waits for all.
    assert seen == [step for p in photos for step in (("read", p), ("scored", str(p)))]
    assert len(result.photos) == 5


def test_patch_make_refuses_photos_that_do_not_fit_before_reading_them(loaded, photos):
    from dreamcli.errors import ImageTooLargeError

    with pytest.raises(ImageTooLargeError, match=r"5 photos at --size 48 need .* give at most 2 photos, or"):
        make_patch(loaded, photos, "toaster", FAST, memory=2.5 * 2 * 3 * 48 * 48 * 4)


def test_patch_test_json_is_strict_per_photo_and_ctrl_c_keeps_a_partial_table(
    photos, tmp_path, weights_file, monkeypatch
):
    import os

    import dreamcli.jobs.patches as patches

    monkeypatch.chdir(tmp_path)
    odd = tmp_path / os.fsdecode(b"caf\xe9.png")  # a Latin-1 name: not UTF-8
    save_photo(odd, 48, 48)
    save_photo(tmp_path / "n.png", 8, 8)
    run = cli_invoker(weights_file, "--size", "48", "--placements", "1", "--no-sheet")
    result = run("patch", "test", odd, photos[0], "--patch", "n.png", "--target", "toaster", "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and "\\udc" not in result.stdout  # no lone surrogate
    first = json.loads(lines[0])
    assert first["path"].endswith("caf\ufffd.png") and os.fsencode(odd) in [
        __import__("base64").b64decode(first["path_bytes"])
    ]
    calls = []
    real = patches.placements_for

    def interrupted(index, *args, **kwargs):
        calls.append(index)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(index, *args, **kwargs)

    monkeypatch.setattr(patches, "placements_for", interrupted)
    stopped = run("patch", "test", *photos, "--patch", "n.png", "--target", "toaster")
    assert stopped.exit_code == 130, stopped.output
    assert "(interrupted after 2 of 5 photos)" in stopped.stdout
    assert "p0.png" in stopped.stdout and "p1.png" in stopped.stdout and "p2.png" not in stopped.stdout
