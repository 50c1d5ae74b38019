"""The dream command through Click's CliRunner: one image in, one dream out."""

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error

import pytest
import torch
from click.testing import CliRunner
from faults import HELD_DREAM, INTERRUPTIBLE, POSIX, TINY, clean, dream_process, errors, flag_values, photos
from hypothesis import HealthCheck, given, settings
from PIL import Image

from dreamcli import presets
from dreamcli.cli import main
from dreamcli.errors import SettingsError
from dreamcli.io.images import read_metadata

from conftest import cli_invoker, save_photo, wait_for_a_picture

FAST = ["--octaves", "2", "--iterations", "2", "--layer", "inception_3b", "--seed", "1"]


@pytest.fixture
def run(weights_file):
    def invoke(*args, weights=True, input=None):
        argv = [str(a) for a in args] + (["--weights", str(weights_file)] if weights else [])
        return CliRunner().invoke(main, argv, input=input, catch_exceptions=False)

    return invoke


def test_help_lists_the_domain_flags(run):
    result = run("--help", weights=False)
    assert result.exit_code == 0
    for flag in [
        "--layer",
        "--octaves",
        "--octave-scale",
        "--iterations",
        "--step-size",
        "--jitter",
        "--seed",
        "--device",
        "--weights",
        "--preset",
        "--max-size",
        "--quiet",
    ]:
        assert flag in result.output
    assert "[default: 1.4]" in result.output


def test_dream_writes_the_default_output_beside_the_input(run, photo):
    result = run(photo, *FAST)
    assert result.exit_code == 0, result.output
    out = photo.parent / "photo_dream.png"
    assert f"Wrote {out}" in result.output
    dreamed = Image.open(out)
    assert dreamed.size == Image.open(photo).size
    meta = read_metadata(out)
    assert meta["settings"]["layers"] == ["inception_3b"] and meta["settings"]["seed"] == 1
    assert meta["version"] and meta["input"] == "photo.png"


def test_output_flag_and_format_from_extension(run, photo, tmp_path):
    result = run(photo, *FAST, "-o", tmp_path / "x.jpg", "-q")
    assert result.exit_code == 0 and result.output == ""
    assert Image.open(tmp_path / "x.jpg").format == "JPEG"


def test_same_seed_gives_the_same_file(run, photo, tmp_path):
    run(photo, *FAST, "-o", tmp_path / "a.png")
    run(photo, *FAST, "-o", tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_seed_is_recorded_when_not_given(run, photo, tmp_path):
    args = [a for a in FAST if a not in ("--seed", "1")]
    run(photo, *args, "-o", tmp_path / "a.png")
    seed = read_metadata(tmp_path / "a.png")["settings"]["seed"]
    assert isinstance(seed, int)
    run(photo, *args, "--seed", seed, "-o", tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() != b""
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.tobytes() == b.tobytes()


def test_max_size_caps_the_output(run, tmp_path):
    src = save_photo(tmp_path / "big.png", 160, 80)
    assert run(src, *FAST, "--max-size", 64).exit_code == 0
    assert Image.open(tmp_path / "big_dream.png").size == (64, 32)


def test_bad_layer_is_a_usage_error_with_a_suggestion(run, photo):
    result = run(photo, "--layer", "inception_4x", weights=False)
    assert result.exit_code == 2
    assert "unknown layer 'inception_4x'" in result.output and "inception_4c" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("flag", "value"), [("--octaves", "0"), ("--octave-scale", "1"), ("--step-size", "-1")]
)
def test_out_of_range_flags_exit_2(run, photo, flag, value):
    result = run(photo, flag, value, weights=False)
    assert result.exit_code == 2 and flag in result.output


def test_offline_without_weights_is_one_clear_error(run, photo, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    result = run(photo, *FAST, weights=False)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert errors[0].startswith("Error: could not download the GoogLeNet weights")
    assert "googlenet-1378be20.pth" in errors[0] and "--weights" in errors[0]
    assert str(tmp_path / "cache") in errors[0]
    assert "Traceback" not in result.output
    assert not (photo.parent / "photo_dream.png").exists()


def test_missing_weights_file_exit_1(run, photo, tmp_path):
    result = run(photo, *FAST, "--weights", tmp_path / "none.pth", weights=False)
    assert result.exit_code == 1 and "none.pth does not exist" in result.output


def test_input_is_never_overwritten(run, photo):
    before = photo.read_bytes()
    result = run(photo, *FAST, "-o", photo)
    assert result.exit_code == 2 and "never overwrites an input" in result.output  # usage: before any work
    assert photo.read_bytes() == before


def test_unwritable_extension_is_refused_before_dreaming(run, photo, tmp_path):
    result = run(photo, *FAST, "-o", tmp_path / "x.bmp")
    assert result.exit_code == 2 and "unknown image extension '.bmp'" in result.output


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (("--fps", "3"), "an option of dream zoom"),
        (("--grid", "3"), "an option of dream atlas"),
        (("--blend", "0.5"), "an option of dream video"),
        (("--zoom", "3"), "it is now: dream zoom PHOTO --frames N"),
        (("--sweep", "inception_3a"), "it is now: dream sheet PHOTO --layers"),
        (("--atlas",), "it is now: dream atlas PHOTOS"),
        (("--list-layers",), "it is now: dream list layers"),
        (("--start", "noise"), "dream features"),
        (("--atlas-grid", "3"), "it is now: dream atlas --grid"),
    ],
)
def test_an_option_the_command_does_not_take_names_the_command_that_does(run, photo, tmp_path, args, fix):
    result = run(photo, *args, "-o", tmp_path / "out.png")
    assert result.exit_code == 2, result.output
    assert "No such option" in result.stderr and fix in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "out.png").exists()


def test_an_option_of_another_command_is_not_guessed_among_this_ones(run, photo):
    result = run(photo, "--fps", "3")
    assert result.stderr.strip() == "Error: No such option '--fps' (an option of dream zoom)"
    result = run(photo, "--presett", "eyes")  # a typo of this command's own option keeps the guess
    assert "Did you mean" in result.stderr and "'--preset'" in result.stderr


@pytest.mark.parametrize(
    ("command", "args", "fix"),
    [
        ("zoom", ("--name", "{stem}.gif"), "an option of dream"),
        ("sheet", ("--layers", "inception_3a", "--json"), "an option of dream"),
        ("atlas", ("--iterations", "3"), "an option of dream"),
        ("atlas", ("--batch-size", "4"), "an option of dream"),
        ("video", ("--fps", "10"), "an option of dream zoom"),
    ],
)
def test_each_command_takes_only_its_own_options(run, photo, tmp_path, command, args, fix):
    result = run(command, photo, *args)
    assert result.exit_code == 2, result.output
    assert "No such option" in result.stderr and fix in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_zoom_from_a_photo_refuses_a_size_and_one_from_noise_a_max_size(run, photo, tmp_path):
    result = run("zoom", photo, "--size", "64x64", "-o", tmp_path / "z.gif")
    assert result.exit_code == 2 and "a photo keeps its own" in result.stderr
    result = run("zoom", "--max-size", "64", "-o", tmp_path / "z.gif")
    assert result.exit_code == 2 and "takes --size" in result.stderr
    assert not (tmp_path / "z.gif").exists()


def test_the_sample_photo_serves_sheets_too(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # --sample gives a sheet its photo too, written here, not inside the package.
    fast = ["--octaves", "1", "--iterations", "1", "--max-size", 64]
    result = run("sheet", "--sample", "--layers", "inception_3a,inception_3b", *fast)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "sample_sheet.png").width > 64


def test_a_video_given_to_the_default_command_names_dream_video(run, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not read: the command is refused first")
    result = run(video)
    assert result.exit_code == 2 and "dream video" in result.stderr


def test_a_command_after_an_option_or_misspelt_is_one_line_before_any_work(run, photo, tmp_path):
    result = run("-q", "zoom", photo)
    assert result.exit_code == 2 and "zoom is a command" in result.stderr and "dream zoom" in result.stderr
    result = run("zomm", photo)
    assert result.exit_code == 2 and "did you mean the command 'dream zoom'" in result.stderr
    assert not list(tmp_path.glob("*_dream.png"))  # nothing dreamed on the way


def test_a_sheet_refuses_a_layer_its_own_flags_decide(run, photo):
    result = run("sheet", photo, "--layers", "inception_3a", "--layer", "inception_4c")
    assert result.exit_code == 2 and "--layer" in result.stderr


def test_the_first_word_completes_to_commands_and_files():
    env = {"_DREAM_COMPLETE": "bash_complete", "COMP_WORDS": "dream zo", "COMP_CWORD": "1"}
    result = CliRunner().invoke(main, [], env=env, prog_name="dream")
    assert "plain,zoom" in result.output.splitlines() and "file,zo" in result.output.splitlines()


def test_dream_list_alone_shows_what_it_lists(run):
    result = run("list", weights=False)
    assert result.exit_code == 0 and "layers" in result.output and "Error" not in result.output


def test_a_file_named_like_a_command_is_written_with_its_folder(run, tmp_path, monkeypatch):
    """The rule: a first word that names a command is that command; ./zoom is the file."""
    monkeypatch.chdir(tmp_path)
    save_photo(tmp_path / "zoom", 48, 40, format="PNG")
    result = run("./zoom", *FAST, "-o", tmp_path / "z.png")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "z.png").size == (48, 40)
    as_command = run("zoom", "--frames", "1", *FAST, "--size", "32x32", "-o", tmp_path / "z.gif")
    assert as_command.exit_code == 0 and Image.open(tmp_path / "z.gif").size == (32, 32)  # from noise


def test_no_input_is_a_usage_error(run):
    result = run(weights=False)
    assert result.exit_code == 2 and "--sample" in result.output


def test_sample_photo_dreams_into_the_current_folder(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("--sample", *FAST, "--max-size", 96)
    assert result.exit_code == 0, result.output
    assert "Rachel Michetti" in result.output
    assert Image.open(tmp_path / "sample_dream.png").size == (96, 64)


def test_list_layers_shows_both_names_and_channels(run):
    result = run("list", "layers", weights=False)
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if x.startswith("inception_4c "))
    assert line.split() == ["inception_4c", "inception4c", "512"]
    assert any(x.split()[:3] == ["conv2/3x3_reduce", "conv2", "64"] for x in result.output.splitlines())


def test_json_line_for_a_single_file(run, photo):
    result = run(photo, *FAST, "--json")
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["status"] == "done" and record["input"] == str(photo)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["list", "presets"],
        ["list", "layers"],
        ["zoom", "--help"],
        ["--preset", "deep", "--show-settings"],
    ],
)
def test_help_listings_and_presets_do_not_load_torch(args):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from dreamcli.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize(
    "command",
    [
        "",
        "sheet",
        "zoom",
        "video",
        "features",
        "atlas",
        "units",
        "explain",
        "list",
        "list layers",
        "serve",
        "patch",
        "patch test",
        "patch make",
    ],
)
def test_every_commands_help_fits_one_screen(command):
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, [*command.split(), "--help"])  # a terminal
    assert result.exit_code == 0
    assert len(result.output.splitlines()) <= 60, result.output


def test_the_readme_python_api_example_runs(tmp_path, monkeypatch, net):
    import re
    from pathlib import Path

    import dreamcli.models.loading

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    # No network here: the "download" hands over the random test weights.
    monkeypatch.setattr(dreamcli.models.loading, "download", lambda network, progress=True: net.state_dict())
    monkeypatch.chdir(tmp_path)
    save_photo(tmp_path / "photo.jpg", 64, 48)
    code = code.replace(
        'Settings(layers=["inception_4c"], seed=1)',
        'Settings(layers=["inception_3a"], octaves=1, iterations=1, seed=1)',
    )
    assert 'Settings(layers=["inception_3a"]' in code
    exec(compile(code, "README.md", "exec"), {})
    assert Image.open(tmp_path / "out.png").size == (64, 48)


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


def test_the_two_skipped_wordings_are_one(tiny, tmp_path):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    (tmp_path / "p_dream.png").write_bytes(b"x")
    (tmp_path / "p_sheet.png").write_bytes(b"x")
    single = tiny(photo).output.strip()
    view = tiny("sheet", photo, "--presets", "classic").output.strip()
    assert single == f"Skipped {tmp_path / 'p_dream.png'} (exists; --overwrite replaces it)"
    assert view == f"Skipped {tmp_path / 'p_sheet.png'} (exists; --overwrite replaces it)"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--layer", "inception_4c[9999]"], "layer 'inception_4c' has 512 channels (0-511); channel 9999"),
        (["--guide", "nowhere.png"], "nowhere.png does not exist"),
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


@pytest.mark.parametrize(
    ("command", "flag", "then"),
    [
        (["features", "--layer", "inception_3b"], "--like", "give a photo"),
        (["{photo}"], "--guide", "give a picture to dream of"),
        (["{photo}"], "--mask", "give a greyscale picture (white = dream)"),
    ],
)
def test_a_picture_flag_says_whether_its_file_is_missing_or_a_folder(tmp_path, command, flag, then):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    (tmp_path / "folder").mkdir()
    invoke = cli_invoker(tmp_path / "no-weights.pth")  # said before the model loads: exit 2, not 1
    args = [str(photo) if part == "{photo}" else part for part in command]
    for named, said in (("nosuch.png", "nosuch.png does not exist; "), ("folder", "folder is a folder; ")):
        result = invoke(*args, flag, tmp_path / named, "-o", tmp_path / "out.png")
        assert result.exit_code == 2, result.output
        assert f"{said}{then}" in result.output and "is not a file" not in result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out.png").exists()


def test_size_with_an_exotic_digit_is_a_usage_error(tiny):
    result = tiny("features", "--size", "²x16")
    assert (
        result.exit_code == 2 and "write WIDTHxHEIGHT" in result.output and "Traceback" not in result.output
    )


def test_usage_errors_are_one_line_with_one_form_of_option_name(weights_file, tmp_path):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    tiny = cli_invoker(weights_file)
    for args, fragment in (
        (["--octaves", "0"], "Error: Invalid value for --octaves: 0 is out of range; use 1-20"),
        (["--layer", "inception_9z"], "Error: Invalid value for --layer: unknown layer 'inception_9z'"),
        (["--batch-size", "0"], "Error: Invalid value for --batch-size: 0 is out of range; use 1-1024"),
    ):
        result = tiny(photo, *args)
        assert result.exit_code == 2
        assert result.output.splitlines() == [result.output.strip()] and result.output.startswith(fragment)


def test_stdin_keeps_spaces_and_takes_nul_separated_names(tiny, tmp_path):
    folder = photos(tmp_path / "in", " lead.png", "trail.png ", "new\nline.png")
    out = tmp_path / "out"
    lines = f"{folder / ' lead.png'}\n{folder / 'trail.png '}\r\n"
    assert tiny("-", "-o", out, input=lines).exit_code == 0
    assert sorted(os.listdir(out)) == [" lead_dream.png", "trail_dream.png"]
    newline = folder / "new\nline.png"
    names = f"{newline}\0".encode()
    result = tiny("-", "-0", "-o", out, input=names)
    assert result.exit_code == 0 and "new\nline_dream.png" in os.listdir(out)


@POSIX
def test_names_that_are_not_utf8_or_hold_newlines_map_back_from_errors_and_json(tiny, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    odd = os.fsdecode(b"caf\xe9\nbad.png")
    (folder / odd).write_text("not an image")
    result = tiny(folder, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 1
    (record,) = map(json.loads, result.stdout.splitlines())
    assert base64.b64decode(record["input_bytes"]) == os.fsencode(str(folder / odd))  # the exact bytes
    assert record["input"].endswith("/in/caf\ufffd\nbad.png")  # strict JSON: no lone surrogate
    (line,) = errors(result)  # one line, with the name quoted as bash would
    assert line.startswith("Error: $'/") and "/in/caf\\xe9\\x0abad.png' is not an image" in line


@POSIX
def test_sigterm_stops_like_ctrl_c_with_exit_143(tmp_path, weights_file):
    folder = photos(tmp_path / "in", *[f"p{i}.png" for i in range(30)])
    out = tmp_path / "out"
    proc = dream_process(folder, "-o", out, "--weights", weights_file, *INTERRUPTIBLE, stderr=subprocess.PIPE)
    wait_for_a_picture(out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Interrupted: finished files are kept" in err and "Traceback" not in err
    left = os.listdir(out)
    assert all(name.endswith("_dream.png") for name in left), left  # no .part, no claim left


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


def test_help_fits_a_screen_and_help_all_has_every_option(tiny):
    short = tiny("--help").output
    assert len(short.splitlines()) <= 60
    assert "More options" in short and "--heatmap" in short and "--tile-size" in short
    assert all(
        f"  {command} " in short for command in ("sheet", "zoom", "video", "features", "atlas", "list")
    )
    full = tiny("--help-all").output
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


@pytest.mark.parametrize(
    "flags",
    [
        ["--octaves", "9" * 400],
        ["--octave-scale", "9" * 400],
        ["--layer", "inception_4c[0-99999999999]"],
        ["--layer", "inception_4c[0-9999999]"],
        ["--layer", "inception_4c[0-70000]"],
    ],
    ids=["octaves", "octave-scale", "channels", "channels-middle", "channels-over-cap"],
)
def test_huge_numbers_are_usage_errors(weights_file, tmp_path, flags):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    result = cli_invoker(weights_file, catch_exceptions=True)(photo, *flags)
    output = clean(result, 2)
    assert len(output.strip().splitlines()[-1]) < 300
    if "[" in flags[1]:
        assert "over 65535" in output  # refused before a list of that many channels is made


def test_json_lines_are_strict_json_and_give_back_the_bytes(tiny_caught, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.png")
    save_photo(folder / name, 40, 32, format="PNG")
    save_photo(folder / "plain.png", 40, 32)
    output = tiny_caught(folder, "-o", tmp_path / "out", "--json", "-q").stdout
    records = [json.loads(line) for line in output.splitlines()]
    assert len(records) == 2
    for record in records:
        for key in ("input", "output"):
            record[key].encode("utf-8")  # no lone surrogates: any strict parser reads it
    odd = next(r for r in records if "input_bytes" in r)
    assert odd["input"].endswith("caf\ufffd.png")
    assert base64.b64decode(odd["input_bytes"]) == os.fsencode(folder / name)
    assert base64.b64decode(odd["output_bytes"]) == os.fsencode(
        tmp_path / "out" / os.fsdecode(b"caf\xe9_dream.png")
    )
    plain = next(r for r in records if "input_bytes" not in r)
    assert "output_bytes" not in plain and plain["input"] == str(folder / "plain.png")


def test_a_huge_unknown_layer_name_is_cut_in_its_message(tiny_caught, tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(f"layers: [{'x' * 50_000}]\nmodel: {'g' * 10_000}\n")
    with pytest.raises(SettingsError) as info:
        presets.load(path)
    assert "unknown model" in str(info.value) and len(str(info.value)) < 500
    path.write_text(f"layers: [{'x' * 50_000}]\n")
    output = clean(
        tiny_caught(save_photo(tmp_path / "p.png", 40, 32), "--preset", path, "--layer", "x" * 50_000), 2
    )
    assert "unknown layer" in output and len(output) < 1000


def test_ctrl_c_during_a_single_image(tiny_quiet, tmp_path, monkeypatch):
    src = save_photo(tmp_path / "a.png", 40, 32)
    import dreamcli.jobs.batch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dreamcli.jobs.batch, "dream", interrupted)
    result = tiny_quiet(src)
    assert result.exit_code == 130
    assert os.listdir(tmp_path) == ["a.png"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=flag_values)
def test_random_settings_never_give_a_traceback(weights_file, tmp_path, values):
    src = tmp_path / "p.png"
    if not src.exists():
        save_photo(src, 40, 32)
    args = [str(src), "-o", str(tmp_path / "o.png"), "--overwrite", "--weights", str(weights_file), "-q"]
    for flag, value in values.items():
        args += [flag, str(value)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    if result.exit_code:
        assert "Error:" in result.output, result.output


def test_a_status_line_shows_while_the_network_loads_and_goes_when_the_work_begins(monkeypatch):
    import io

    from dreamcli.cli.display import Display
    from dreamcli.events import FileStarted, Loading

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    display = Display(quiet=False, as_json=False, many=False)
    display(Loading("GoogLeNet", "IMAGENET1K_V1 weights"))
    assert "Loading GoogLeNet (IMAGENET1K_V1 weights)..." in terminal.getvalue()
    display(FileStarted("photo.jpg", 1, 1))
    assert display.status is None  # cleared: the dream's own bar takes the line
    display.close()
    quiet = Display(quiet=True, as_json=False, many=False)
    quiet(Loading("GoogLeNet", "IMAGENET1K_V1 weights"))
    assert terminal.getvalue().count("Loading") == 1  # -q: nothing


def test_long_work_of_one_size_says_how_long_after_its_first_steps(monkeypatch, capsys):
    from dreamcli.cli import display as shown
    from dreamcli.events import FileStarted, Step

    clock = iter(range(0, 10_000, 2))  # two seconds a step
    monkeypatch.setattr(shown.time, "monotonic", lambda: next(clock))
    display = shown.Display(quiet=False, as_json=False, many=False)
    display(FileStarted("features", 1, 1))
    for step in range(0, 8):
        display(Step(1, 1, step, 320, (512, 512), None))
    display.close()
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Note:")]
    assert notes == ["Note: 320 steps a picture: about 11 min more for this one at this pace"]  # 316 x 2 s


# ---------------------------------------------------------------- no command replaces what it reads


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["sheet", "{photo}", "--layers", "conv2/3x3", "-o", "{photo}"], "the photo"),
        (["zoom", "{frame}", "-o", "{frames}", "--frames", "2"], "would get a frame frame_00001.png"),
        (["zoom", "{photo_gif}", "-o", "{photo_gif}", "--frames", "2"], "the photo"),
        (["video", "{clip}", "-o", "{clip}"], "the clip"),
        (["features", "--preset", "{picture}", "-o", "{picture}"], "the preset"),
        (["sheet", "{photo}", "--presets", "{picture}", "-o", "{picture}"], "the preset"),
    ],
)
def test_no_command_replaces_a_file_it_reads_even_with_overwrite(run, tmp_path, command, said):
    photo = save_photo(tmp_path / "photo.png", 64, 48)
    (tmp_path / "frames").mkdir()
    frame = save_photo(tmp_path / "frames" / "frame_00001.png", 64, 48)
    gif = tmp_path / "photo.gif"
    Image.open(photo).save(gif)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not really a video")
    picture = tmp_path / "dream.png"
    made = run(photo, "-o", picture, "--octaves", "1", "--iterations", "1", "--layer", "conv2/3x3")
    assert made.exit_code == 0, made.output
    names = {"photo": photo, "frame": frame, "frames": tmp_path / "frames", "photo_gif": gif, "clip": clip}
    names["picture"] = picture
    before = {path: path.read_bytes() for path in (photo, frame, gif, clip, picture)}
    argv = [part.format(**names) for part in command] + ["--overwrite", "--octaves", "1", "--iterations", "1"]
    result = run(*argv)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and said in errors[0] and "never overwrites an input" in errors[0], result.output
    assert before == {path: path.read_bytes() for path in before}


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["zoom", "{photo}", "-o", ""], "-o '' names no file"),  # was: frames into the current folder
        (["zoom", "{photo}", "-o", "{file}/frames/"], "notes.txt is a file, not a folder"),
        (["sheet", "{photo}", "--layers", "conv2/3x3", "-o", "{file}/s.png"], "notes.txt is a file, not a"),
        (["features", "-o", "{file}/f.png"], "notes.txt is a file, not a folder"),
        (["video", "{clip}", "-o", "{file}/v.mp4"], "notes.txt is a file, not a folder"),
    ],
)
def test_an_output_through_a_file_or_of_no_name_is_one_line(run, tmp_path, monkeypatch, command, said):
    monkeypatch.chdir(tmp_path)
    photo = save_photo(tmp_path / "photo.png", 64, 48)
    (tmp_path / "notes.txt").write_text("a file")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not really a video")
    argv = [part.format(photo=photo, file=tmp_path / "notes.txt", clip=clip) for part in command]
    result = run(*argv, "--octaves", "1", "--iterations", "1", "--frames" if command[0] == "zoom" else "-q",
                 *(["1"] if command[0] == "zoom" else []))  # fmt: skip
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and said in errors[0] and "Traceback" not in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "notes.txt", "photo.png"]


def test_numbers_and_names_in_messages_are_written_as_given(run, tmp_path):
    photo = save_photo(tmp_path / "photo.png", 64, 48)
    (tmp_path / "seed.yaml").write_text("seed: 4294967296\n")
    result = run(photo, "--preset", tmp_path / "seed.yaml", "--show-settings")
    assert result.exit_code == 2 and "seed: 4294967296 is out of range" in result.output  # not 4.29497e+09
    huge = run(photo, "--model", "torchvision:" + "a" * 100_000, "--show-settings")
    assert huge.exit_code == 2 and len(huge.output) < 500, len(huge.output)
