"""What a new user and a demanding script found (issue 14): each case failed before its fix."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import corpus
import pytest
from PIL import Image

from conftest import cli_invoker, save_photo

TINY = ["--octaves", "1", "--iterations", "1", "--layer", "conv2/3x3", "--seed", "0"]
# This machine's name as dreamcli writes it into its temporaries' names (imageio._HOST).
HOST = "".join(c if c.isalnum() or c in "_-" else "_" for c in socket.gethostname())[:16]
POSIX = pytest.mark.skipif(os.name != "posix", reason="needs POSIX files and signals")


@pytest.fixture
def run(weights_file):
    return cli_invoker(weights_file, *TINY)


def photos(folder: Path, *names: str, size=(40, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        fmt = "JPEG" if ".jp" in name else "PNG"  # by content: some test names end oddly
        save_photo(folder / name, *size, seed=i, format=fmt)
    return folder


def errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def dream_process(*args, **popen):
    """``dream ARGS`` as a real process (for signals, pipes and blocking files)."""
    command = [sys.executable, "-m", "dreamcli", *[str(a) for a in args]]
    return subprocess.Popen(command, text=True, **popen)


# ---------------------------------------------------------------- work silently lost or never done


def test_output_folder_equal_to_the_input_folder_dreams_the_photos(run, tmp_path):
    folder = photos(tmp_path / "photos", "a.png", "b.png")
    result = run(folder, "-o", folder)
    assert result.exit_code == 0, result.output
    assert {"a_dream.png", "b_dream.png"} <= set(os.listdir(folder))
    again = run(folder, "-o", folder)  # a rerun must not dream its own outputs
    assert again.exit_code == 0 and "a_dream_dream.png" not in os.listdir(folder)
    assert "2 earlier dream(s) left out" in again.output and "0 done, 2 skipped" in again.output


def test_reruns_without_o_never_dream_their_own_outputs(run, tmp_path):
    folder = photos(tmp_path / "photos", "a.png", "b.png")
    for _ in range(3):
        assert run(folder).exit_code == 0
    assert sorted(os.listdir(folder)) == ["a.png", "a_dream.png", "b.png", "b_dream.png"]
    result = run(folder, "--include-dreams", "-o", tmp_path / "again")
    assert sorted(os.listdir(tmp_path / "again")) == [
        "a_dream.png",
        "a_dream_dream.png",
        "b_dream.png",
        "b_dream_dream.png",
    ]
    assert result.exit_code == 0


@POSIX
def test_a_link_and_its_target_are_both_dreamed(run, tmp_path):
    folder = photos(tmp_path / "photos", "real.png")
    os.symlink("real.png", folder / "link.png")
    result = run(folder, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "out")) == ["link_dream.png", "real_dream.png"]


def test_one_input_with_an_existing_output_says_so_before_loading_torch(tmp_path, weights_file):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    (tmp_path / "p_dream.png").write_bytes(b"an earlier result")
    code = (
        "import sys\nfrom dreamcli.cli import main\n"
        f"try:\n    main({[str(photo), '--weights', str(weights_file)]!r})\n"
        "except SystemExit as exit:\n    print('exit', exit.code)\n"
        "print('torch loaded:', 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["exit", "0", "torch", "loaded:", "False"], out
    assert out.stderr.strip() == f"Skipped {tmp_path / 'p_dream.png'} (exists; --overwrite replaces it)"


def test_the_two_skipped_wordings_are_one(run, tmp_path):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    (tmp_path / "p_dream.png").write_bytes(b"x")
    (tmp_path / "p_sheet.png").write_bytes(b"x")
    single = run(photo).output.strip()
    view = run("sheet", photo, "--presets", "classic").output.strip()
    assert single == f"Skipped {tmp_path / 'p_dream.png'} (exists; --overwrite replaces it)"
    assert view == f"Skipped {tmp_path / 'p_sheet.png'} (exists; --overwrite replaces it)"


# ---------------------------------------------------------------- one file never stops a batch


@POSIX
def test_a_fifo_named_png_fails_alone_instead_of_hanging(tmp_path, weights_file):
    folder = photos(tmp_path / "in", "a.png")
    os.mkfifo(folder / "pipe.png")
    proc = dream_process(
        folder, "-o", tmp_path / "out", "--weights", weights_file, *TINY, stderr=subprocess.PIPE
    )
    try:
        _, err = proc.communicate(timeout=120)  # before the fix: blocked forever in open()
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "pipe.png is a FIFO, not a regular file" in err
    assert os.listdir(tmp_path / "out") == ["a_dream.png"]


@POSIX
def test_every_bad_kind_of_file_fails_alone_in_one_folder(run, tmp_path):
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
        result = run(folder, "-o", tmp_path / "out", "--json")
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


def test_truncated_multiframe_files_are_one_line_errors(tmp_path):
    from dreamcli.errors import ImageError
    from dreamcli.io.images import read_image

    for fmt, name in (("GIF", "cut.gif"), ("TIFF", "cut.tif")):
        for keep in (0.3, 0.6, 0.9):
            path = corpus.truncated_multiframe(tmp_path / name, fmt, keep)
            try:
                read_image(path)
            except ImageError as exc:
                assert str(path) in str(exc) and "\n" not in str(exc)


def test_a_webp_over_the_encoders_limit_is_a_per_file_error(tmp_path):
    from dreamcli.errors import ImageError
    from dreamcli.io.images import write_pil

    with pytest.raises(ImageError, match=r"wide.webp: WEBP pictures are at most 16383 px a side.*--max-size"):
        write_pil(tmp_path / "wide.webp", Image.new("RGB", (16384, 1)))
    assert os.listdir(tmp_path) == []


def test_an_encoder_that_fails_fails_its_file_alone(run, tmp_path, monkeypatch):
    import dreamcli.jobs.batch

    real, calls = dreamcli.jobs.batch.write_pil, []

    def encoder_breaks_once(path, *args):
        calls.append(path)
        if len(calls) == 1:
            raise ValueError("encoder error -2 when writing image file")
        return real(path, *args)

    monkeypatch.setattr(dreamcli.jobs.batch, "write_pil", encoder_breaks_once)
    result = run(photos(tmp_path / "in", "a.png", "b.png"), "-o", tmp_path / "out")
    assert result.exit_code == 1
    written, source = tmp_path / "out" / "a_dream.png", tmp_path / "in" / "a.png"
    message = f"cannot write {written}: ValueError: encoder error -2 when writing image file"
    assert errors(result) == [f"Error: {source}: {message}"]
    assert os.listdir(tmp_path / "out") == ["b_dream.png"]


# ---------------------------------------------------------------- exit codes and messages


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--layer", "inception_4c[9999]"], "layer 'inception_4c' has 512 channels (0-511); channel 9999"),
        (["--guide", "nowhere.png"], "nowhere.png is not a file"),
        (["--name", "{stem:d}.png"], "output name template '{stem:d}.png' is not valid"),
        (["--shard", "²/2"], "shard '²/2' is not valid"),
        (["zoom", "--size", "64x64"], "--size: sets the size of a zoom from noise"),
    ],
)
def test_what_can_be_checked_before_the_model_loads_exits_2_at_once(tmp_path, args, fragment):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    # No weights anywhere: loading the model first would end in a weights error (exit 1).
    command = [args.pop(0)] if args[0] == "zoom" else []
    result = cli_invoker(tmp_path / "no-weights.pth")(*command, photo, *args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and fragment in result.output


def test_size_with_an_exotic_digit_is_a_usage_error(run):
    result = run("features", "--size", "²x16")
    assert (
        result.exit_code == 2 and "write WIDTHxHEIGHT" in result.output and "Traceback" not in result.output
    )


def test_usage_errors_are_one_line_with_one_form_of_option_name(weights_file, tmp_path):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    run = cli_invoker(weights_file)
    for args, fragment in (
        (["--octaves", "0"], "Error: Invalid value for --octaves: 0 is out of range; use 1-20"),
        (["--layer", "inception_9z"], "Error: Invalid value for --layer: unknown layer 'inception_9z'"),
        (["--batch-size", "0"], "Error: Invalid value for --batch-size: 0 is out of range; use 1-1024"),
    ):
        result = run(photo, *args)
        assert result.exit_code == 2
        assert result.output.splitlines() == [result.output.strip()] and result.output.startswith(fragment)


def test_o_ending_with_a_slash_makes_a_folder_for_one_input(run, tmp_path):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    result = run(photo, "-o", f"{tmp_path / 'newdir'}/")
    assert result.exit_code == 0, result.output
    assert os.listdir(tmp_path / "newdir") == ["p_dream.png"]
    result = run("sheet", photo, "--presets", "classic", "-o", f"{tmp_path / 'sheets'}/")
    assert result.exit_code == 0 and os.listdir(tmp_path / "sheets") == ["p_sheet.png"]


def test_several_inputs_refuse_an_output_that_looks_like_a_file(run, tmp_path):
    folder = photos(tmp_path / "in", "a.png", "b.png")
    result = run(folder / "a.png", folder / "b.png", "-o", tmp_path / "both.png")
    assert result.exit_code == 2 and "with several inputs -o names a folder" in result.output
    assert not (tmp_path / "both.png").exists()


def test_a_missing_input_folder_says_it_does_not_exist(run, tmp_path):
    result = run(f"{tmp_path / 'nonexist'}/", "-o", f"{tmp_path / 'out'}/")
    assert result.exit_code == 1
    assert errors(result) == [f"Error: {tmp_path / 'nonexist'} does not exist; check the path"]


def test_stdin_keeps_spaces_and_takes_nul_separated_names(run, tmp_path):
    folder = photos(tmp_path / "in", " lead.png", "trail.png ", "new\nline.png")
    out = tmp_path / "out"
    lines = f"{folder / ' lead.png'}\n{folder / 'trail.png '}\r\n"
    assert run("-", "-o", out, input=lines).exit_code == 0
    assert sorted(os.listdir(out)) == [" lead_dream.png", "trail_dream.png"]
    newline = folder / "new\nline.png"
    names = f"{newline}\0".encode()
    result = run("-", "-0", "-o", out, input=names)
    assert result.exit_code == 0 and "new\nline_dream.png" in os.listdir(out)


@POSIX
def test_names_that_are_not_utf8_or_hold_newlines_map_back_from_errors_and_json(run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    odd = os.fsdecode(b"caf\xe9\nbad.png")
    (folder / odd).write_text("not an image")
    result = run(folder, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 1
    (record,) = map(json.loads, result.stdout.splitlines())
    assert base64.b64decode(record["input_bytes"]) == os.fsencode(str(folder / odd))  # the exact bytes
    assert record["input"].endswith("/in/caf\ufffd\nbad.png")  # strict JSON: no lone surrogate
    (line,) = errors(result)  # one line, with the name quoted as bash would
    assert line.startswith("Error: $'/") and "/in/caf\\xe9\\x0abad.png' is not an image" in line


def test_pillow_warnings_name_the_file_and_stay_quiet_under_q(run, tmp_path):
    tiff = corpus.bad_tag_tiff(tmp_path / "tags.tif")
    loud = run(tiff, "-o", tmp_path / "a.png", "--overwrite")
    assert "Note: tags.tif: Metadata Warning, tag 282 had too many entries" in loud.output
    quiet = run(tiff, "-o", tmp_path / "b.png", "-q")
    assert quiet.exit_code == 0 and quiet.output == ""


def test_torch_downloading_line_stays_off_stdout(tmp_path, monkeypatch):
    import urllib.error

    import torch
    from click.testing import CliRunner

    from dreamcli.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(
        torch.hub,
        "download_url_to_file",
        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")),
    )
    photo = save_photo(tmp_path / "p.png", 40, 32)
    result = CliRunner().invoke(main, [str(photo), "--json", *TINY])
    assert result.exit_code == 1
    assert result.stdout == ""  # --json's stream carries JSON only
    assert "Downloading" in result.stderr
    quiet = CliRunner().invoke(main, [str(photo), "-q", *TINY])
    assert "Downloading" not in quiet.output


@POSIX
def test_sigterm_stops_like_ctrl_c_with_exit_143(tmp_path, weights_file):
    folder = photos(tmp_path / "in", *[f"p{i}.png" for i in range(30)])
    out = tmp_path / "out"
    proc = dream_process(
        folder,
        "-o",
        out,
        "--weights",
        weights_file,
        "--octaves",
        "1",
        "--iterations",
        "3",
        "--layer",
        "inception_4c",
        "--seed",
        "0",
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.glob("*.png"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.exists() and any(out.glob("*.png")), (
        "no output within 120 s: the signal would land in start-up"
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Interrupted: finished files are kept" in err and "Traceback" not in err
    left = os.listdir(out)
    assert all(name.endswith("_dream.png") for name in left), left  # no .part, no claim left


# `dream ARGS`, its third dream held until the file RELEASE exists: the first file's line is
# out by then, so a test can see the run still going, however slow the machine.
HELD_DREAM = """
import sys, time
from pathlib import Path
import dreamcli.jobs.batch
from dreamcli.cli import main
real, calls, release = dreamcli.jobs.batch.dream, [], Path(sys.argv.pop(1))
def held(*args, **kwargs):
    calls.append(1)
    deadline = time.monotonic() + 120
    while len(calls) == 3 and not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return real(*args, **kwargs)
dreamcli.jobs.batch.dream = held
main(prog_name="dream")
"""


@POSIX
def test_json_into_head_keeps_the_run_and_its_exit_code(tmp_path, weights_file):
    folder = photos(tmp_path / "in", *[f"p{i}.png" for i in range(8)])
    release = tmp_path / "release"
    argv = [folder, "-o", tmp_path / "out", "--json", "--weights", weights_file, *TINY]
    proc = subprocess.Popen(
        [sys.executable, "-c", HELD_DREAM, release, *map(str, argv)],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Buffered, as in a user's shell: each JSON line must be flushed as it is made.
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )
    first = proc.stdout.readline()
    assert proc.poll() is None  # the line came as soon as its file was done, not at exit
    release.touch()
    proc.stdout.close()  # what head -1 does after its line
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert json.loads(first)["status"] == "done"
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert len(os.listdir(tmp_path / "out")) == 8


def test_a_full_disk_stops_the_batch_after_a_few_failed_writes(run, tmp_path, monkeypatch):
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
    result = run(folder, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 8 and all(r["status"] == "failed" for r in records)
    # Not every remaining image dreamed for nothing: the third refused write is found before
    # the fifth dream, on every run (the write queue is bounded, so timing cannot change it).
    assert len(dreamt) == 4
    assert "not dreamed: the batch stopped after 3 writes in a row failed" in records[-1]["error"]
    # Three files on a full disk, the third failure found only at the end: no traceback either.
    small = photos(tmp_path / "three", "a.png", "b.png", "c.png")
    again = run(small, "-o", tmp_path / "out3", "--json")
    assert again.exit_code == 1 and "Traceback" not in again.output and len(again.stdout.splitlines()) == 3


def test_a_slow_disk_holds_the_dream_loop_back(run, tmp_path, monkeypatch):
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
    result = run(folder, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(os.listdir(tmp_path / "out")) == 6
    # Write i starts after dream i+1; at most the next dream may have begun by then.
    assert all(seen <= i + 2 for i, seen in enumerate(seen_by_writes)), seen_by_writes


@POSIX
def test_ctrl_c_while_the_batch_waits_for_a_write_stops_it(run, tmp_path, monkeypatch):
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
    result = run(folder, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 130, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    # p1 was being written when Ctrl-C came: it is finished and reported done, not "failed".
    assert [(r["input"][-6:], r["status"]) for r in records] == [("p0.png", "done"), ("p1.png", "done")]
    assert len(dreamt) == 3 and sorted(os.listdir(tmp_path / "out")) == ["p0_dream.png", "p1_dream.png"]


def test_encoder_limits_in_a_row_do_not_stop_a_batch(run, tmp_path, monkeypatch):
    import dreamcli.jobs.batch
    from dreamcli.errors import ImageError

    def too_wide(path, *args):
        raise ImageError(f"cannot write {path}: WEBP pictures are at most 16383 px a side")

    monkeypatch.setattr(dreamcli.jobs.batch, "write_pil", too_wide)
    result = run(photos(tmp_path / "in", *[f"p{i}.png" for i in range(5)]), "-o", tmp_path / "out", "--json")
    errors = [json.loads(line)["error"] for line in result.stdout.splitlines()]
    assert len(errors) == 5 and all("16383" in e for e in errors)  # each file tried, none 'not dreamed'


@POSIX
def test_stale_part_files_of_killed_runs_are_removed(run, tmp_path):
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
    assert run(photos(tmp_path / "in", "a.png"), "-o", out).exit_code == 0
    kept = {files[k][0] for k in ("just killed", "alive", "user's")}
    assert set(os.listdir(out)) == kept | {"a_dream.png"}


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


def test_an_output_another_process_wrote_meanwhile_is_kept(run, tmp_path, monkeypatch):
    import dreamcli.jobs.batch

    real = dreamcli.jobs.batch.decode_image
    out = tmp_path / "out"

    def another_process_finishes_it(path, max_size=None):
        picture = real(path, max_size)
        out.mkdir(exist_ok=True)
        (out / f"{Path(path).stem}_dream.png").write_bytes(b"the other process's dream")
        return picture

    monkeypatch.setattr(dreamcli.jobs.batch, "decode_image", another_process_finishes_it)
    result = run(photos(tmp_path / "in", "a.png", "b.png"), "-o", out, "--json")
    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["skipped", "skipped"]
    assert (out / "a_dream.png").read_bytes() == b"the other process's dream"


# ---------------------------------------------------------------- the command line itself


def test_help_fits_a_screen_and_help_all_has_every_option(run):
    short = run("--help").output
    assert len(short.splitlines()) <= 60
    assert "More options" in short and "--heatmap" in short and "--tile-size" in short
    assert all(
        f"  {command} " in short for command in ("sheet", "zoom", "video", "features", "atlas", "list")
    )
    full = run("--help-all").output
    for section in ("Dreaming", "Pictures", "Per file", "Running", "Many files"):
        assert f"{section} options:" in full
    assert "Range: 1-1024." in full and "<=" not in full  # one way to write a range


def test_shell_completion_offers_presets_and_layers():
    from click.testing import CliRunner

    from dreamcli.cli import main

    def complete(words: str) -> list[str]:
        env = {
            "_DREAM_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        result = CliRunner().invoke(main, [], env=env, prog_name="dream")
        return [line.split(",", 1)[1] for line in result.output.splitlines()]

    assert "eyes" in complete("dream --preset ey")
    assert {"inception_4c", "inception_4c/3x3_reduce"} <= set(complete("dream --layer inception_4c"))


def test_preset_from_a_picture_reproduces_it(run, tmp_path, weights_file):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    assert run(photo, "-o", tmp_path / "first.png", "--seed", "7", "--jitter", "5").exit_code == 0
    plain = cli_invoker(weights_file)  # no flags: every setting from the picture
    assert plain(photo, "--preset", tmp_path / "first.png", "-o", tmp_path / "again.png").exit_code == 0
    first = Image.open(tmp_path / "first.png")
    assert first.tobytes() == Image.open(tmp_path / "again.png").tobytes()
    assert run(photo, "--preset", photo).exit_code == 2  # a photo holds no settings: said so


def test_sweeps_and_zooms_record_their_real_settings(tmp_path, weights_file):
    from dreamcli.io.images import read_metadata

    photo = save_photo(tmp_path / "p.png", 48, 40)
    plain = cli_invoker(weights_file, "--octaves", "1", "--iterations", "1")
    assert plain("sheet", photo, "--layers", "conv2,conv3").exit_code == 0
    sheet = read_metadata(tmp_path / "p_sheet.png")
    assert [v["settings"]["layers"] for v in sheet["variants"]] == [["conv2"], ["conv3"]]
    assert all(v["settings"]["seed"] is not None for v in sheet["variants"])
    zoom_args = ["zoom", photo, "--frames", "2", "--layer", "Conv2/3x3_Reduce", "-o", tmp_path / "z.gif"]
    assert plain(*zoom_args).exit_code == 0
    zoom = read_metadata(tmp_path / "z.gif")
    assert zoom["settings"]["layers"] == ["Conv2/3x3_Reduce"] and zoom["settings"]["seed"] == 0
    assert zoom["zoom"] == 2


# ---------------------------------------------------------------- fuzzing the decoder

FUZZ_FORMATS = ("PNG", "JPEG", "GIF", "TIFF", "WEBP", "BMP", "PPM", "TGA")


def _sample(fmt: str) -> bytes:
    """A small valid file of ``fmt``; GIF and TIFF with three frames, as partial downloads cut them."""
    import io

    from conftest import photo_array

    frames = [Image.fromarray(photo_array(24, 16, seed=i)) for i in range(3)]
    buffer = io.BytesIO()
    if fmt in ("GIF", "TIFF"):
        frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:])
    else:
        frames[0].save(buffer, format=fmt)
    return buffer.getvalue()


SAMPLES = {fmt: _sample(fmt) for fmt in FUZZ_FORMATS}


@pytest.mark.parametrize("fmt", FUZZ_FORMATS)
def test_no_mutation_of_any_format_escapes_as_anything_but_one_image_error(tmp_path, fmt):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dreamcli.errors import ImageError
    from dreamcli.io.images import read_image

    data = SAMPLES[fmt]
    path = tmp_path / f"fuzz.{fmt.lower()}"

    @settings(max_examples=40, deadline=None, database=None)
    @given(
        cut=st.integers(0, len(data)),
        flips=st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), max_size=4),
    )
    def decode(cut, flips):
        mutated = bytearray(data)
        for where, mask in flips:
            mutated[where] ^= mask
        path.write_bytes(bytes(mutated[:cut]))
        try:
            picture = read_image(path)
        except ImageError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
        else:
            assert picture.rgb.shape[0] == 3

    decode()


def test_show_settings_says_what_the_flags_changed_in_the_preset(weights_file):
    import yaml

    shown = yaml.safe_load(
        cli_invoker(weights_file)("--preset", "deep", "--octaves", "5", "--show-settings").output
    )
    assert shown["octaves"] == 5 and "(Changed from the deep preset: octaves.)" in shown["description"]


def test_a_text_file_as_weights_says_what_it_is(tmp_path, photo):
    (tmp_path / "notes.pth").write_text("just some text, no tensors\n")
    result = cli_invoker(tmp_path / "notes.pth")(photo)
    (line,) = errors(result)
    assert "notes.pth cannot be loaded safely (" in line and ": " in line.split("safely (", 1)[1]


def test_a_picture_with_broken_settings_is_no_preset(weights_file, tmp_path):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    odd = Image.new("RGB", (8, 8))
    info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
    info.add_text("dreamcli", json.dumps({"settings": 5}))
    odd.save(tmp_path / "odd.png", pnginfo=info)
    result = cli_invoker(weights_file)(photo, "--preset", tmp_path / "odd.png")
    assert result.exit_code == 2 and "holds no dreamcli settings" in result.output
