"""``dream serve`` against a hostile client: nested bodies, pixel bombs, stalled heads and
bodies, floods of idle connections, odd photo names, signals during an upload, and a server
killed with its uploads (hosts: test_web.py).  Traffic goes only to 127.0.0.1."""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from web_server import events, running_server  # noqa: E402

from conftest import save_photo  # noqa: E402

FAST = {"octaves": 1, "iterations": 1}
# A macOS screenshot's name (U+202F before PM), Cyrillic, CJK, an emoji (two code points
# joined), parentheses, a quote and a dollar: each must reach the command line as it is.
ODD_NAME = "Screenshot 2024-05-01 at 1.02.03\u202fPM (2) Снимок экрана 猫 👩\u200d🎨 it's $HOME.png"


@pytest.fixture(scope="module")
def served(weights_file):
    with running_server(weights_file, max_size=64, head_timeout=1.0, body_timeout=1.0) as server:
        yield server


@pytest.fixture(scope="module")
def client(served):
    headers = {"X-Dream-Token": served.config.token}
    with httpx.Client(base_url=served.base, headers=headers, timeout=60) as client:
        yield client


def one_line(response, status, *words):
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in response.text
    assert all(word in message for word in words), message
    return message


def upload(client, path: Path, name: str):
    return client.post("/api/uploads", content=path.read_bytes(), headers={"X-Filename": quote(name)})


# -- bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 20_000 + b"]" * 20_000,  # deep enough for the parser's recursion limit, under 64 KB
        b'{"settings": ' * 4_000 + b"{}" + b"}" * 4_000,
        b'{"upload": "sample", "layers": [[[[[[[["x"]]]]]]]]}',  # 9 deep: just past the limit
    ],
    ids=["arrays", "objects", "nine"],
)
def test_a_deeply_nested_job_is_refused_in_one_line(client, body):
    one_line(client.post("/api/jobs", content=body), 400, "nests at most 8")


def test_json_depth_counts_brackets_outside_strings_only():
    from dreamcli.web.limits import json_depth

    assert json_depth(b'{"upload": "sample", "settings": {"octaves": 2}, "layers": ["a"]}') == 2
    assert json_depth(b'["[[[[{{{{", "\\"[[[["]') == 1  # brackets and escaped quotes in strings
    assert json_depth(b'["\\\\", [[1]]]') == 3  # an escaped backslash ends before the quote
    assert json_depth(b"7") == 0


def test_a_stalled_body_is_refused_after_its_timeout(served):
    before = set((served.work.folder / "uploads").iterdir())
    with socket.create_connection(("127.0.0.1", served.config.port), timeout=15) as sock:
        head = (
            f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1:{served.config.port}\r\n"
            f"X-Dream-Token: {served.config.token}\r\nContent-Length: 10000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"x" * 100)  # then nothing more
        answer = _answer(sock)
    assert answer.startswith("HTTP/1.1 408") and "nothing arrived" in answer
    assert set((served.work.folder / "uploads").iterdir()) == before  # nothing kept of it


def test_a_client_that_leaves_mid_upload_leaves_no_file_and_no_traceback(served, caplog):
    before = set((served.work.folder / "uploads").iterdir())
    with socket.create_connection(("127.0.0.1", served.config.port), timeout=15) as sock:
        head = (
            f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1:{served.config.port}\r\n"
            f"X-Dream-Token: {served.config.token}\r\nContent-Length: 10000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"x" * 100)
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while getattr(served.app.app.state, "uploading", 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set((served.work.folder / "uploads").iterdir()) == before
    assert not [r for r in caplog.records if r.levelno >= 30], caplog.text  # a closed tab is no error


def _answer(sock: socket.socket) -> str:
    """One whole HTTP answer read from ``sock``: its head, then its Content-Length of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((v for k, v in _headers(head) if k == "content-length"), "0"))
    while len(body) < length:
        body += sock.recv(4096) or b" " * length
    return (head + b"\r\n\r\n" + body).decode()


def _headers(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode().split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]


# -- pixels -------------------------------------------------------------------------------------


def test_a_pixel_bomb_is_refused_from_its_header_before_any_decode(served, client, tmp_path, monkeypatch):
    from dreamcli.io import images

    decoded = []
    real = images.decode_image
    monkeypatch.setattr(images, "decode_image", lambda *a, **k: decoded.append(a) or real(*a, **k))
    before = set((served.work.folder / "uploads").iterdir())
    bomb = tmp_path / "bomb.png"
    Image.new("1", (6000, 4500)).save(bomb)  # 27 megapixels of one colour in ~3 kB, under Pillow's 89
    assert bomb.stat().st_size < 50_000
    message = one_line(upload(client, bomb, "bomb.png"), 400, "bomb.png", "6000x4500", "24 megapixels")
    assert "--max-size" in message and str(served.work.folder) not in message
    assert decoded == []  # refused before it cost its ~0.8 GB (30 B a pixel)
    assert set((served.work.folder / "uploads").iterdir()) == before


def test_a_big_jpeg_counts_the_pixels_it_is_decoded_at(tmp_path):
    from dreamcli.web.limits import Refused, check_pixels

    photo = save_photo(tmp_path / "big.jpg", 2000, 1500)
    check_pixels(photo, "big.jpg", 512, 1_000_000)  # libjpeg decodes it at 1/2: 0.75 megapixels
    with pytest.raises(Refused, match="big.jpg is 2000x1500"):
        check_pixels(photo, "big.jpg", 1024, 1_000_000)  # at full size: 3 megapixels


def test_uploads_decode_one_at_a_time(served, client, tmp_path, monkeypatch):
    from dreamcli.io import images

    real = images.decode_image
    running, most = [0], [0]
    lock = threading.Lock()

    def slow(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.3)
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(images, "decode_image", slow)
    photos = [save_photo(tmp_path / f"p{i}.png", 80, 60, seed=i) for i in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(lambda p: upload(client, p, p.name), photos))
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert most[0] == 1


def test_decoding_costs_at_most_the_bytes_per_pixel_the_page_states(tmp_path):
    """The memory cap of a decode (MAX_PIXELS x DECODE_BYTES_PER_PIXEL) rests on this figure:
    the worst picture measured, an RGBA lossless WebP, peaks at ~52 bytes a pixel."""
    from dreamcli.web.limits import DECODE_BYTES_PER_PIXEL

    path = tmp_path / "rgba.webp"
    Image.new("RGBA", (2000, 2000), (10, 20, 30, 40)).save(path, lossless=True)
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("measures the peak memory with Linux's /proc/self/clear_refs")
    code = (
        "import sys, torch\n"
        "from dreamcli.io.images import decode_image, fit\n"
        "torch.zeros(1)  # torch's own start is not the decode's\n"
        "kib = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1])\n"
        "open('/proc/self/clear_refs', 'w').write('5')  # the peak (VmHWM) starts again from now\n"
        "before = kib('VmRSS')\n"
        "fit(decode_image(sys.argv[1], 64), 64)\n"
        "print(kib('VmHWM') - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    peak = int(out.stdout) * 1024
    assert 20 * 2000 * 2000 < peak <= DECODE_BYTES_PER_PIXEL * 2000 * 2000 + 16 * 2**20  # +16 MiB: malloc's


# -- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [ODD_NAME, "photo (2).png", "-rf (copy).png", "100%41.png"])
def test_a_photos_name_reaches_the_command_line_exactly(served, client, tmp_path, sent):
    photo = save_photo(tmp_path / "photo.png")
    answer = upload(client, photo, sent)
    assert answer.status_code == 201, answer.text
    assert answer.json()["name"] == sent
    job = client.post(
        "/api/jobs", json={"upload": answer.json()["id"], "layers": ["inception_3a"], "settings": FAST}
    )
    assert job.status_code == 201, job.text
    command = job.json()["command"]
    expected = f"./{sent}" if sent.startswith("-") else sent
    assert shlex.split(command)[1] == expected
    if shutil.which("bash"):  # a real shell reads the same word
        said = subprocess.run(["bash", "-c", f'set -- {command}; printf %s "$2"'], capture_output=True)
        assert said.stdout.decode() == expected
    done = lambda jobs: jobs.get(job.json()["id"], {}).get("state") == "done"  # noqa: E731
    latest, _ = events(served.base, served.config.token, done)
    assert latest[job.json()["id"]]["upload"]["name"] == sent


def test_a_name_no_file_can_have_becomes_upload():
    from dreamcli.web.jobs_api import upload_name

    assert upload_name(quote("C:/Users/me/photo (1).jpg")) == "photo (1).jpg"
    assert upload_name("..") == "upload"
    assert upload_name(quote("a\0b.png")) == "upload.png"
    assert upload_name(quote("é" * 200 + ".png")) == "upload.png"  # 404 bytes: over any file system's 255


# -- connections --------------------------------------------------------------------------------


def test_a_connection_that_never_finishes_its_request_is_closed(served):
    with socket.create_connection(("127.0.0.1", served.config.port), timeout=15) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")  # a request line, then nothing
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed without a word
        assert time.monotonic() - started < 20


def _descriptors(at_least: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < at_least:
        if hard != resource.RLIM_INFINITY and hard < at_least:
            pytest.skip(f"this test opens {at_least} sockets; the limit here is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, hard))


def _start(weights_file, tmp_path, **popen):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "dreamcli", "serve", "--port", "0", "--device", "cpu"]
    server = subprocess.Popen(
        [*command, "--weights", str(weights_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )
    url = [server.stdout.readline(), server.stdout.readline()][1].strip()
    assert "/?token=" in url, server.stderr.read() if server.poll() is not None else url
    base, token = url.split("/?token=")
    assert httpx.get(url, timeout=60).status_code == 200  # serving: its folder is made
    return server, url, base, token


def _usual_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def test_a_flood_of_idle_connections_neither_locks_out_the_page_nor_floods_the_terminal(
    weights_file, tmp_path
):
    """1,200 connections that send a request line and nothing more, to a server with the usual
    1,024 file descriptors: the page still answers at once, the terminal says nothing; then
    SIGTERM while an upload is arriving is the one line ``Interrupted.``"""
    _descriptors(1_600)
    server, url, base, token = _start(weights_file, tmp_path, preexec_fn=_usual_descriptors)
    port = int(base.rsplit(":", 1)[1])
    idle: list[socket.socket] = []
    try:
        for _ in range(1_200):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                break  # the server takes no more: the page below is locked out too
            sock.sendall(b"GET / HTTP/1.1\r\n")
            idle.append(sock)
        started = time.monotonic()
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and time.monotonic() - started < 5
        for sock in idle:
            sock.close()
        for _ in range(200):  # junk: uvicorn warns of each; the terminal shows the first only
            with socket.create_connection(("127.0.0.1", port), timeout=10) as junk:
                junk.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                junk.recv(1000)
        arriving = socket.create_connection(("127.0.0.1", port), timeout=10)
        head = (
            f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Dream-Token: {token}\r\n"
            "X-Filename: photo.png\r\nContent-Length: 1000000\r\n\r\n"
        )
        arriving.sendall(head.encode() + b"\x89PNG" + b"\0" * 20_000)
        time.sleep(0.3)
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
        arriving.close()
    finally:
        for sock in idle:
            sock.close()
        if server.poll() is None:
            server.kill()
    lines = [line for line in err.splitlines() if line != "Ctrl-C stops it."]
    assert server.returncode == 143 and lines[-1:] == ["Interrupted."], err[-3000:]
    assert lines[:-1] == ["WARNING:  Invalid HTTP request received."], err[-3000:]
    assert not list(tmp_path.rglob("uploads"))  # its folder went with it


def test_the_next_start_removes_the_uploads_a_killed_server_left(weights_file, tmp_path):
    first, _, base, token = _start(weights_file, tmp_path)
    photo = save_photo(tmp_path / "mine.png")
    try:
        sent = httpx.post(
            f"{base}/api/uploads",
            content=photo.read_bytes(),
            headers={"X-Dream-Token": token, "X-Filename": "mine.png"},
            timeout=60,
        )
        assert sent.status_code == 201, sent.text
        assert len(list(tmp_path.rglob("uploads/*"))) == 1  # the user's photo, in the server's folder
    finally:
        first.kill()  # kill -9: no cleanup of its own
        first.communicate(timeout=60)
    assert len(list(tmp_path.rglob("uploads/*"))) == 1
    second, *_ = _start(weights_file, tmp_path)
    try:
        assert list(tmp_path.rglob("uploads/*")) == []
        assert len(list(tmp_path.rglob("uploads"))) == 1  # the second server's own, empty
    finally:
        second.send_signal(signal.SIGINT)
        second.communicate(timeout=60)
    assert second.returncode == 130 and list(tmp_path.rglob("uploads")) == []


def test_a_folder_is_removed_only_when_its_server_is_gone(tmp_path, monkeypatch):
    from dreamcli.web import folders

    monkeypatch.setattr(folders.tempfile, "gettempdir", lambda: str(tmp_path))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    home = folders.parent()
    home.mkdir(mode=0o700)
    gone = home / f"{ended.pid}-{folders._started(ended.pid)}-aaaa"
    reused = home / f"{os.getpid()}-1-bbbb"  # this pid, but a process that started at another time
    alive = home / f"{os.getpid()}-{folders._started(os.getpid())}-cccc"
    other = home / "notes"
    for folder in (gone, reused, alive, other):
        (folder / "uploads").mkdir(parents=True)
    mine = folders.claim()
    assert sorted(p.name for p in home.iterdir()) == sorted([alive.name, other.name, mine.name])
    folders.release(mine)
    assert not mine.exists()


def test_a_shared_parent_is_not_trusted(tmp_path, monkeypatch):
    from dreamcli.web import folders

    monkeypatch.setattr(folders.tempfile, "gettempdir", lambda: str(tmp_path))
    folders.parent().mkdir(mode=0o777)
    folders.parent().chmod(0o777)  # another user could enter it, or plant links there
    mine = folders.claim()
    assert mine.parent == tmp_path and mine.name.startswith("dreamcli-serve-")
    folders.release(mine)
