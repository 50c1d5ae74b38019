"""Batch mode: folders, stdin, templates, skipping, failures, JSON, shards and Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import corpus
import numpy as np
import pytest
from faults import (
    HOST,
    INTERRUPTIBLE,
    POSIX,
    _claim_file,
    clean,
    dream_metadata,
    dream_process,
    errors,
    jpeg_with_description,
    one_error_line,
    photos,
    photos_in,
    png_with_text,
)
from PIL import Image

from dreamcli.config import Settings
from dreamcli.errors import SettingsError
from dreamcli.io.metadata import read_metadata
from dreamcli.jobs.inputs import Job, collect_inputs, parse_shard, take_shard
from dreamcli.jobs.naming import plan_jobs

from conftest import cli_invoker, save_photo, wait_for_a_picture

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
    # SIGINT reaches the child even from a background shell: conftest gives it back.
    flags = ["-o", out, "--weights", weights_file, "-q", *INTERRUPTIBLE]
    proc = dream_process(photos, *flags, stderr=subprocess.PIPE)
    wait_for_a_picture(out)
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


def test_output_folder_equal_to_the_input_folder_dreams_the_photos(tiny, tmp_path):
    folder = photos(tmp_path / "photos", "a.png", "b.png")
    result = tiny(folder, "-o", folder)
    assert result.exit_code == 0, result.output
    assert {"a_dream.png", "b_dream.png"} <= set(os.listdir(folder))
    again = tiny(folder, "-o", folder)  # a rerun must not dream its own outputs
    assert again.exit_code == 0 and "a_dream_dream.png" not in os.listdir(folder)
    assert "2 earlier dream(s) left out" in again.output and "0 done, 2 skipped" in again.output


def test_reruns_without_o_never_dream_their_own_outputs(tiny, tmp_path):
    folder = photos(tmp_path / "photos", "a.png", "b.png")
    for _ in range(3):
        assert tiny(folder).exit_code == 0
    assert sorted(os.listdir(folder)) == ["a.png", "a_dream.png", "b.png", "b_dream.png"]
    result = tiny(folder, "--include-dreams", "-o", tmp_path / "again")
    assert sorted(os.listdir(tmp_path / "again")) == [
        "a_dream.png",
        "a_dream_dream.png",
        "b_dream.png",
        "b_dream_dream.png",
    ]
    assert result.exit_code == 0


@POSIX
def test_a_link_and_its_target_are_both_dreamed(tiny, tmp_path):
    folder = photos(tmp_path / "photos", "real.png")
    os.symlink("real.png", folder / "link.png")
    result = tiny(folder, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "out")) == ["link_dream.png", "real_dream.png"]


@POSIX
def test_every_bad_kind_of_file_fails_alone_in_one_folder(tiny, tmp_path):
    folder = photos(tmp_path / "in", "good1.png", "good2.jpg")
    corpus.truncated_multiframe(folder / "cut.gif", "GIF")
    corpus.truncated_multiframe(folder / "cut2.tif", "TIFF")
    corpus.truncated(folder / "half.jpg", folder / "good2.jpg")
    (folder / "text.png").write_text("not an image")
    (folder / "empty.webp").write_bytes(b"")
    os.symlink("loop.png", folder / "loop.png")
    os.symlink("missing.png", folder / "dangling.png")
    os.mkfifo(folder / "pipe.tif")
    for _ in range(2):  # and again, as a resume would: nothing may stop it either
        result = tiny(folder, "-o", tmp_path / "out", "--json")
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
        assert len(records) == 10
        status = {name: record["status"] for name, record in records.items()}
        assert status["good1.png"] != "failed" and status["good2.jpg"] != "failed"
        bad = ("text.png", "empty.webp", "loop.png", "dangling.png", "pipe.tif")
        assert all(status[name] == "failed" for name in bad)
        # A cut file fails alone, or decodes what it holds (a GIF's first frame may be whole).
        assert {status[name] for name in ("cut.gif", "cut2.tif", "half.jpg")} <= {"done", "skipped", "failed"}
    assert "link loop" in records["loop.png"]["error"]
    assert "missing.png, which does not exist" in records["dangling.png"]["error"]
    assert {"good1_dream.png", "good2_dream.png"} <= set(os.listdir(tmp_path / "out"))


def test_an_encoder_that_fails_fails_its_file_alone(tiny, tmp_path, monkeypatch):
    import dreamcli.jobs.batch

    real, calls = dreamcli.jobs.batch.write_pil, []

    def encoder_breaks_once(path, *args):
        calls.append(path)
        if len(calls) == 1:
            raise ValueError("encoder error -2 when writing image file")
        return real(path, *args)

    monkeypatch.setattr(dreamcli.jobs.batch, "write_pil", encoder_breaks_once)
    result = tiny(photos(tmp_path / "in", "a.png", "b.png"), "-o", tmp_path / "out")
    assert result.exit_code == 1
    written, source = tmp_path / "out" / "a_dream.png", tmp_path / "in" / "a.png"
    message = f"cannot write {written}: ValueError: encoder error -2 when writing image file"
    assert errors(result) == [f"Error: {source}: {message}"]
    assert os.listdir(tmp_path / "out") == ["b_dream.png"]


def test_o_ending_with_a_slash_makes_a_folder_for_one_input(tiny, tmp_path):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    result = tiny(photo, "-o", f"{tmp_path / 'newdir'}/")
    assert result.exit_code == 0, result.output
    assert os.listdir(tmp_path / "newdir") == ["p_dream.png"]
    result = tiny("sheet", photo, "--presets", "classic", "-o", f"{tmp_path / 'sheets'}/")
    assert result.exit_code == 0 and os.listdir(tmp_path / "sheets") == ["p_sheet.png"]


def test_several_inputs_refuse_an_output_that_looks_like_a_file(tiny, tmp_path):
    folder = photos(tmp_path / "in", "a.png", "b.png")
    result = tiny(folder / "a.png", folder / "b.png", "-o", tmp_path / "both.png")
    assert result.exit_code == 2 and "with several inputs -o names a folder" in result.output
    assert not (tmp_path / "both.png").exists()


def test_a_missing_input_folder_says_it_does_not_exist(tiny, tmp_path):
    result = tiny(f"{tmp_path / 'nonexist'}/", "-o", f"{tmp_path / 'out'}/")
    assert result.exit_code == 1
    assert errors(result) == [f"Error: {tmp_path / 'nonexist'} does not exist; check the path"]


def test_a_full_disk_stops_the_batch_after_a_few_failed_writes(tiny, tmp_path, monkeypatch):
    import errno

    import dreamcli.io.atomic
    import dreamcli.jobs.batch

    dreamt = []
    real_dream = dreamcli.jobs.batch.dream
    monkeypatch.setattr(dreamcli.jobs.batch, "dream", lambda *a, **k: dreamt.append(1) or real_dream(*a, **k))

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dreamcli.io.atomic.os, "replace", disk_full)
    folder = photos(tmp_path / "in", *[f"p{i}.png" for i in range(8)])
    result = tiny(folder, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 8 and all(r["status"] == "failed" for r in records)
    # Not every remaining image dreamed for nothing: the third refused write is found before
    # the fifth dream, on every run (the write queue is bounded, so timing cannot change it).
    assert len(dreamt) == 4
    assert "not dreamed: the batch stopped after 3 writes in a row failed" in records[-1]["error"]
    # Three files on a full disk, the third failure found only at the end: no traceback either.
    small = photos(tmp_path / "three", "a.png", "b.png", "c.png")
    again = tiny(small, "-o", tmp_path / "out3", "--json")
    assert again.exit_code == 1 and "Traceback" not in again.output and len(again.stdout.splitlines()) == 3


def test_a_slow_disk_holds_the_dream_loop_back(tiny, tmp_path, monkeypatch):
    import dreamcli.jobs.batch

    dreamt, seen_by_writes = [], []
    real_dream, real_write = dreamcli.jobs.batch.dream, dreamcli.jobs.batch.write_pil
    monkeypatch.setattr(dreamcli.jobs.batch, "dream", lambda *a, **k: dreamt.append(1) or real_dream(*a, **k))

    def slow_write(*args):
        seen_by_writes.append(len(dreamt))
        time.sleep(0.5)  # far slower than a tiny dream: unbounded, the loop would run ahead
        return real_write(*args)

    monkeypatch.setattr(dreamcli.jobs.batch, "write_pil", slow_write)
    folder = photos(tmp_path / "in", *[f"p{i}.png" for i in range(6)])
    result = tiny(folder, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(os.listdir(tmp_path / "out")) == 6
    # Write i starts after dream i+1; at most the next dream may have begun by then.
    assert all(seen <= i + 2 for i, seen in enumerate(seen_by_writes)), seen_by_writes


@POSIX
def test_ctrl_c_while_the_batch_waits_for_a_write_stops_it(tiny, tmp_path, monkeypatch):
    import dreamcli.jobs.batch

    dreamt = []
    real_dream, real_write = dreamcli.jobs.batch.dream, dreamcli.jobs.batch.write_pil
    monkeypatch.setattr(dreamcli.jobs.batch, "dream", lambda *a, **k: dreamt.append(1) or real_dream(*a, **k))

    def slow_write(*args):
        if Path(args[0]).name == "p1_dream.png":  # the loop dreams p2, then waits for this write
            deadline = time.monotonic() + 30
            while len(dreamt) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # p2's tiny dream is over: the loop is waiting here when Ctrl-C comes
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)
        return real_write(*args)

    monkeypatch.setattr(dreamcli.jobs.batch, "write_pil", slow_write)
    folder = photos(tmp_path / "in", *[f"p{i}.png" for i in range(6)])
    result = tiny(folder, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 130, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    # p1 was being written when Ctrl-C came: it is finished and reported done, not "failed".
    assert [(r["input"][-6:], r["status"]) for r in records] == [("p0.png", "done"), ("p1.png", "done")]
    assert len(dreamt) == 3 and sorted(os.listdir(tmp_path / "out")) == ["p0_dream.png", "p1_dream.png"]


def test_encoder_limits_in_a_row_do_not_stop_a_batch(tiny, tmp_path, monkeypatch):
    import dreamcli.jobs.batch
    from dreamcli.errors import ImageError

    def too_wide(path, *args):
        raise ImageError(f"cannot write {path}: WEBP pictures are at most 16383 px a side")

    monkeypatch.setattr(dreamcli.jobs.batch, "write_pil", too_wide)
    result = tiny(photos(tmp_path / "in", *[f"p{i}.png" for i in range(5)]), "-o", tmp_path / "out", "--json")
    errors = [json.loads(line)["error"] for line in result.stdout.splitlines()]
    assert len(errors) == 5 and all("16383" in e for e in errors)  # each file tried, none 'not dreamed'


@POSIX
def test_stale_part_files_of_killed_runs_are_removed(tiny, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    hour_ago, days_ago = time.time() - 3600, time.time() - 3 * 86400
    files = {
        "dead": (f".a_dream.png.{2**22 + 12345}@{HOST}.abcd1234.part", hour_ago),  # no such pid
        "just killed": (f".c_dream.png.{2**22 + 12346}@{HOST}.abcd1235.part", time.time()),  # maybe a
        # container's live run with the same host name: left for PART_GRACE_S
        "alive": (f".d_dream.png.{os.getppid()}@{HOST}.efgh5678.part", hour_ago),  # a live process writes it
        "old": (".b_dream.png.xyz12345.part", days_ago),  # an older dreamcli's, days old
        "user's": (".thesis-draft.part", days_ago),  # not a name dreamcli makes: never touched
    }
    for name, mtime in files.values():
        (out / name).write_bytes(b"half an image")
        os.utime(out / name, (mtime, mtime))
    assert tiny(photos(tmp_path / "in", "a.png"), "-o", out).exit_code == 0
    kept = {files[k][0] for k in ("just killed", "alive", "user's")}
    assert set(os.listdir(out)) == kept | {"a_dream.png"}


def test_an_output_another_process_wrote_meanwhile_is_kept(tiny, tmp_path, monkeypatch):
    import dreamcli.jobs.batch

    real = dreamcli.jobs.batch.decode_image
    out = tmp_path / "out"

    def another_process_finishes_it(path, max_size=None):
        picture = real(path, max_size)
        out.mkdir(exist_ok=True)
        (out / f"{Path(path).stem}_dream.png").write_bytes(b"the other process's dream")
        return picture

    monkeypatch.setattr(dreamcli.jobs.batch, "decode_image", another_process_finishes_it)
    result = tiny(photos(tmp_path / "in", "a.png", "b.png"), "-o", out, "--json")
    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["skipped", "skipped"]
    assert (out / "a_dream.png").read_bytes() == b"the other process's dream"


def test_a_pictures_preset_field_cannot_put_the_output_outside_the_folder(tiny_caught, tmp_path):
    hostile = png_with_text(tmp_path / "hostile.png", dream_metadata(preset="../../escaped"))
    (tmp_path / "in").mkdir()
    photo = save_photo(tmp_path / "in" / "photo.png", 40, 32)
    out = tmp_path / "deep" / "out"
    output = clean(
        tiny_caught(photo, "-o", f"{out}/", "--preset", hostile, "--name", "{preset}_{stem}.png"), 0
    )
    made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*_photo.png"))
    assert made == ["deep/out/hostile_photo.png"], (made, output)
    written = read_metadata(out / "hostile_photo.png")
    assert written["preset"] == "hostile"


def test_a_name_template_that_climbs_out_only_by_a_fields_value_is_refused(tiny_caught, tmp_path):
    photo = save_photo(tmp_path / "...png", 40, 32, format="PNG")  # its stem is '..'
    out = tmp_path / "a" / "out"
    output = clean(tiny_caught(photo, "-o", f"{out}/", "--name", "{stem}/x.png"), 2)
    assert "climb out" in output and not (tmp_path / "a" / "x.png").exists()
    # The same '..' typed in the template is the user's own choice.
    clean(tiny_caught(photo, "-o", f"{out}/", "--name", "../{stem}_typed.png"), 0)
    assert (tmp_path / "a" / ".._typed.png").is_file()


def test_a_folder_with_odd_metadata_is_dreamed(tiny_caught, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    jpeg_with_description(folder / "short.jpg", 7)
    png_with_text(folder / "deep.png", "[" * 100_000)
    output = clean(tiny_caught(folder, "-o", tmp_path / "out", "-q"), 0)
    assert sorted(os.listdir(tmp_path / "out")) == ["deep_dream.png", "short_dream.png"], output


def test_an_output_name_too_long_fails_that_file_on_every_run(tiny_caught, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save_photo(folder / ("a" * 250 + ".png"), 40, 32)  # 254 bytes; its dream's name would be 260
    save_photo(folder / "b.png", 40, 32)
    for _ in range(2):
        output = clean(tiny_caught(folder, "-o", tmp_path / "out"), 1)
        errors = [line for line in output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "too long" in errors[0] and "--name" in errors[0], output
    assert os.listdir(tmp_path / "out") == ["b_dream.png"]


def test_a_file_another_live_run_claimed_is_skipped(tiny_caught, tmp_path):
    from dreamcli.io import atomic

    folder = photos_in(tmp_path / "in", "a.png", "b.png")
    out = tmp_path / "out"
    out.mkdir()
    _claim_file(out / "a_dream.png").write_text(f"{os.getppid()}@{atomic._HOST}\n")  # a live process
    result = tiny_caught(folder, "-o", out, "--json", "-q")
    clean(result, 0)
    records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["a.png"]["status"] == "skipped"
    assert records["a.png"]["error"].startswith("another run is dreaming it (if none is, delete .a_")
    assert records["b.png"]["status"] == "done"
    assert sorted(os.listdir(out)) == [".a_dream.png.claim", "b_dream.png"]  # ours released after the write


def test_a_killed_runs_claim_expires(tiny_caught, tmp_path):
    import time

    from dreamcli.io import atomic

    folder = photos_in(tmp_path / "in", "a.png", "b.png", "c.png")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    _claim_file(out / "a_dream.png").write_text(f"{int(dead.stdout)}@{atomic._HOST}\n")  # this host, gone
    old = _claim_file(out / "b_dream.png")
    old.write_text("1@another-host\n")  # another machine's, older than CLAIM_MAX_AGE_S
    hours_ago = time.time() - atomic.CLAIM_MAX_AGE_S - 60
    os.utime(old, (hours_ago, hours_ago))
    _claim_file(out / "c_dream.png").write_text("1@another-host\n")  # another machine's, fresh
    output = clean(tiny_caught(folder, "-o", out), 0)
    assert "2 done, 1 skipped, 0 failed" in output
    assert sorted(os.listdir(out)) == [".c_dream.png.claim", "a_dream.png", "b_dream.png"]


def test_two_batches_at_once_dream_each_file_once(tmp_path, weights_file, monkeypatch):
    import dreamcli.jobs.batch as batch
    from dreamcli import load_model
    from dreamcli.jobs.inputs import collect_inputs
    from dreamcli.jobs.naming import plan_jobs

    folder = photos_in(tmp_path / "in", "a.png", "b.png", "c.png")
    settings = Settings(layers=["conv2/3x3"], octaves=1, iterations=1, seed=0)
    model = load_model("googlenet", weights=weights_file, device="cpu")
    jobs = plan_jobs(collect_inputs([folder]), tmp_path / "out", "{stem}_dream.png", settings)
    real, dreamed, second = batch.dream, [], []

    def dream_while_another_run_starts(module, image, **kwargs):
        dreamed.append(1)
        if not second:  # the other run starts while the first dreams its first file
            second.append(None)
            second[0] = batch.Batch(model, settings).run(jobs)
        return real(module, image, **kwargs)

    monkeypatch.setattr(batch, "dream", dream_while_another_run_starts)
    first = batch.Batch(model, settings).run(jobs)
    assert len(dreamed) == 3  # a once (by the first run), b and c once (by the second)
    assert (first.done, first.skipped, second[0].done, second[0].skipped) == (1, 2, 2, 1)
    assert sorted(os.listdir(tmp_path / "out")) == ["a_dream.png", "b_dream.png", "c_dream.png"]


def test_a_folder_or_fifo_at_an_output_is_an_error_not_a_skip(tiny_caught, tmp_path):
    folder = photos_in(tmp_path / "in", "a.png", "b.png", "c.png")
    out = tmp_path / "out"
    (out / "a_dream.png").mkdir(parents=True)
    os.mkfifo(out / "b_dream.png")
    for flags in ([], ["--overwrite"]):
        output = clean(tiny_caught(folder, "-o", out, *flags), 1)
        assert "a_dream.png is a folder; remove it or choose another --name" in output
        assert "b_dream.png is a FIFO" in output
        assert "0 skipped, 2 failed" in output


def test_hidden_files_are_counted_but_not_dreamclis_own(tiny_caught, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save_photo(folder / "a.png", 40, 32)
    save_photo(folder / "b.png", 40, 32)
    save_photo(folder / ".secret.png", 40, 32)
    (folder / ".notes").write_text("x")
    (folder / ".a_dream.png.4242@host.abcdefgh.part").write_bytes(b"")
    (folder / ".a_dream.png.claim").write_text("1@host\n")
    (folder / ".a_zoom.gif.frames").mkdir()
    (folder / ".a_zoom.gif.frames" / "00001.png").write_bytes(b"")
    output = clean(tiny_caught(folder, "-o", tmp_path / "out"), 0)
    assert "2 done, 0 skipped, 0 failed; 2 hidden file(s) ignored" in output


def test_a_nul_in_a_path_on_stdin_says_to_use_dash_0(tiny_caught, tmp_path):
    good = save_photo(tmp_path / "good.png", 40, 32)
    text = f"{good}\n{tmp_path}/bad\0name.png\n"
    output = clean(tiny_caught("-", "-o", f"{tmp_path / 'out'}/", input=text.encode()), 1)
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "NUL" in errors[0] and "-0" in errors[0], output
    assert os.listdir(tmp_path / "out") == ["good_dream.png"]


def test_release_all_removes_this_processes_claims_even_untracked(tmp_path):
    """A SIGTERM can land between a claim's creation and its bookkeeping: the batch's last
    step removes every claim of this process in its folders, and no other process's."""
    from dreamcli.io import atomic
    from dreamcli.io.atomic import claim, claim_path, release_all

    mine = claim(tmp_path / "a_dream.png")
    assert isinstance(mine, Path) and mine.exists()
    other = claim_path(tmp_path / "b_dream.png")
    other.write_text(f"{os.getppid()}@{atomic._HOST}\n")  # a live process's, not ours
    (tmp_path / f"{other.name}.{os.getpid()}.stale").write_text("half a take-over")
    release_all({tmp_path})
    assert sorted(os.listdir(tmp_path)) == [other.name]


def test_a_claim_interrupted_before_its_owner_is_written_is_still_removed(tmp_path, monkeypatch):
    """Ctrl-C between the claim file's creation and its owner line left an empty hidden claim
    (seen in test_sigint_to_a_real_process_leaves_no_partial_file); another run's empty claim,
    one it is making now, stays."""
    from dreamcli.io import atomic

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fdopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.claim(tmp_path / "a_dream.png")
    monkeypatch.undo()
    theirs = atomic.claim_path(tmp_path / "b_dream.png")
    theirs.write_text("")
    assert atomic.claim_path(tmp_path / "a_dream.png").exists()
    atomic.release_all({tmp_path})
    assert os.listdir(tmp_path) == [theirs.name]


def test_names_with_spaces_and_non_ascii(tiny_quiet, tmp_path):
    folder = tmp_path / "mes photos d'été"
    folder.mkdir()
    src = save_photo(folder / "café crème ☕.png", 40, 32)
    result = tiny_quiet(src)
    assert result.exit_code == 0, result.output
    assert (folder / "café crème ☕_dream.png").is_file()


def test_folder_where_a_file_is_expected(tiny_quiet, tmp_path):
    src = save_photo(tmp_path / "a.png", 40, 32)
    (tmp_path / "dir.pth").mkdir()
    one_error_line(tiny_quiet(src, "--weights", tmp_path / "dir.pth", weights=False), "dir.pth is a folder")
    (tmp_path / "dir.yaml").mkdir()
    result = tiny_quiet(src, "--preset", tmp_path / "dir.yaml")
    assert result.exit_code == 2
    one_error_line(result, "dir.yaml is a folder")


def test_output_folder_that_cannot_be_written(tiny_quiet, tmp_path, monkeypatch):
    src = save_photo(tmp_path / "a.png", 40, 32)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")
    result = tiny_quiet(src, save_photo(tmp_path / "b.png", 40, 32), "-o", blocker / "out")
    assert result.exit_code == 1
    assert result.output.count("Error:") == 2 and "cannot create" in result.output
    import dreamcli.io.atomic

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(dreamcli.io.atomic.os, "replace", read_only)
    result = tiny_quiet(src, "-o", tmp_path / "ro.png")
    assert result.exit_code == 1
    one_error_line(result, "cannot write", "ro.png", "Permission denied")
    assert [p for p in os.listdir(tmp_path) if ".part" in p] == []


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
