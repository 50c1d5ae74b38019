"""The page of ``dream serve`` in a real headless Chromium (the system's, driven by Playwright):
upload the sample, start two styles, wait for both tiles, download one; a second page
sees them; one is edited and dreamed again.

Skipped, with one line saying why, where Playwright or a Chromium binary is missing;
``DREAMCLI_CHROMIUM`` names the binary when it is not on PATH as chromium.  The screenshot
of the finished page goes to ``DREAMCLI_SCREENSHOT`` when set.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from web_server import running_server

from dreamcli.io.metadata import read_metadata

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str | None:
    named = os.environ.get("DREAMCLI_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    binary = chromium()
    if binary is None:
        pytest.skip("no Chromium here (apt-get install chromium, or set DREAMCLI_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="no Playwright (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"], headless=True)
        yield launched
        launched.close()


def test_the_page_dreams_two_styles_side_by_side_and_downloads_one(browser, weights_file, tmp_path):
    with running_server(weights_file, max_size=96) as served:
        page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        page.set_default_timeout(120_000)  # a loaded CI machine: generous, it only waits when slow
        page.goto(served.config.url())
        page.wait_for_selector("#presets input[value=preview]")
        sample = resources.files("dreamcli.data") / "sample.jpg"
        page.set_input_files("#file", str(sample))  # an upload, as a user's photo is
        page.wait_for_selector("#photo-name:has-text('sample.jpg, 384×256')")
        page.check("#presets input[value=preview]")
        page.select_option("#layers", ["inception_3a"])
        page.click("#dream")
        page.locator(".tile[data-state=done]").nth(1).wait_for(timeout=120_000)
        tiles = page.locator(".tile")
        assert tiles.count() == 2
        labels = sorted(tiles.nth(i).locator(".label").inner_text() for i in range(2))
        assert labels == ["inception_3a · sample.jpg", "preview · sample.jpg"]
        # Each tile showed an octave's picture before its last; its command line reproduces it.
        seen = page.evaluate("Object.keys(window.dreamTimings.firstOctave).length")
        assert seen == 2
        command = tiles.nth(0).locator(".command").inner_text()
        assert command.startswith("dream sample.jpg --preset preview --max-size 96 --seed")
        shot = os.environ.get("DREAMCLI_SCREENSHOT") or str(tmp_path / "serve.png")
        page.screenshot(path=shot, full_page=True)
        with page.expect_download() as download:
            tiles.nth(0).locator(".download").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name.startswith("sample_preview_") and saved.suffix == ".png"
        meta = read_metadata(saved)
        assert meta["preset"] == "preview" and meta["settings"]["max_size"] == 96
        assert str(meta["settings"]["seed"]) in command

        # A second page sees the same tiles; a tile's settings are edited and it runs again.
        other = browser.new_page()
        other.set_default_timeout(120_000)
        other.goto(served.config.url())
        other.locator(".tile[data-state=done]").nth(1).wait_for(timeout=60_000)
        layer = tiles.nth(1)
        layer.locator(".edit").click()
        layer.locator("input[name=iterations]").fill("3")
        layer.locator("button[type=submit]").click()
        page.locator(".tile .command", has_text="--iterations 3").wait_for(timeout=60_000)
        page.locator(".tile[data-state=done]").nth(1).wait_for(timeout=120_000)
        assert tiles.count() == 2 and "--iterations 3" in layer.locator(".command").inner_text()
        other.locator(".tile .command", has_text="--iterations 3").wait_for(timeout=60_000)
        assert other.locator(".tile").count() == 2
        other.close()
        page.close()


def test_a_photo_with_any_name_uploads_and_its_command_names_it_exactly(browser, weights_file, tmp_path):
    """Cyrillic, CJK, an emoji, macOS's U+202F and parentheses: a header cannot carry them
    as they are, so the page sends the name encoded and the tile's command quotes it."""
    import shlex

    from conftest import save_photo

    name = "Screenshot 2024-05-01 at 1.02.03\u202fPM (2) Снимок 猫 🐱.png"
    photo = save_photo(tmp_path / name)
    with running_server(weights_file, max_size=64) as served:
        page = browser.new_page(accept_downloads=True)
        page.set_default_timeout(120_000)
        page.goto(served.config.url())
        page.wait_for_selector("#layers option[value=inception_3a]")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("#dream:not([disabled])")
        assert page.inner_text("#photo-name") == f"{name}, 96×64", page.inner_text("#message")
        page.select_option("#layers", ["inception_3a"])
        page.click("#dream")
        tile = page.locator(".tile[data-state=done]").first
        tile.wait_for(timeout=120_000)
        assert tile.locator(".label").inner_text() == f"inception_3a · {name}"
        command = tile.locator(".command").inner_text()
        assert shlex.split(command)[1] == name, command
        with page.expect_download() as download:
            tile.locator(".download").click()
        saved = tmp_path / "downloaded.png"
        download.value.save_as(saved)
        assert read_metadata(saved)["input"] == name
        page.close()


def test_the_page_explains_the_photo_and_shows_a_channels_unit_with_examples(browser, weights_file, tmp_path):
    """Inside the network, end to end: the sample, Explain, the grid over the photo, a cell and
    its strongest channels, a channel's unit with an example from the session's photos."""
    with running_server(weights_file, max_size=96) as served:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(served.config.url())
        page.wait_for_selector("#explain-layer option[value=inception_4a]", state="attached")
        assert page.input_value("#explain-layer") == "inception_4c"  # the network's default layer
        page.click("#sample")
        page.select_option("#explain-layer", "inception_4a")
        page.click("details summary")
        tiny = {
            "#explain-fields": {"photo_size": 64, "grid": 3, "groups": 2, "cell_size": 32, "steps": 8},
            "#unit-fields": {"photo_size": 64, "size": 32, "steps": 8, "diverse": 2, "examples": 2},
        }
        for box, values in tiny.items():
            for name, value in values.items():
                page.fill(f"{box} [name={name}]", str(value))
        page.click("#explain")
        panel = page.locator(".explanation[data-state=done]")
        panel.locator(".cells .cell").first.wait_for(timeout=120_000)
        command = panel.locator(".command").first.inner_text()
        assert command.startswith("dream explain ") and "sample.jpg --layer inception_4a" in command
        assert "--grid 3 --groups 2 --steps 8 --cell-size 32 --photo-size 64" in command
        cells = panel.locator(".cells .cell")
        assert cells.count() == 6 and panel.locator(".groups .group").count() == 2  # 2x3 at 64 px
        assert "Top classes:" in panel.locator(".classes").inner_text()
        loaded = (
            "[...document.querySelectorAll('.explanation img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        page.wait_for_function(loaded)  # every picture came through the token's file route

        cells.nth(4).click()
        assert panel.locator(".cell-title").inner_text() == "Cell 1,1"
        assert "chosen" in (cells.nth(4).get_attribute("class") or "")
        channels = panel.locator(".hinton .channel")
        assert channels.count() == 12
        channel = channels.first.get_attribute("data-channel")
        channels.first.click()
        unit = panel.locator(".unit[data-state=done]")
        unit.locator(".examples tr.example").first.wait_for(timeout=120_000)
        assert unit.locator(".unit-label").inner_text() == f"inception_4a unit {channel}"
        assert unit.locator(".examples tr.example").count() >= 1
        assert "sample.jpg" in unit.locator(".examples").inner_text()
        assert unit.locator(".unit-pictures figure").count() == 4  # feature, 2 diverse, negative
        page.wait_for_function(loaded.replace(".explanation img", ".unit img"))
        shot = os.environ.get("DREAMCLI_SCREENSHOT_INSIDE") or str(tmp_path / "inside.png")
        page.screenshot(path=shot, full_page=True)
        page.close()
