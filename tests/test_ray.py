"""Batches on a local Ray (CPU, tiny images, random weights): the promises of a local batch hold.

Skipped where the ray extra is missing; CI installs it (the test extra pulls it in).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from faults import HOST
from PIL import Image

from conftest import cli_invoker, save_photo

FLAGS = ("--seed", "3", "--octaves", "2", "--iterations", "2")


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module: starting one costs seconds, and every --ray local run reuses it."""
    pytest.importorskip("ray.data")
    from dreamcli.run import cluster

    ray = cluster.connect("local")
    yield ray
    ray.shutdown()


def folder(path: Path) -> Path:
    path.mkdir()
    save_photo(path / "a.png", 96, 64, seed=1)
    save_photo(path / "b.jpg", 64, 80, seed=2)  # another size: rows need not match
    save_photo(path / "c.png", 72, 72, seed=3)
    (path / "bad.jpg").write_bytes(b"not a picture")
    return path


def json_lines(output: str) -> list[dict]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    for line in lines:
        line.pop("seconds")
    return sorted(lines, key=lambda line: line["input"])


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_ray_local_writes_what_a_local_batch_writes(ray_session, tmp_path, weights_file):
    run = cli_invoker(weights_file, *FLAGS, "--json")
    photos = folder(tmp_path / "in")
    local = run(photos, "-o", tmp_path / "local")
    on_ray = run(photos, "-o", tmp_path / "ray", "--ray", "local")

    assert on_ray.exit_code == local.exit_code == 1  # the bad file fails alone
    expected = [
        {**line, "output": line["output"].replace(str(tmp_path / "local"), str(tmp_path / "ray"))}
        for line in json_lines(local.stdout)
    ]
    assert json_lines(on_ray.stdout) == expected
    assert "3 done, 0 skipped, 1 failed" in on_ray.stderr
    assert "bad.jpg" in on_ray.stderr
    for name in ("a_dream.png", "b_dream.png", "c_dream.png"):
        assert np.array_equal(pixels(tmp_path / "ray" / name), pixels(tmp_path / "local" / name)), name
        assert not np.array_equal(pixels(tmp_path / "ray" / name)[..., :3], pixels(photos / "a.png")[..., :3])
    assert not (tmp_path / "ray" / "bad_dream.png").exists()

    again = run(photos, "-o", tmp_path / "ray", "--ray", "local")
    statuses = [line["status"] for line in json_lines(again.stdout)]
    assert statuses == ["skipped", "skipped", "failed", "skipped"]
    assert "0 done, 3 skipped, 1 failed" in again.stderr
    before = (tmp_path / "ray" / "a_dream.png").stat().st_mtime_ns
    over = run(photos / "a.png", "-o", tmp_path / "ray", "--ray", "local", "--overwrite")
    assert over.exit_code == 0
    assert (tmp_path / "ray" / "a_dream.png").stat().st_mtime_ns != before


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (Linux /proc), with its command line."""
    parents, names = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            names[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found[child] = names[child]
                frontier.append(child)
    return found


def start_batch(tmp_path: Path, weights_file: Path, count: int, iterations: int):
    """A real `dream DIR --ray local --json` process over ``count`` photos, and its output folder."""
    pytest.importorskip("ray.data")
    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(count):
        save_photo(photos / f"p{i:02}.png", 96, 64, seed=i)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "dreamcli", photos, "-o", out, "--weights", weights_file, *FLAGS]
    argv += ["--iterations", str(iterations), "--ray", "local", "--json"]
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, out


def wait_for_outputs(proc, out: Path, count: int) -> None:
    deadline = time.monotonic() + 240
    while len(list(out.glob("*.png"))) < count and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    written = len(list(out.glob("*.png")))
    assert written >= count, f"{written} of {count} outputs within 240 s (the run's exit: {proc.poll()})"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's workers through /proc")
def test_a_killed_worker_loses_and_duplicates_nothing(tmp_path, weights_file):
    proc, out = start_batch(tmp_path, weights_file, 8, iterations=6)
    try:
        wait_for_outputs(proc, out, 1)
        workers = [pid for pid, line in descendants(proc.pid).items() if "ray::MapWorker" in line]
        assert workers, "no Ray worker to kill"
        # At Ray's default nice 15 any other busy process starved them (minutes instead of seconds).
        assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in workers} == {
            os.getpriority(os.PRIO_PROCESS, proc.pid)
        }
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    reported = [json.loads(line) for line in stdout.splitlines()]  # Ray's notices too go to stderr
    assert sorted(Path(r["input"]).name for r in reported) == [f"p{i:02}.png" for i in range(8)]  # each once
    assert {r["status"] for r in reported} <= {"done", "skipped"}  # skipped: written just before the kill
    assert sorted(p.name for p in out.iterdir()) == [f"p{i:02}_dream.png" for i in range(8)]  # no partial
    for path in out.iterdir():
        Image.open(path).load()


def test_without_the_extra_ray_says_how_to_install_it(tmp_path, weights_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    photo = save_photo(tmp_path / "a.png")
    result = cli_invoker(weights_file)(photo, "-o", f"{tmp_path / 'out'}/", "--ray", "local")
    assert result.exit_code == 2
    assert "pip install 'dreamcli[ray]'" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--ray", "local", "--zoom", "2"), "it is now: dream zoom"),
        (("--ray", "local", "--heatmap"), "--guide, --mask, --accentuate and --heatmap run here"),
        (("--ray", "no-port-here"), "HOST:PORT"),
        (("--ray", "127.0.0.1:1"), "ray start --head"),
    ],
)
def test_ray_refusals_are_one_line_before_any_work(tmp_path, weights_file, flags, message):
    pytest.importorskip("ray.data")
    result = cli_invoker(weights_file)(save_photo(tmp_path / "a.png"), "-o", f"{tmp_path / 'out'}/", *flags)
    assert result.exit_code in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("out/*.png"))


def test_sigterm_stops_a_ray_batch_like_ctrl_c(tmp_path, weights_file):
    """Ray's core installs its own SIGTERM handler, which aborted the driver (exit -6) until
    dreamcli put its own back: exit 143, finished files kept, no partial file."""
    proc, out = start_batch(tmp_path, weights_file, 12, iterations=10)
    try:
        wait_for_outputs(proc, out, 2)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert "Interrupted" in stderr
    written = sorted(p.name for p in out.iterdir())
    assert 2 <= len(written) < 12
    assert all(name.endswith("_dream.png") for name in written)  # no partial file
    reported = [Path(json.loads(line)["output"]).name for line in stdout.splitlines()]
    assert set(reported) <= set(written)


def test_workers_that_cannot_load_fail_each_file_with_the_reason(ray_session, tmp_path, weights_file):
    """On a cluster the workers load the weights: a bad file fails every row with its reason,
    one line each (it used to kill the actor: Ray's traceback, ~260 lines, and no summary)."""
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a state dict")
    photos = folder(tmp_path / "in")
    result = cli_invoker(broken, *FLAGS)(photos, "-o", tmp_path / "out", "--ray", "local")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert sum("broken.pth" in line and line.startswith("Error: ") for line in lines) == 4
    assert "Traceback" not in result.output and "0 done, 0 skipped, 4 failed" in result.stderr


def test_a_cluster_run_removes_the_temporaries_its_killed_workers_left(tmp_path, monkeypatch):
    import dreamcli.io.atomic
    from dreamcli.io.atomic import remove_run_parts, remove_stale_parts
    from dreamcli.io.images import write_pil

    renamed = []
    real_replace = dreamcli.io.atomic.os.replace
    monkeypatch.setattr(
        dreamcli.io.atomic.os, "replace", lambda a, b: renamed.append(a) or real_replace(a, b)
    )
    write_pil(tmp_path / "w.png", Image.new("RGB", (8, 8)), None, "0123abcd")
    assert Path(renamed[0]).name.endswith(".0123abcd.part")  # the run's name is in its temporaries'

    dead = 2**22 + 12347
    names = {
        "this run's": f".a_dream.png.{dead}@{HOST}.abcd1234.0123abcd.part",
        "this run's, another node's": f".b_dream.png.{dead}@elsewhere.abcd1235.0123abcd.part",
        "another run's": f".c_dream.png.{dead}@{HOST}.abcd1236.4567cdef.part",  # maybe running now
        "a local run's": f".d_dream.png.{dead}@{HOST}.abcd1237.part",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half an image")
    remove_stale_parts(tmp_path)  # all just written: within the grace
    assert len(os.listdir(tmp_path)) == 5
    remove_run_parts(tmp_path, "0123abcd")
    assert set(os.listdir(tmp_path)) == {"w.png", names["another run's"], names["a local run's"]}
