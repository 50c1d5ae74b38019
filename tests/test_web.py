"""``dream serve``'s API with random weights: uploads, the queue, progress, cancel, the token,
bad requests, and the command line each tile shows, run through the CLI for the same pixels."""

from __future__ import annotations

import io
import shlex
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from web_server import events, running_server  # noqa: E402

from dreamcli.io.metadata import read_metadata  # noqa: E402

from conftest import cli_invoker, save_photo  # noqa: E402

FAST = {"octaves": 2, "iterations": 2}


@pytest.fixture(scope="module")
def served(weights_file):
    with running_server(weights_file, max_size=64, max_bytes=300_000) as server:
        yield server


@pytest.fixture(scope="module")
def client(served):
    headers = {"X-Dream-Token": served.config.token}
    with httpx.Client(base_url=served.base, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def uploaded(client, tmp_path_factory):
    """A 96x64 photo uploaded once: the server shrinks it to 64 px (its --max-size)."""
    path = save_photo(tmp_path_factory.mktemp("upload") / "photo.png")
    response = client.post("/api/uploads", content=path.read_bytes(), headers={"X-Filename": "photo.png"})
    assert response.status_code == 201, response.text
    return path, response.json()


def finished(ids):
    return lambda jobs: all(jobs.get(i, {}).get("state") in ("done", "failed", "cancelled") for i in ids)


def submit(client, **request):
    response = client.post("/api/jobs", json=request)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_job_reports_each_octave_and_downloads_the_clis_png(served, client, uploaded):
    config, base = served.config, served.base
    _, up = uploaded
    assert (up["width"], up["height"]) == (96, 64)
    ids: list[str] = []
    connected = threading.Event()

    def until(jobs):  # the stream's first message is the queue as it is: the job comes after it
        connected.set()
        return bool(ids) and finished(ids)(jobs)

    with ThreadPoolExecutor(max_workers=1) as pool:
        watching = pool.submit(events, base, config.token, until)
        assert connected.wait(30), "the event stream sent nothing"
        job = submit(client, upload=up["id"], layers=["inception_3a"], settings=FAST)
        ids.append(job["id"])
        latest, seen = watching.result(timeout=120)
    assert job["state"] in ("queued", "running", "done") and job["settings"]["max_size"] == 64
    mine = [j for j in seen if j["id"] == job["id"]]
    assert latest[job["id"]]["state"] == "done", latest[job["id"]]["error"]
    assert [j["preview"] for j in mine if j["preview"]][:1] == [1]  # the first octave's picture came
    assert max(j["preview"] for j in mine) == 2 and any(j["state"] == "running" for j in mine)
    preview = client.get(f"/api/jobs/{job['id']}/preview.png")
    assert preview.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(preview.content)).size == (64, 43)  # the last octave, at full size
    result = client.get(f"/api/jobs/{job['id']}/result.png")
    assert result.status_code == 200 and job["download"] in result.headers["content-disposition"]
    assert Image.open(io.BytesIO(result.content)).size == (64, 43)


@pytest.mark.parametrize(
    "request_",
    [
        {"layers": ["inception_3b"], "settings": {**FAST, "step_size": 2.5, "lapnorm": True}},
        {"preset": "preview", "settings": {"iterations": 2, "jitter": 8}},
    ],
    ids=["layer", "preset"],
)
def test_the_command_line_shown_makes_the_same_pixels(
    served, client, uploaded, weights_file, tmp_path, request_
):
    config, base = served.config, served.base
    photo, up = uploaded
    job = submit(client, upload=up["id"], **request_)
    latest, _ = events(base, config.token, finished([job["id"]]))
    assert latest[job["id"]]["state"] == "done", latest[job["id"]]["error"]
    served_png = tmp_path / "served.png"
    served_png.write_bytes(client.get(f"/api/jobs/{job['id']}/result.png").content)

    words = shlex.split(job["command"])
    assert words[:2] == ["dream", "photo.png"] and "--seed" in words and words[-2] == "-o"
    assert words[words.index("--max-size") + 1] == "64"  # the server shrank the 96 px upload
    at = words.index("--weights")
    del words[at : at + 2]  # cli_invoker names the same file
    out = tmp_path / "cli.png"
    args = [str(photo), *words[2:-1], str(out)]
    result = cli_invoker(weights_file, "-q")(*args)
    assert result.exit_code == 0, result.output
    a, b = np.asarray(Image.open(served_png)), np.asarray(Image.open(out))
    assert a.shape == b.shape and np.array_equal(a, b)
    meta = read_metadata(served_png)
    assert meta["settings"] == read_metadata(out)["settings"] == job["settings"]
    assert meta["input"] == "photo.png" and meta["preset"] == request_.get("preset")


def test_one_job_at_a_time_queued_and_cancelled(served, client, uploaded):
    config, base = served.config, served.base
    _, up = uploaded
    slow = submit(
        client, upload=up["id"], layers=["inception_3a"], settings={"octaves": 1, "iterations": 5000}
    )
    waiting = submit(client, upload=up["id"], layers=["inception_3a"], settings=FAST)
    latest, _ = events(base, config.token, lambda jobs: jobs.get(slow["id"], {}).get("iteration", 0) > 0)
    assert latest[waiting["id"]]["state"] == "queued"  # one job at a time
    listing = {j["id"]: j["state"] for j in client.get("/api/jobs").json()["jobs"]}
    assert listing[slow["id"]] == "running" and listing[waiting["id"]] == "queued"  # any page sees the queue
    assert client.post(f"/api/jobs/{waiting['id']}/cancel").json()["state"] == "cancelled"
    assert client.post(f"/api/jobs/{slow['id']}/cancel").status_code == 200
    latest, _ = events(base, config.token, finished([slow["id"], waiting["id"]]))
    assert latest[slow["id"]]["state"] == latest[waiting["id"]]["state"] == "cancelled"
    assert latest[slow["id"]]["iteration"] < 5000
    gone = client.get(f"/api/jobs/{slow['id']}/result.png")
    assert gone.status_code == 404 and "cancelled" in gone.json()["error"]
    results = list((served.work.folder / "results").iterdir())  # no file of either job, not even a part
    assert not [p for p in results if p.name.startswith((slow["id"], waiting["id"]))]
    assert not [p for p in results if ".part" in p.name]


def _one_line_error(response, status, *words):
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in response.text
    for word in words:
        assert word in message
    return message


def test_bad_uploads_are_one_line_and_leave_nothing(served, client, tmp_path):
    before = set((served.work.folder / "uploads").iterdir())
    post = lambda data, name="x.png": client.post(  # noqa: E731
        "/api/uploads", content=data, headers={"X-Filename": name}
    )
    _one_line_error(post(b"not an image at all", "../../etc/passwd.png"), 400, "passwd.png", "not an image")
    _one_line_error(post(b""), 400, "empty")
    _one_line_error(post(b"\0" * 300_001), 413, "MB")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 400 megapixels in a few kB
    message = _one_line_error(post(bomb.read_bytes(), "bomb.png"), 400, "bomb.png", "megapixels")
    assert str(served.work.folder) not in message  # the server's own paths stay on the server
    assert set((served.work.folder / "uploads").iterdir()) == before


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        ({"preset": "../../etc/passwd.yaml"}, ["unknown preset"]),
        ({"preset": "nosuchpreset"}, ["unknown preset"]),
        ({"layers": ["inception_9z"]}, ["inception_9z"]),
        ({"settings": {"octaves": 99}}, ["octaves", "out of range"]),
        ({"settings": {"model": "vgg"}}, ["settings"]),
        ({"path": "/etc/passwd"}, ["unknown key"]),
    ],
)
def test_bad_job_requests_are_one_line(client, uploaded, request_, words):
    _one_line_error(client.post("/api/jobs", json={"upload": uploaded[1]["id"], **request_}), 400, *words)


def test_unknown_uploads_jobs_and_bodies(client):
    _one_line_error(client.post("/api/jobs", json={"upload": "/etc/passwd"}), 404, "upload")
    _one_line_error(client.post("/api/jobs", content=b"{not json"), 400, "JSON")
    _one_line_error(client.post("/api/jobs/nope/cancel"), 404, "no such job")
    _one_line_error(client.get("/api/nothing/here"), 404)


def test_the_token_host_and_origin_are_checked(served):
    config, base = served.config, served.base
    token = config.token
    get = lambda path, **kw: httpx.get(base + path, **kw)  # noqa: E731
    assert get("/", params={"token": token}).status_code == 200
    assert get("/static/app.js").status_code == 200  # the page's code holds nothing secret
    _one_line_error(get("/"), 403, "token")
    _one_line_error(get("/api/jobs"), 403, "token")
    wrong = token[:-1] + ("y" if token.endswith("x") else "x")  # one character off (never the token)
    _one_line_error(get("/api/jobs", params={"token": wrong}), 403, "token")
    assert get("/api/jobs", params={"token": token}).status_code == 200
    _one_line_error(get("/api/jobs", params={"token": token}, headers={"Host": "evil.test"}), 400)
    job = {"upload": "sample", "layers": ["inception_3a"], "settings": FAST}
    post = lambda **kw: httpx.post(base + "/api/jobs", json=job, **kw)  # noqa: E731
    _one_line_error(post(params={"token": token}), 403, "token")  # a change needs the header
    _one_line_error(post(headers={"X-Dream-Token": token, "Origin": "http://evil.test"}), 403, "evil.test")
    _one_line_error(post(headers={"X-Dream-Token": token, "Sec-Fetch-Site": "cross-site"}), 403)
    response = post(headers={"X-Dream-Token": token, "Origin": base, "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 201
    httpx.post(f"{base}/api/jobs/{response.json()['id']}/cancel", headers={"X-Dream-Token": token})


def test_a_failure_inside_the_server_is_one_line(served, client, monkeypatch):
    from dreamcli.web.work import Work

    def broken(self):
        raise RuntimeError("simulated")

    monkeypatch.setattr(Work, "listing", broken)
    response = client.get("/api/jobs")
    _one_line_error(response, 500, "terminal")
    assert "simulated" not in response.text


def test_options_list_presets_layers_and_limits(client):
    data = client.get("/api/options").json()
    assert "inception_4c" in data["layers"] and data["max_size"] == 64
    assert {"preview", "eyes"} <= {p["name"] for p in data["presets"]}
    assert [f["name"] for f in data["fields"]][:2] == ["octaves", "octave_scale"]


def test_serve_refuses_a_busy_port_in_one_line(weights_file):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        result = cli_invoker(weights_file, catch_exceptions=True)("serve", "--port", busy.getsockname()[1])
    assert result.exit_code == 2 and "cannot listen" in result.output and "Traceback" not in result.output


def test_dream_serve_prints_its_address_serves_and_stops_on_ctrl_c(weights_file):
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "dreamcli", "serve", "--port", "0", "--device", "cpu"]
    server = subprocess.Popen(
        [*command, "--weights", str(weights_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines = [server.stdout.readline(), server.stdout.readline()]
        url = lines[1].strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url, lines
        page = httpx.get(url, timeout=60)
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert httpx.get(url.split("?")[0], timeout=60).status_code == 403
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 130 and "Traceback" not in err, err


def test_a_job_that_cannot_run_fails_in_one_line(served, client, tmp_path):
    tiny = save_photo(tmp_path / "tiny.png", 12, 9)
    response = client.post("/api/uploads", content=tiny.read_bytes(), headers={"X-Filename": "tiny.png"})
    job = submit(client, upload=response.json()["id"], layers=["inception_4c"], settings=FAST)
    latest, _ = events(served.base, served.config.token, finished([job["id"]]))
    assert latest[job["id"]]["state"] == "failed"
    message = latest[job["id"]]["error"]
    assert "too small" in message and "\n" not in message and str(served.work.folder) not in message


def test_the_command_line_never_starts_with_an_option_or_a_command():
    from dreamcli.config import Settings
    from dreamcli.jobs.naming import download_name
    from dreamcli.web import commands

    settings = Settings(seed=5)
    for photo, first in [("-rf.png", "./-rf.png"), ("zoom", "./zoom"), ("a b.jpg", "a b.jpg")]:
        out = download_name(photo, "x", 5)
        line = commands.shown(commands.command_line(settings, Settings(), None, photo, out))
        assert shlex.split(line)[1] == first and not shlex.split(line)[-1].startswith("-")


def test_a_full_queue_is_refused(served, client, monkeypatch):
    from dreamcli.web import jobs_api

    monkeypatch.setattr(jobs_api, "MAX_QUEUED", 0)
    _one_line_error(client.post("/api/jobs", json={"upload": "sample"}), 429, "waiting")


def test_without_the_web_extra_serve_says_what_to_install():
    import subprocess
    import sys

    code = "import sys; sys.modules['starlette'] = None; from dreamcli.cli import main; main(['serve'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "pip install 'dreamcli[web]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_engine_reports_each_octaves_picture(net):
    import torch

    from dreamcli.config import Settings
    from dreamcli.engine.octaves import dream
    from dreamcli.events import OctaveDone, Step

    seen = []
    settings = Settings(layers=["inception3a"], octaves=3, iterations=1, seed=0)
    out = dream(net, torch.rand(3, 64, 80), settings=settings, report=seen.append)
    starts = [e.size for e in seen if isinstance(e, Step) and e.iteration == 0]
    done = [e for e in seen if isinstance(e, OctaveDone)]
    assert [(e.octave, e.octaves) for e in done] == [(i + 1, len(starts)) for i in range(len(starts))]
    assert [tuple(e.image.shape[-2:]) for e in done] == starts and done[-1].image.shape[0] == 1
    assert torch.equal(done[-1].image[0], out)


@pytest.mark.parametrize(
    ("host", "words"),
    [("", "give an address"), ("  ", "give an address"), ("0.0.0.0", "--expose-to-network")],
)
def test_serve_refuses_an_empty_or_exposed_host_in_one_line(weights_file, host, words):
    result = cli_invoker(weights_file, catch_exceptions=True)("serve", "--host", host, "--device", "cpu")
    assert result.exit_code == 2 and words in result.output, result.output
    assert "Traceback" not in result.output and "--host" in result.output


def test_serve_listens_beyond_loopback_only_with_the_flag(weights_file):
    import socket

    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = cli_invoker(weights_file, catch_exceptions=True)(
            "serve", "--host", "0.0.0.0", "--expose-to-network", "--port", port, "--device", "cpu"
        )
    assert result.exit_code == 2 and "cannot listen on 0.0.0.0" in result.output, result.output


def test_the_host_check_holds_on_every_interface():
    import socket

    from dreamcli.web.server import Config

    config = Config(session=None, host="0.0.0.0", port=8765)
    assert config.answers("192.168.1.20:8765") and config.answers("[fe80::1]:8765")
    assert config.answers("localhost:8765") and config.answers(f"{socket.gethostname()}:8765")
    assert not config.answers("evil.test:8765")  # a rebinding page sends its own name
    assert not config.answers("192.168.1.20:9999") and not config.answers("")
    local = Config(session=None, port=8765)
    assert local.answers("127.0.0.1:8765") and local.answers("[::1]:8765")
    assert not local.answers("192.168.1.20:8765")


# -- Inside the network: explanations and units on the same queue --------------------------------

EXPLAIN = {"photo_size": 64, "grid": 3, "groups": 2, "classes": 2, "cell_size": 32, "steps": 8}
UNIT = {"photo_size": 64, "size": 32, "steps": 8, "diverse": 2, "examples": 3}


def _post(client, path, **request):
    response = client.post(path, json=request)
    assert response.status_code == 201, response.text
    return response.json()


def _run(served, client, path, **request):
    """Post a job with the event stream already listening; the job done, and all it was told."""
    ids: list[str] = []
    connected = threading.Event()

    def until(jobs):
        connected.set()
        return bool(ids) and finished(ids)(jobs)

    with ThreadPoolExecutor(max_workers=1) as pool:
        watching = pool.submit(events, served.base, served.config.token, until)
        assert connected.wait(30), "the event stream sent nothing"
        ids.append(_post(client, path, **request)["id"])
        latest, seen = watching.result(timeout=300)
    done = latest[ids[0]]
    assert done["state"] == "done", done["error"]
    return done, [j for j in seen if j["id"] == ids[0]]


@pytest.fixture(scope="module")
def explained(served, client, uploaded):
    return _run(
        served, client, "/api/explanations", upload=uploaded[1]["id"], layer="inception_4a", options=EXPLAIN
    )


def test_an_explanation_reports_its_stages_and_serves_only_its_files(served, client, explained):
    done, seen = explained
    assert done["kind"] == "explain" and done["settings"] is None
    data = client.get(f"/api/jobs/{done['id']}/files/explanation.json").json()
    rows, cols = data["explain"]["grid"]
    stages = [(j["stage"], j["done"], j["total"]) for j in seen if j["stage"]]
    pictures = rows * cols + 2  # each cell's and each group's
    assert ("activations", 1, 1) in stages and stages[-1] == ("pictures", pictures, pictures)
    assert data["explain"]["photo"] == "photo.png"  # the upload's name, never the server's copy
    assert len(data["cells"]) == rows * cols and len(data["classes"]) == 2
    assert all(len(cell["channels"]) == 12 for cell in data["cells"])  # every cell's Hinton diagram
    assert (
        data["cell"]["channels"]
        == data["cells"][data["cell"]["row"] * cols + data["cell"]["col"]]["channels"]
    )
    for name in ("photo.png", "cell0.png", f"cell{rows * cols - 1}.png", "group1.png", "group1_map.png"):
        assert name in done["files"]
        picture = client.get(f"/api/jobs/{done['id']}/files/{name}")
        assert picture.headers["content-type"] == "image/png", name
        Image.open(io.BytesIO(picture.content)).verify()
    for name in ("../../../etc/passwd", "..%2F..%2Fuploads", "explanation.html", "nothing.png"):
        response = client.get(f"/api/jobs/{done['id']}/files/{name}")
        assert response.status_code == 404 and "Traceback" not in response.text
    assert httpx.get(f"{served.base}/api/jobs/{done['id']}/files/cell0.png").status_code == 403  # the token


def test_the_explanations_command_line_makes_the_same_poster(
    client, uploaded, explained, weights_file, tmp_path
):
    done, _ = explained
    photo, _ = uploaded
    words = shlex.split(done["command"])
    assert words[:5] == ["dream", "explain", "photo.png", "--layer", "inception_4a"]
    assert "--cell-size" in words and words[-2:] == ["-o", "photo_explain.png"]
    at = words.index("--weights")
    del words[at : at + 2]
    out = tmp_path / "cli.png"
    result = cli_invoker(weights_file, "-q")("explain", str(photo), *words[3:-1], str(out))
    assert result.exit_code == 0, result.output
    served_png = client.get(f"/api/jobs/{done['id']}/files/poster.png")
    assert "photo_explain.png" in served_png.headers["content-disposition"]
    a, b = np.asarray(Image.open(io.BytesIO(served_png.content))), np.asarray(Image.open(out))
    assert a.shape == b.shape and np.array_equal(a, b)


def _site_pictures(served):
    return {p: p.stat().st_mtime_ns for p in (served.work.folder / "units").rglob("pictures/*/*")}


def test_a_unit_is_pictured_once_and_its_examples_come_from_every_photo(served, client, explained, tmp_path):
    done, _ = explained
    request = {"layer": "inception_4a", "channel": 5, "options": UNIT, "explanation": done["id"]}
    first, _ = _run(served, client, "/api/units", **request)
    unit = client.get(f"/api/jobs/{first['id']}/files/unit.json").json()
    photos = len(served.work.photos())
    assert (
        unit["channel"] == 5 and not unit["cached"] and unit["photos"] == photos == first["about"]["photos"]
    )
    assert 1 <= len(unit["examples"]) <= 3 and set(unit["pictures"]) == {
        "feature",
        "negative",
        "diverse1",
        "diverse2",
    }
    for example in unit["examples"]:
        assert example["photo"] in {up.name for up in served.work.photos()}
        assert client.get(f"/api/jobs/{first['id']}/files/{example['crop']}").status_code == 200
        assert client.get(f"/api/jobs/{first['id']}/files/{example['map']}").status_code == 200
    made = _site_pictures(served)
    assert len([p for p in made if p.name.startswith("c0005_")]) == 4

    again, _ = _run(served, client, "/api/units", **request)  # the same channel: the cache's
    assert client.get(f"/api/jobs/{again['id']}/files/unit.json").json()["cached"]
    assert _site_pictures(served) == made  # not one picture made or written again

    extra = save_photo(tmp_path / "new.png", 80, 64, seed=7)
    client.post("/api/uploads", content=extra.read_bytes(), headers={"X-Filename": "new.png"})
    third, _ = _run(served, client, "/api/units", **request)  # a new upload is scanned
    unit = client.get(f"/api/jobs/{third['id']}/files/unit.json").json()
    assert unit["cached"] and unit["photos"] == photos + 1 and _site_pictures(served) == made
    assert shlex.split(third["command"])[:2] == ["dream", "units"] and "new.png" in third["command"]
    assert "inception_4a[5]" in third["command"]


def test_a_unit_of_an_explanation_whose_photo_is_no_longer_kept_is_refused(served, client, tmp_path):
    photo = save_photo(tmp_path / "old.png", 80, 64, seed=3)
    sent = client.post("/api/uploads", content=photo.read_bytes(), headers={"X-Filename": "old.png"}).json()
    done, _ = _run(
        served, client, "/api/explanations", upload=sent["id"], layer="inception_4a", options=EXPLAIN
    )
    served.work.uploads.pop(sent["id"]).path.unlink()  # as the 33rd upload after it would do
    response = client.post(
        "/api/units",
        json={"layer": "inception_4a", "channel": 5, "options": UNIT, "explanation": done["id"]},
    )
    assert response.status_code == 404 and "no longer kept" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "request_", "status", "words"),
    [
        ("/api/explanations", {"layer": "inceptoin_4a"}, 400, ["did you mean", "inception_4a"]),
        ("/api/explanations", {"layer": "inception_4a[3]"}, 400, ["without channels"]),
        ("/api/explanations", {"options": {"cells": 3}}, 400, ["give only", "grid"]),
        ("/api/explanations", {"options": {"steps": 100_000}}, 400, ["steps", "at most 1024"]),
        ("/api/explanations", {"options": {"grid": 16, "steps": 1024}}, 400, ["times the default", "grid"]),
        ("/api/explanations", {"options": {"grid": "3"}}, 400, ["grid", "whole number"]),
        ("/api/explanations", {"options": {"param": "dct"}}, 400, ["param", "fft"]),
        ("/api/explanations", {"path": "/etc/passwd"}, 400, ["unknown key"]),
        ("/api/explanations", {"upload": "/etc/passwd"}, 404, ["upload"]),
        ("/api/units", {"layer": "inception_4a", "channel": 9999}, 400, ["channels", "9999"]),
        ("/api/units", {"layer": "inception_4a", "channel": True}, 400, ["whole number"]),
        ("/api/units", {"layer": "inceptoin_4a", "channel": 1}, 400, ["did you mean"]),
        ("/api/units", {"layer": "inception_4a", "channel": 1, "options": {"diverse": 1}}, 400, ["diverse"]),
        ("/api/units", {"layer": "inception_4a", "channel": 1, "options": {"size": 4096}}, 400, ["at most"]),
        ("/api/units", {"layer": "inception_4a", "channel": 1, "options": {"seed": 2**40}}, 400, ["seed"]),
        ("/api/units", {"layer": "inception_4a", "channel": 1, "options": {"crops": "no"}}, 400, ["crops"]),
        ("/api/units", {"layer": "inception_4a", "channel": 1, "explanation": "nope"}, 404, ["explanation"]),
    ],
)
def test_bad_explanations_and_units_are_one_line(client, uploaded, path, request_, status, words):
    if path == "/api/explanations":
        request_ = {"upload": uploaded[1]["id"], **request_}
    _one_line_error(client.post(path, json=request_), status, *words)


def test_an_explanation_is_cancelled_within_a_step_and_leaves_nothing(served, client, uploaded):
    module = served.config.session.loaded.module
    passes: list[int] = []
    flags: list[threading.Event] = []  # the server's own cancel flag of the job: passes after it count
    counting = module.register_forward_pre_hook(
        lambda *_: passes.append(1) if flags and flags[0].is_set() else None
    )
    try:
        slow = {**EXPLAIN, "steps": 1024}
        job = _post(client, "/api/explanations", upload=uploaded[1]["id"], layer="inception_4a", options=slow)
        flags.append(served.work.jobs[job["id"]].cancel)
        events(
            served.base, served.config.token, lambda jobs: jobs.get(job["id"], {}).get("stage") == "pictures"
        )
        client.post(f"/api/jobs/{job['id']}/cancel")
        latest, _ = events(served.base, served.config.token, finished([job["id"]]))
    finally:
        counting.remove()
    assert latest[job["id"]]["state"] == "cancelled" and not latest[job["id"]]["files"]
    assert len(passes) <= 2  # stopped at the next forward pass, not after 1,024 steps
    assert not (served.work.folder / "results" / job["id"]).exists()


def test_an_explanation_that_cannot_run_fails_in_one_line_and_leaves_nothing(served, client, uploaded):
    job = _post(
        client, "/api/explanations", upload=uploaded[1]["id"], layer="loss3/classifier", options=EXPLAIN
    )
    latest, _ = events(served.base, served.config.token, finished([job["id"]]))
    failed = latest[job["id"]]
    assert failed["state"] == "failed" and not failed["files"]
    message = failed["error"]
    assert "no spatial positions" in message and "pick a convolutional layer" in message
    assert "\n" not in message and str(served.work.folder) not in message
    assert not (served.work.folder / "results" / job["id"]).exists()
