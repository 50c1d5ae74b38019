"""The run layer (``dreamcli.run``) on its own: a recipe resolved once, a session opened once, its
pipeline; and that the CLI, the Python API, the page and a Ray worker, all adapters of it, give
the same pixels and the same metadata for one request."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from PIL import Image

from dreamcli import models
from dreamcli.config import LayerSpec, Settings
from dreamcli.errors import SettingsError
from dreamcli.io.metadata import read_metadata
from dreamcli.jobs.inputs import Job
from dreamcli.run.recipe import Recipe
from dreamcli.run.session import Runtime

from conftest import cli_invoker, save_photo

FAST = {"octaves": 2, "iterations": 2, "seed": 7}


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


# ---------------------------------------------------------------------------------------------
# The recipe: defaults < preset < typed values, once


def test_a_recipe_resolves_defaults_then_the_preset_then_the_values_typed():
    plain = Recipe().resolve()
    assert plain.network.name == models.DEFAULT and plain.preset is None
    assert [str(s) for s in plain.settings.layers] == [models.get().default_layer]  # the network's
    assert plain.settings.seed is None and not plain.reproducible  # drawn per picture, not here

    eyes = Recipe(preset="eyes", values={"iterations": 3, "seed": None}).resolve()
    assert (eyes.settings.iterations, eyes.settings.octaves) == (3, 4)  # typed < preset < defaults
    assert [str(s) for s in eyes.settings.layers] == ["inception_3b"] == [str(s) for s in eyes.base.layers]
    assert eyes.base.iterations == 12 and eyes.preset_name == "eyes"  # base: the preset, nothing typed

    seeded = Recipe(preset="eyes", values={"seed": 5}, layers=("inception_4a",)).resolve()
    assert [str(s) for s in seeded.settings.layers] == ["inception_4a"] and seeded.reproducible


def test_a_recipe_makes_classes_logits_layers_and_names_the_key_at_fault():
    net = models.get()
    both = Recipe(layers=("inception_4c",), classes=("dumbbell",)).resolve().settings.layers
    assert [str(s) for s in both] == ["inception_4c", f"{net.logits}[{net.class_index('dumbbell')}]"]
    only = Recipe(preset="eyes", classes=("543",)).resolve().settings.layers  # the preset's layers go
    assert [str(s) for s in only] == [f"{net.logits}[543]"]
    for recipe, key in [
        (Recipe(model="googlenat"), "model"),
        (Recipe(layers=("inception_9z",)), "layers"),
        (Recipe(classes=("not a class at all",)), "classes"),
    ]:
        with pytest.raises(SettingsError) as caught:
            recipe.resolve()
        assert caught.value.key == key and "\n" not in str(caught.value)
    with pytest.raises(SettingsError, match="model bvlc_googlenet") as caught:
        Recipe(model="bvlc_googlenet", layers=("qqqq",)).resolve()
    assert "dream list layers --model bvlc_googlenet" in str(caught.value)


def test_a_recipe_resolves_the_mask_and_the_accentuation_over_the_preset(tmp_path):
    from dreamcli.config import PULL

    preset = tmp_path / "held.yaml"
    preset.write_text("mask: m.png\naccentuate: 3.0\n")
    held = Recipe(preset=str(preset)).resolve().settings
    assert held.mask == "m.png" and held.accentuate == 3.0  # a preset's (or a picture's) re-run
    kept = Recipe(preset=str(preset), accentuate=True, mask_invert=True).resolve().settings
    assert kept.accentuate == 3.0 and kept.mask_invert  # --accentuate keeps the preset's pull
    pulled = Recipe(preset=str(preset), pull=7.0, mask="n.png").resolve().settings
    assert pulled.accentuate == 7.0  # --pull alone sets the preset's pull
    assert pulled.mask == os.path.abspath("n.png")  # a typed mask, whole: a re-run from elsewhere finds it
    assert Recipe(accentuate=True).resolve().settings.accentuate == PULL
    assert Recipe().resolve().settings.accentuate is None
    for recipe, key in ((Recipe(mask_invert=True), "mask_invert"), (Recipe(pull=2.0), "pull")):
        with pytest.raises(SettingsError) as caught:
            recipe.resolve()
        assert caught.value.key == key


def test_a_preset_for_another_network_brings_it_and_a_model_typed_wins(tmp_path):
    caffe = Recipe(preset="classic-caffe").resolve()
    assert caffe.network.name == caffe.settings.model == "bvlc_googlenet"
    odd = tmp_path / "odd.yaml"
    odd.write_text("layers: [qqqq]\n")
    with pytest.raises(SettingsError, match="odd.yaml: layers: .*model vgg16") as caught:
        Recipe(model="vgg16", preset=str(odd)).resolve()  # the preset's layers, checked against vgg16
    assert caught.value.key is None  # the file is at fault, not a flag
    typed = Recipe(model="googlenet", preset="classic-caffe", layers=("inception_4c",)).resolve()
    assert typed.settings.model == "googlenet" and typed.settings.iterations == 10


# ---------------------------------------------------------------------------------------------
# The session: the network loaded once, what outputs record, the pipeline


def test_a_session_loads_once_records_its_machine_and_dreams_files(tmp_path, weights_file):
    assert dataclasses.asdict(Runtime()) == {
        "device": "auto",
        "precision": "auto",
        "tile_size": None,
        "weights": None,
    }
    with pytest.raises(SettingsError, match="precision 'fp64' is unknown") as caught:
        Runtime(precision="fp64")
    assert caught.value.key == "precision"
    runtime = Runtime("cpu", weights=str(weights_file))
    assert runtime.flags() == ["--weights", str(weights_file), "--device", "cpu"]
    session = runtime.open(models.get(), progress=False)
    assert session.device == "cpu" and session.options.precision in ("fp32", "bf16")  # auto, resolved
    assert session.metadata("eyes", guide="g.png") == {
        "version": __import__("dreamcli").__version__,
        "preset": "eyes",
        "model": f"googlenet ({weights_file.name})",
        "device": "cpu",
        "precision": session.options.precision,
        "guide": "g.png",
    }
    photos = [save_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    jobs = [Job(p, tmp_path / f"out{i}.png", i + 1, name=f"shown{i}.png") for i, p in enumerate(photos)]
    settings = Recipe(values={"octaves": 1, "iterations": 1}).resolve().settings
    summary = session.dream_files(jobs, settings, preset="x")
    assert [r.status for r in summary.results] == ["done", "done"]
    seeds = set()
    for i, job in enumerate(jobs):
        meta = read_metadata(job.output)
        assert meta["input"] == f"shown{i}.png" and meta["preset"] == "x" and "guide" not in meta
        assert meta["settings"]["layers"] == [models.get().default_layer]
        seeds.add(meta["settings"]["seed"])  # each picture records the seed it was dreamed with
    assert None not in seeds and len(seeds) == 2
    again = session.dream_files(jobs, settings)
    assert [r.status for r in again.results] == ["skipped", "skipped"]


def test_the_default_layer_and_the_seed_policy_have_one_home():
    net = models.get("vgg16")
    assert Settings().layers == ()  # the network decides
    assert [str(s) for s in net.settings().layers] == [net.default_layer]
    kept = net.settings(Settings(layers=(LayerSpec("x"),)))
    assert [str(s) for s in kept.layers] == ["x"] and kept.model == "vgg16"
    assert Settings(seed=3).seeded().seed == Settings(seed=3).seeded(steady=True).seed == 3
    assert Settings().seeded(steady=True).seed == 0  # animations, feature pictures, atlases
    drawn = {Settings().seeded().seed for _ in range(4)}
    assert None not in drawn and len(drawn) > 1  # a dream draws one (and its picture records it)
    assert Settings.from_mapping({"param": "fft", "iterations": 2}).iterations == 2  # retired, dropped


# ---------------------------------------------------------------------------------------------
# One request through every adapter: the same pixels, the same metadata


def test_the_cli_the_api_the_page_and_a_ray_worker_make_the_same_picture(tmp_path, weights_file):
    pytest.importorskip("starlette")
    httpx = pytest.importorskip("httpx")
    from web_server import events, running_server

    from dreamcli import dream, load_model, read_image, write_image
    from dreamcli.run import cluster

    photo = save_photo(tmp_path / "photo.png")
    # The CLI, with its defaults (auto precision, its memory budget).
    cli_png = tmp_path / "cli.png"
    words = ["--layer", "inception_3b", *(f"--{k}={v}" for k, v in FAST.items()), "-o", cli_png]
    result = cli_invoker(weights_file, "-q", "--device", "cpu")(photo, *words)
    assert result.exit_code == 0, result.output
    cli_meta = read_metadata(cli_png)

    # The Python API, with its defaults.
    net = load_model(weights=weights_file, device="cpu", progress=False)
    picture = read_image(photo)
    api = dream(net, picture, settings=Settings(layers=(LayerSpec("inception_3b"),), **FAST))
    write_image(tmp_path / "api.png", api, picture.alpha)
    assert np.array_equal(pixels(tmp_path / "api.png"), pixels(cli_png))

    # A Ray worker (the actor Ray Data runs), given what the CLI's driver would send it.
    resolved = Recipe(layers=("inception_3b",), values=FAST).resolve()
    spec = cluster.WorkerSpec(
        runtime=dataclasses.asdict(Runtime("cpu", weights=str(weights_file))),
        settings=resolved.settings.to_dict(),
        preset=None,
        reproducible=resolved.reproducible,
        overwrite=False,
        batch_size=1,
    )
    ray_png = tmp_path / "ray" / "photo.png"
    rows = cluster.Worker(dataclasses.asdict(spec))(
        {"source": [str(photo)], "output": [str(ray_png)], "index": [1]}
    )
    assert rows["status"] == ["done"], rows["error"]
    assert np.array_equal(pixels(ray_png), pixels(cli_png)) and read_metadata(ray_png) == cli_meta

    # The page, on a server started as `dream serve --device cpu --weights FILE` would be.
    with running_server(weights_file, precision="auto") as served:
        headers = {"X-Dream-Token": served.config.token}
        with httpx.Client(base_url=served.base, headers=headers, timeout=60) as client:
            up = client.post("/api/uploads", content=photo.read_bytes(), headers={"X-Filename": "photo.png"})
            job = client.post(
                "/api/jobs", json={"upload": up.json()["id"], "layers": ["inception_3b"], "settings": FAST}
            )
            assert job.status_code == 201, job.text
            done = lambda jobs: jobs.get(job.json()["id"], {}).get("state") in ("done", "failed")  # noqa: E731
            latest, _ = events(served.base, served.config.token, done)
            assert latest[job.json()["id"]]["state"] == "done", latest[job.json()["id"]]["error"]
            page_png = tmp_path / "page.png"
            page_png.write_bytes(client.get(f"/api/jobs/{job.json()['id']}/result.png").content)
    assert np.array_equal(pixels(page_png), pixels(cli_png))
    assert read_metadata(page_png) == cli_meta
