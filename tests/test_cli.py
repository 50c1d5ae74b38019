"""The dream command through Click's CliRunner: one image in, one dream out."""

import json
import urllib.error

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dreamcli.cli import main
from dreamcli.io.images import read_metadata

from conftest import save_photo

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
