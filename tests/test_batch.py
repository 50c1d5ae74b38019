"""Batch mode: folders, stdin, templates, skipping, failures, JSON, shards and Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamcli.config import Settings
from dreamcli.errors import SettingsError
from dreamcli.io.metadata import read_metadata
from dreamcli.jobs.outputs import Job, collect_inputs, parse_shard, plan_jobs, take_shard

from conftest import cli_invoker, save_photo

# The cheapest real dream: one octave, one step, an early layer.
TINY = ["--octaves", "1", "--iterations", "1", "--layer", "conv2/3x3", "--seed", "0"]


@pytest.fixture
def run(weights_file):
    return cli_invoker(weights_file, *TINY)


def folder_of_photos(root: Path, names=("a.png", "b.jpg", "c.png")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        save_photo(root / name, 40, 32, seed=i)
    return root


def test_mixed_folder_with_a_corrupt_image_goes_on_and_exits_1(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in")
    (photos / "broken.jpg").write_bytes((photos / "b.jpg").read_bytes()[:200])
    (photos / "notes.txt").write_text("not an image")
    result = run(photos, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["a_dream.png", "b_dream.png", "c_dream.png"]
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert "3 done, 0 skipped, 1 failed; 1 non-image file(s) ignored" in result.output


def test_files_and_folders_mix_and_the_output_folder_is_created(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in", ["a.png", "b.png"])
    single = save_photo(tmp_path / "single.jpg", 40, 32)
    result = run(single, photos, "-o", tmp_path / "new" / "out")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "new" / "out")) == ["a_dream.png", "b_dream.png", "single_dream.png"]


def test_existing_outputs_are_skipped_until_overwrite(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in")
    run(photos, "-o", tmp_path / "out")
    stamp = (tmp_path / "out" / "a_dream.png").stat().st_mtime_ns
    (tmp_path / "out" / "c_dream.png").unlink()  # as if the first run was interrupted
    result = run(photos, "-o", tmp_path / "out")
    assert result.exit_code == 0 and "1 done, 2 skipped, 0 failed" in result.output
    assert (tmp_path / "out" / "a_dream.png").stat().st_mtime_ns == stamp
    result = run(photos, "-o", tmp_path / "out", "--overwrite")
    assert "3 done, 0 skipped" in result.output
    assert (tmp_path / "out" / "a_dream.png").stat().st_mtime_ns != stamp


def test_paths_from_stdin(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in")
    listing = f"{photos / 'a.png'}\n\n{photos / 'c.png'}\n"
    result = run("-", "-o", tmp_path / "out", input=listing)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "out")) == ["a_dream.png", "c_dream.png"]


def test_name_template_fields(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in", ["a.png", "b.jpg"])
    result = run(
        photos, "-o", tmp_path / "out", "--preset", "eyes", "--name", "{index}-{stem}-{preset}-{layer}.{ext}"
    )
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "out")) == ["1-a-eyes-conv2-3x3.png", "2-b-eyes-conv2-3x3.jpg"]
    assert Image.open(tmp_path / "out" / "2-b-eyes-conv2-3x3.jpg").format == "JPEG"


def test_bad_templates_are_usage_errors(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in", ["a.png"])
    result = run(photos, "-o", tmp_path / "out", "--name", "{stem}_{size}.png")
    assert result.exit_code == 2 and "{size}" in result.output and "{stem}" in result.output
    result = run(photos, "-o", tmp_path / "out", "--name", "{stem}.gif")
    assert result.exit_code == 2 and "unknown image extension '.gif'" in result.output


def test_two_inputs_writing_one_output_are_refused(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in", ["a.png", "a.jpg"])
    result = run(photos, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "would both write" in result.output and "{ext}" in result.output
    assert not (tmp_path / "out").exists()


def test_recursive_keeps_the_folder_structure(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in", ["top.png"])
    folder_of_photos(photos / "x" / "y", ["deep.png"])
    result = run(photos, "-o", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "top_dream.png"
    ]
    result = run(photos, "-r", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "x" / "y" / "deep_dream.png").is_file()


def test_output_folder_inside_the_input_is_not_dreamed_again(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in", ["a.png"])
    run(photos, "-r", "-o", photos / "dreams")
    result = run(photos, "-r", "-o", photos / "dreams", "--json")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in records] == [str(photos / "a.png")]


def test_json_prints_one_line_per_file(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in", ["a.png", "b.png"])
    (photos / "zz.jpg").write_bytes(b"nope")
    result = run(photos, "-o", tmp_path / "out", "--json", "-q")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(Path(r["input"]).name, r["status"]) for r in records] == [
        ("a.png", "done"),
        ("b.png", "done"),
        ("zz.jpg", "failed"),
    ]
    assert set(records[0]) == {"input", "output", "status", "seconds", "error"}
    assert records[0]["error"] is None and records[0]["seconds"] > 0
    assert "zz.jpg" in records[2]["error"]
    assert records[0]["output"] == str(tmp_path / "out" / "a_dream.png")


def test_quiet_prints_only_errors(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in", ["a.png"])
    (photos / "bad.png").write_bytes(b"")
    result = run(photos, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {photos / 'bad.png'} is not an image Pillow can read "
        "(empty, damaged, or another kind of file)"
    ]


def test_missing_input_fails_alone(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in", ["a.png"])
    result = run(photos / "a.png", tmp_path / "gone.png", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "gone.png does not exist" in result.output
    assert (tmp_path / "out" / "a_dream.png").is_file()


def test_shards_cover_every_file_exactly_once(run, tmp_path):
    photos = folder_of_photos(tmp_path / "in", [f"p{i}.png" for i in range(7)])
    seen = []
    for k in (1, 2, 3):
        result = run(photos, "-o", tmp_path / "out", "--shard", f"{k}/3", "--json")
        assert result.exit_code == 0
        seen += [json.loads(line)["input"] for line in result.stdout.splitlines()]
    assert sorted(seen) == sorted(str(p) for p in photos.glob("*.png"))
    assert len(os.listdir(tmp_path / "out")) == 7


def test_shard_shares_are_stable_and_balanced():
    jobs = [Job(Path(f"f{i:02d}.png"), Path(f"o{i}.png"), i) for i in range(10)]
    shares = [take_shard(jobs, k, 3) for k in (1, 2, 3)]
    assert sorted(j.index for share in shares for j in share) == list(range(10))
    assert [len(s) for s in shares] == [4, 3, 3]
    assert take_shard(list(reversed(jobs)), 2, 3) == shares[1]  # input order does not matter


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3", "1/0"])
def test_bad_shards_are_refused(text):
    with pytest.raises(SettingsError, match="K/N"):
        parse_shard(text)


def test_single_input_with_folder_output(tmp_path):
    src = save_photo(tmp_path / "a.png", 40, 32)
    (tmp_path / "out").mkdir()
    jobs = plan_jobs(collect_inputs([src]), tmp_path / "out", "{stem}_dream.png", Settings())
    assert jobs[0].output == tmp_path / "out" / "a_dream.png"


def test_ctrl_c_in_the_engine_stops_cleanly(run, tmp_path, monkeypatch):
    photos = folder_of_photos(tmp_path / "in")
    import dreamcli.jobs.batch

    real = dreamcli.jobs.batch.dream
    calls = []

    def interrupted_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dreamcli.jobs.batch, "dream", interrupted_on_second)
    result = run(photos, "-o", tmp_path / "out")
    assert result.exit_code == 130
    assert os.listdir(tmp_path / "out") == ["a_dream.png"]
    assert "1 done, 0 skipped, 0 failed, 2 not reached" in result.output and "Interrupted" in result.output


def test_sigint_to_a_real_process_leaves_no_partial_file(tmp_path, weights_file):
    photos = folder_of_photos(tmp_path / "in", [f"p{i}.png" for i in range(30)])
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "dreamcli",
        photos,
        "-o",
        out,
        "--weights",
        weights_file,
        "-q",
        "--octaves",
        "1",
        "--iterations",
        "3",
        "--layer",
        "inception_4c",
        "--seed",
        "0",
    ]
    # A shell's background job starts with SIGINT ignored, and the child would inherit that;
    # a terminal's Ctrl-C reaches a foreground process, so the test restores the default.
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.glob("*.png"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.exists() and any(out.glob("*.png")), (
        "no output within 120 s: the signal would land in start-up"
    )
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    files = os.listdir(out)
    assert 1 <= len(files) < 30 and all(f.endswith("_dream.png") for f in files)
    for name in files:
        Image.open(out / name).load()  # every file that exists is whole


def test_same_size_images_are_dreamed_together(run, tmp_path, monkeypatch):
    photos = folder_of_photos(tmp_path / "in", ["a.png", "b.png", "c.png", "d.png"])
    save_photo(photos / "c.png", 48, 40, seed=7)  # a different size breaks the run of equal sizes
    (photos / "e.png").write_bytes(b"broken")
    import dreamcli.jobs.batch

    real, sizes = dreamcli.jobs.batch.dream, []
    monkeypatch.setattr(
        dreamcli.jobs.batch,
        "dream",
        lambda m, images, **kw: sizes.append(len(images)) or real(m, images, **kw),
    )
    result = run(photos, "-o", tmp_path / "together", "--batch-size", "3", "--json")
    assert result.exit_code == 1
    assert sizes == [2, 1, 1]  # a+b, then c (other size), then d
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(Path(r["input"]).name, r["status"]) for r in records] == [
        ("a.png", "done"),
        ("b.png", "done"),
        ("c.png", "done"),
        ("d.png", "done"),
        ("e.png", "failed"),
    ]
    monkeypatch.setattr(dreamcli.jobs.batch, "dream", real)
    run(photos, "-o", tmp_path / "alone")
    for name in ("a_dream.png", "b_dream.png", "d_dream.png"):
        together = np.asarray(Image.open(tmp_path / "together" / name), dtype=int)
        alone = np.asarray(Image.open(tmp_path / "alone" / name), dtype=int)
        assert np.abs(together - alone).max() <= 1  # the same dream, up to rounding


def test_hidden_files_and_folders_are_not_inputs(tmp_path):
    photos = folder_of_photos(tmp_path / "in", ["a.png"])
    folder_of_photos(photos / ".clip.mp4.frames", ["000001.png"])
    save_photo(photos / ".a_dream.png.x1.part.png", 40, 32)
    found = collect_inputs([photos], recursive=True)
    assert [p.name for p, _ in found.files] == ["a.png"] and found.not_images == []


def test_read_ahead_and_write_behind_threads_run_no_torch_operator(tmp_path, weights_file, monkeypatch):
    """A torch operator on a second thread starts a second OpenMP team that competes with the
    dreaming thread's: on 2 cores every dream of a batch was ~50 % slower (benchmarks/README.md)."""
    import threading

    from torch.utils._python_dispatch import TorchDispatchMode

    import dreamcli.jobs.batch
    from dreamcli.io.images import decode_image

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    photo = save_photo(tmp_path / "a.png", 80, 60, mode="RGBA")
    with Record() as record:
        picture = decode_image(photo, max_size=40)
    # Pillow and NumPy only: wrapping arrays (lift_fresh) and views compute nothing.
    assert set(record.ops) <= {"aten.lift_fresh.default", "aten.unsqueeze.default"}, record.ops
    assert picture.alpha is not None

    threads = []
    for name in ("fit", "output_picture"):  # the torch work of reading and writing
        real = getattr(dreamcli.jobs.batch, name)

        def on_main(*args, _real=real, **kwargs):
            threads.append(threading.current_thread() is threading.main_thread())
            return _real(*args, **kwargs)

        monkeypatch.setattr(dreamcli.jobs.batch, name, on_main)
    folder_of_photos(tmp_path / "in")
    result = cli_invoker(weights_file, *TINY)(tmp_path / "in", "-o", tmp_path / "out", "--max-size", "24")
    assert result.exit_code == 0
    assert len(threads) == 6 and all(threads)
    assert Image.open(tmp_path / "out" / "a_dream.png").size == (24, 19)


def test_a_missing_input_is_said_before_torch_loads(tmp_path):
    code = (
        "import sys\n"
        "from dreamcli.cli import main\n"
        f"try:\n    main([{str(tmp_path / 'nosuch.jpg')!r}])\n"
        "except SystemExit as exc:\n    print(exc.code)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["1", "False"], out
    assert out.stderr.strip() == f"Error: {tmp_path / 'nosuch.jpg'} does not exist; check the path"


def test_a_folder_run_with_another_preset_writes_its_dreams_beside_the_first(run, tmp_path):
    photos, out = folder_of_photos(tmp_path / "in", ["a.png", "b.png"]), tmp_path / "out"
    assert run(photos, "-o", out, "--preset", "preview").exit_code == 0
    first = {name: (out / name).read_bytes() for name in ("a_dream.png", "b_dream.png")}
    result = run(photos, "-o", out, "--preset", "eyes")
    assert result.exit_code == 0, result.output
    assert "2 done, 0 skipped, 0 failed" in result.output
    assert "2 outputs were made with preset preview" in result.output and "a_dream-eyes.png" in result.output
    assert sorted(os.listdir(out)) == ["a_dream-eyes.png", "a_dream.png", "b_dream-eyes.png", "b_dream.png"]
    assert all((out / name).read_bytes() == data for name, data in first.items())  # kept
    assert read_metadata(out / "a_dream-eyes.png")["preset"] == "eyes"
    again = run(photos, "-o", out, "--preset", "eyes")  # the same run again: nothing to do, and why
    assert (
        "0 done, 2 skipped, 0 failed; the 2 skipped were already dreamed with these settings" in again.output
    )
    steps = run(photos, "-o", out, "--preset", "eyes", "--step-size", "1")  # the same preset, another step
    assert (
        "2 done" in steps.output and len([n for n in os.listdir(out) if n.startswith("a_dream-eyes-")]) == 1
    )


def test_a_name_the_user_chose_is_kept_and_the_summary_says_why_and_how(run, tmp_path):
    photos, out = folder_of_photos(tmp_path / "in", ["a.png", "b.png"]), tmp_path / "out"
    run(photos, "-o", out, "--name", "{stem}.png")
    result = run(photos, "-o", out, "--name", "{stem}.png", "--preset", "preview")
    assert result.exit_code == 0 and sorted(os.listdir(out)) == ["a.png", "b.png"]
    assert "0 done, 2 skipped, 0 failed; the 2 skipped were made with no preset: --overwrite" in result.output
    single = run(photos / "a.png", "-o", out / "a.png", "--step-size", "1")
    assert (
        "Skipped " in single.output
        and "(made with another --step-size: --overwrite replaces" in single.output
    )
