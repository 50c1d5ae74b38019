"""Untrusted input, round 3: a picture's metadata, weights, presets, names and other runs."""

import base64
import json
import os
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import PngImagePlugin

from dreamcli import presets
from dreamcli.cli import main
from dreamcli.config import FIELDS, Settings
from dreamcli.errors import SettingsError, WeightsError
from dreamcli.io.metadata import EXIF_IMAGE_DESCRIPTION, METADATA_KEY, read_metadata

from conftest import cli_invoker, save_photo

TINY = ["--octaves", "1", "--iterations", "1", "--layer", "conv2/3x3", "--seed", "0"]


@pytest.fixture
def run(weights_file):
    return cli_invoker(weights_file, *TINY, catch_exceptions=True)


def clean(result, code):
    """The run ended with ``code``, without a traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.output


def photos_in(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        save_photo(folder / name, 40, 32, format="PNG")
    return folder


def png_with_text(path: Path, text: str, itxt: bool = False) -> Path:
    """A PNG whose ``dreamcli`` chunk holds ``text``: tEXt (Latin-1) or iTXt (UTF-8)."""
    info = PngImagePlugin.PngInfo()
    if itxt:
        info.add_itxt(METADATA_KEY, text)
    else:
        info.add_text(METADATA_KEY, text.encode("latin-1", "replace"))
    return save_photo(path, 40, 32, pnginfo=info)


def exif_description(kind: int, count: int, payload: bytes) -> bytes:
    """Raw EXIF whose ImageDescription has any TIFF type (Pillow would write text only)."""
    field, extra = (payload.ljust(4, b"\0"), b"") if len(payload) <= 4 else (struct.pack("<I", 26), payload)
    entry = struct.pack("<HHI", EXIF_IMAGE_DESCRIPTION, kind, count) + field
    return b"Exif\0\0II*\0" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0) + extra


def jpeg_with_description(path: Path, value) -> Path:
    if isinstance(value, str):
        raw = exif_description(2, len(value) + 1, value.encode() + b"\0")
    elif isinstance(value, bytes):
        raw = exif_description(7, len(value), value)
    elif isinstance(value, tuple):  # a RATIONAL
        raw = exif_description(5, 1, struct.pack("<II", *value))
    else:
        short = value < 65536
        raw = exif_description(3 if short else 4, 1, struct.pack("<H" if short else "<I", value))
    save_photo(path, 40, 32, exif=raw)
    return path


def dream_metadata(**extra) -> str:
    settings = Settings(layers=["conv2/3x3"], octaves=1, iterations=1, seed=0).to_dict()
    return json.dumps({"settings": settings, **extra})


# ---------------------------------------------------------------- 1. metadata writes outside -o


def test_a_pictures_preset_field_cannot_put_the_output_outside_the_folder(run, tmp_path):
    hostile = png_with_text(tmp_path / "hostile.png", dream_metadata(preset="../../escaped"))
    (tmp_path / "in").mkdir()
    photo = save_photo(tmp_path / "in" / "photo.png", 40, 32)
    out = tmp_path / "deep" / "out"
    output = clean(run(photo, "-o", f"{out}/", "--preset", hostile, "--name", "{preset}_{stem}.png"), 0)
    made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*_photo.png"))
    assert made == ["deep/out/hostile_photo.png"], (made, output)
    written = read_metadata(out / "hostile_photo.png")
    assert written["preset"] == "hostile"


def test_from_picture_keeps_only_a_plain_preset_name(tmp_path):
    for bad in ["../x", "a/b", "..", "", 7, ["x"], "x" * 5000]:
        picture = png_with_text(tmp_path / "made.png", dream_metadata(preset=bad))
        assert presets.from_picture(picture).name == "made"
    picture = png_with_text(tmp_path / "made.png", dream_metadata(preset="soft-2"))
    assert presets.from_picture(picture).name == "soft-2"


def test_a_pictures_unknown_model_is_refused_like_a_flag(tmp_path):
    text = json.loads(dream_metadata())
    text["settings"]["model"] = "nosuchnet"
    picture = png_with_text(tmp_path / "made.png", json.dumps(text))
    with pytest.raises(SettingsError, match="nosuchnet"):
        presets.from_picture(picture)


def test_a_name_template_that_climbs_out_only_by_a_fields_value_is_refused(run, tmp_path):
    photo = save_photo(tmp_path / "...png", 40, 32, format="PNG")  # its stem is '..'
    out = tmp_path / "a" / "out"
    output = clean(run(photo, "-o", f"{out}/", "--name", "{stem}/x.png"), 2)
    assert "climb out" in output and not (tmp_path / "a" / "x.png").exists()
    # The same '..' typed in the template is the user's own choice.
    clean(run(photo, "-o", f"{out}/", "--name", "../{stem}_typed.png"), 0)
    assert (tmp_path / "a" / ".._typed.png").is_file()


# ---------------------------------------------------------------- 2. non-finite and odd weights


def _save_state(net, path: Path, change) -> Path:
    state = {k: change(k, v) for k, v in net.state_dict().items()}
    torch.save(state, path)
    return path


def test_nan_weights_are_refused_at_load_with_the_key(net, tmp_path):
    from dreamcli import load_model

    def poison(k, v):
        return v * float("nan") if k == "conv1.conv.weight" else v

    path = _save_state(net, tmp_path / "nan.pth", poison)
    with pytest.raises(WeightsError, match=r"conv1\.conv\.weight holds NaN"):
        load_model("googlenet", device="cpu", weights=path)


def test_integer_weights_name_the_dtype_and_half_weights_work(net, tmp_path):
    from dreamcli import load_model

    def to_int(k, v):
        return v.to(torch.int32) if k == "conv1.conv.weight" else v

    path = _save_state(net, tmp_path / "int.pth", to_int)
    with pytest.raises(WeightsError, match=r"conv1\.conv\.weight holds int32"):
        load_model("googlenet", device="cpu", weights=path)
    for dtype in (torch.float16, torch.bfloat16):
        path = _save_state(
            net, tmp_path / "half.pth", lambda k, v, d=dtype: v.to(d) if v.is_floating_point() else v
        )
        loaded = load_model("googlenet", device="cpu", weights=path)
        assert all(p.dtype == torch.float32 for p in loaded.module.parameters())


def test_a_dream_that_turns_non_finite_fails_that_file(run, tmp_path, monkeypatch):
    import dreamcli.engine.octaves as octaves

    real = octaves.StepPolicy.octave

    def poisoned(self, image, *args, **kwargs):
        return real(self, image, *args, **kwargs) * float("nan")

    monkeypatch.setattr(octaves.StepPolicy, "octave", poisoned)
    folder = photos_in(tmp_path / "in", "a.png", "b.png")
    output = clean(run(folder, "-o", tmp_path / "out", "-q"), 1)
    assert output.count("Error:") == 2 and "NaN or infinity at octave 1" in output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# ---------------------------------------------------------------- 3. metadata of any shape


@pytest.mark.parametrize(
    "value",
    [7, 70000, (1, 2), b"\xff\xfe not text", "[" * 20_000 + "]" * 20_000, '{"settings": ' * 3000],
    ids=["short", "long", "tuple", "bytes", "deep-list", "deep-object"],
)
def test_read_metadata_never_raises_on_an_exif_description(tmp_path, value):
    picture = jpeg_with_description(tmp_path / "odd.jpg", value)
    assert read_metadata(picture) is None


def test_read_metadata_ignores_deep_and_huge_png_text(tmp_path):
    assert read_metadata(png_with_text(tmp_path / "deep.png", "[" * 100_000)) is None
    big = dream_metadata(pad="x" * (2 << 20))
    assert read_metadata(png_with_text(tmp_path / "big.png", big)) is None
    assert read_metadata(png_with_text(tmp_path / "ok.png", dream_metadata())) is not None


def test_a_folder_with_odd_metadata_is_dreamed(run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    jpeg_with_description(folder / "short.jpg", 7)
    png_with_text(folder / "deep.png", "[" * 100_000)
    output = clean(run(folder, "-o", tmp_path / "out", "-q"), 0)
    assert sorted(os.listdir(tmp_path / "out")) == ["deep_dream.png", "short_dream.png"], output


# ---------------------------------------------------------------- 5, 6. presets and huge values


def test_a_yaml_alias_bomb_under_a_known_key_is_one_short_line(tmp_path):
    anchors = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    anchors += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
    path = tmp_path / "bomb.yaml"
    path.write_text(f"octaves: [{', '.join(anchors)}]\n")  # 9**12 ones when written out
    with pytest.raises(SettingsError) as info:
        presets.load(path)
    assert "bomb.yaml: octaves" in str(info.value) and len(str(info.value)) < 300


def test_a_huge_preset_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("description: " + "x" * (1 << 20) + "\n")
    with pytest.raises(SettingsError, match="at most 64 KiB"):
        presets.load(path)


def test_a_deeply_nested_preset_is_one_line(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("layers: " + "[" * 10_000 + "]" * 10_000 + "\n")
    with pytest.raises(SettingsError, match="deep.yaml"):
        presets.load(path)


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


def test_huge_numbers_in_a_preset_are_one_line(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(f"octaves: {'9' * 4000}\n")
    with pytest.raises(SettingsError, match="octaves"):
        presets.load(path)
    path.write_text(f"octaves: {'9' * 5000}\n")  # over Python's int-from-text limit
    with pytest.raises(SettingsError, match="big.yaml"):
        presets.load(path)


# ---------------------------------------------------------------- 4. names the file system refuses


def test_an_output_name_too_long_fails_that_file_on_every_run(run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save_photo(folder / ("a" * 250 + ".png"), 40, 32)  # 254 bytes; its dream's name would be 260
    save_photo(folder / "b.png", 40, 32)
    for _ in range(2):
        output = clean(run(folder, "-o", tmp_path / "out"), 1)
        errors = [line for line in output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "too long" in errors[0] and "--name" in errors[0], output
    assert os.listdir(tmp_path / "out") == ["b_dream.png"]


# ---------------------------------------------------------------- 8. --json for any name


def test_json_lines_are_strict_json_and_give_back_the_bytes(run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.png")
    save_photo(folder / name, 40, 32, format="PNG")
    save_photo(folder / "plain.png", 40, 32)
    output = run(folder, "-o", tmp_path / "out", "--json", "-q").stdout
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


# ---------------------------------------------------------------- 9. Ctrl-C counts what was not reached:
# tests/test_batch.py::test_ctrl_c_in_the_engine_stops_cleanly


# ---------------------------------------------------------------- 10. two runs into one folder


def _claim_file(output: Path) -> Path:
    return output.with_name(f".{output.name}.claim")


def test_a_file_another_live_run_claimed_is_skipped(run, tmp_path):
    from dreamcli.io import atomic

    folder = photos_in(tmp_path / "in", "a.png", "b.png")
    out = tmp_path / "out"
    out.mkdir()
    _claim_file(out / "a_dream.png").write_text(f"{os.getppid()}@{atomic._HOST}\n")  # a live process
    result = run(folder, "-o", out, "--json", "-q")
    clean(result, 0)
    records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["a.png"]["status"] == "skipped"
    assert records["a.png"]["error"].startswith("another run is dreaming it (if none is, delete .a_")
    assert records["b.png"]["status"] == "done"
    assert sorted(os.listdir(out)) == [".a_dream.png.claim", "b_dream.png"]  # ours released after the write


def test_a_killed_runs_claim_expires(run, tmp_path):
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
    output = clean(run(folder, "-o", out), 0)
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


# ---------------------------------------------------------------- 11. what is in the way


def test_a_folder_or_fifo_at_an_output_is_an_error_not_a_skip(run, tmp_path):
    folder = photos_in(tmp_path / "in", "a.png", "b.png", "c.png")
    out = tmp_path / "out"
    (out / "a_dream.png").mkdir(parents=True)
    os.mkfifo(out / "b_dream.png")
    for flags in ([], ["--overwrite"]):
        output = clean(run(folder, "-o", out, *flags), 1)
        assert "a_dream.png is a folder; remove it or choose another --name" in output
        assert "b_dream.png is a FIFO" in output
        assert "0 skipped, 2 failed" in output


def test_hidden_files_are_counted_but_not_dreamclis_own(run, tmp_path):
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
    output = clean(run(folder, "-o", tmp_path / "out"), 0)
    assert "2 done, 0 skipped, 0 failed; 2 hidden file(s) ignored" in output


def test_a_nul_in_a_path_on_stdin_says_to_use_dash_0(run, tmp_path):
    good = save_photo(tmp_path / "good.png", 40, 32)
    text = f"{good}\n{tmp_path}/bad\0name.png\n"
    output = clean(run("-", "-o", f"{tmp_path / 'out'}/", input=text.encode()), 1)
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "NUL" in errors[0] and "-0" in errors[0], output
    assert os.listdir(tmp_path / "out") == ["good_dream.png"]


# ---------------------------------------------------------------- 7. quiet means quiet


def _lzw_tiff_damaged(path: Path) -> Path:
    save_photo(path, 40, 32, compression="tiff_lzw")
    data = bytearray(path.read_bytes())
    for i in range(200, 400):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def test_reading_metadata_raises_no_warning(tmp_path):
    picture = tmp_path / "odd.jpg"
    save_photo(picture, 40, 32, exif=exif_description(5, 2, struct.pack("<IIII", 1, 2, 3, 4)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_metadata(picture) is None
    assert caught == []


def test_quiet_leaves_only_error_lines_on_stderr_even_from_libtiff(tmp_path, weights_file):
    folder = photos_in(tmp_path / "in", "ok.png")
    save_photo(folder / "odd.jpg", 40, 32, exif=exif_description(5, 2, struct.pack("<IIII", 1, 2, 3, 4)))
    _lzw_tiff_damaged(folder / "bad.tif")
    argv = [folder, "-o", tmp_path / "out", "--weights", weights_file, *TINY, "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "dreamcli", *map(str, argv)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "bad.tif" in lines[0], done.stderr


def test_a_library_warning_is_a_note_or_nothing_under_quiet(capsys):
    from dreamcli.cli.display import Display

    for quiet, text in ((True, "said under -q"), (False, "said aloud")):
        with Display(quiet, False, False):
            warnings.warn_explicit(text, UserWarning, "/usr/lib/python3/site-packages/PIL/x.py", 7)
    err = capsys.readouterr().err
    assert err == "Note: said aloud\n"


# ---------------------------------------------------------------- fuzzing what a file can hold
# A picture's metadata (PNG text chunks, EXIF ImageDescription of any type) and preset files:
# nothing escapes as an exception; the CLI exits 0, 1 or 2, never with a traceback.

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from([*FIELDS, "layers", "model", "description", "preset", "settings"]) | st.text(
    max_size=8
)
# Text a picture may carry: anything, JSON of any shape, or dreamcli's own shape with odd values.
metadata_text = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.dictionaries(keys, json_values, max_size=5).map(lambda s: json.dumps({"settings": s, "preset": "x"})),
    st.integers(1, 3000).map(lambda n: "[" * n),
)
# An EXIF ImageDescription of any TIFF type: BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SLONG...
exif_fields = st.tuples(
    st.sampled_from([1, 2, 3, 4, 5, 7, 9, 10, 11, 12]),
    st.integers(0, 2) | st.integers(0, 64),  # mostly one value: the shape a reader meets
    st.binary(min_size=16, max_size=64),
)
# A preset: YAML text of any shape, or a mapping of known keys to any values.
preset_text = st.one_of(
    st.text(max_size=300),
    st.dictionaries(keys, json_values, max_size=6).map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.sampled_from(
        ["a: &a [1]\nb: *a\n", "layers: " + "[" * 5000, "octaves: !!python/object:os.system {}\n"]
    ),
)


def cli(*args) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def through_the_cli(picture: Path) -> None:
    """The picture in a folder walk (its output exists: no model is loaded) and as a preset."""
    out = picture.parent.parent / "out"
    out.mkdir(exist_ok=True)
    save_photo(out / f"{picture.stem}_dream.png", 32, 32)
    cli(picture.parent, "-o", out, "-q")
    cli("--preset", picture, "--show-settings")


@FUZZ
@given(text=metadata_text, itxt=st.booleans())
def test_png_text_chunks_never_break_reading_or_the_cli(text, itxt):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in").mkdir()
        picture = png_with_text(Path(tmp) / "in" / "fuzz.png", text, itxt)
        data = read_metadata(picture)
        assert data is None or isinstance(data.get("settings"), dict)
        through_the_cli(picture)


@FUZZ
@given(field=exif_fields, text=metadata_text)
def test_exif_descriptions_of_any_type_never_break_reading_or_the_cli(field, text):
    kind, count, payload = field
    if kind == 2:  # ASCII: give it the text too, NUL-terminated
        payload = text.encode("utf-8")[:2000] + b"\0"
        count = len(payload)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in").mkdir()
        picture = Path(tmp) / "in" / "fuzz.jpg"
        save_photo(picture, 32, 32, exif=exif_description(kind, count, payload))
        read_metadata(picture)
        through_the_cli(picture)


@FUZZ
@given(text=preset_text)
def test_preset_files_raise_only_settings_errors(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            presets.load(path)
        except SettingsError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 1000
        cli("--preset", path, "--show-settings")


def test_a_huge_unknown_layer_name_is_cut_in_its_message(run, tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(f"layers: [{'x' * 50_000}]\nmodel: {'g' * 10_000}\n")
    with pytest.raises(SettingsError) as info:
        presets.load(path)
    assert "unknown model" in str(info.value) and len(str(info.value)) < 500
    path.write_text(f"layers: [{'x' * 50_000}]\n")
    output = clean(run(save_photo(tmp_path / "p.png", 40, 32), "--preset", path, "--layer", "x" * 50_000), 2)
    assert "unknown layer" in output and len(output) < 1000


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
