"""Presets: every shipped style runs; precedence, user folders and validation via the CLI."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from faults import FUZZ, dream_metadata, png_with_text, preset_text
from hypothesis import given
from PIL import Image

from dreamcli import presets
from dreamcli.cli import main
from dreamcli.errors import SettingsError
from dreamcli.io.images import read_metadata

from conftest import cli_invoker, save_photo

SHIPPED = sorted(p.stem for p in presets.builtin_folder().glob("*.yaml"))


@pytest.fixture(autouse=True)
def no_user_presets(tmp_path, monkeypatch):
    """Point the per-user config folder at an empty place and clear DREAMCLI_PRESETS."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(presets.ENV_VAR, raising=False)


def cli(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


def settings_of(*args):
    result = cli(*args, "--show-settings")
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


def test_at_least_eight_distinct_presets_ship():
    assert len(SHIPPED) >= 8
    loaded = [presets.load(presets.builtin_folder() / f"{name}.yaml") for name in SHIPPED]
    assert all(p.description for p in loaded)
    assert len({p.apply() for p in loaded}) == len(loaded)  # no two the same settings
    assert {"classic", "preview", "deep", "subtle"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_preset_dreams_a_tiny_image(name, tmp_path, model_weights):
    src = save_photo(tmp_path / "tiny.png", 64, 48)
    model = presets.find(name, presets.search_path([])).apply().model
    result = cli(src, "--preset", name, "--weights", model_weights(model), "--seed", 3, "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "tiny_dream.png"
    before = np.asarray(Image.open(src), dtype=np.float32)
    after = np.asarray(Image.open(out), dtype=np.float32)
    assert after.shape == before.shape and np.abs(after - before).mean() > 1.0
    meta = read_metadata(out)
    assert meta["preset"] == name and meta["settings"]["model"] == model
    assert meta["settings"]["layers"] == [
        str(s) for s in presets.find(name, presets.search_path([])).apply().layers
    ]


def test_precedence_defaults_then_preset_then_typed_flags():
    assert settings_of()["octaves"] == 4
    assert settings_of("--preset", "deep")["octaves"] == 6
    assert settings_of("--preset", "deep", "--octaves", "2")["octaves"] == 2
    # A flag typed with the default's value still wins over the preset...
    assert settings_of("--preset", "deep", "--octaves", "4")["octaves"] == 4
    # ...but a flag left out does not undo the preset.
    deep = settings_of("--preset", "deep", "--jitter", "5")
    assert (deep["octaves"], deep["iterations"], deep["jitter"]) == (6, 20, 5)
    assert settings_of("--preset", "deep", "--layer", "inception_3a")["layers"] == ["inception_3a"]


def test_show_settings_is_a_valid_preset(tmp_path):
    result = cli("--preset", "preview", "--iterations", "7", "--show-settings")
    (tmp_path / "mine.yaml").write_text(result.output)
    again = settings_of("--preset", tmp_path / "mine.yaml")
    assert again["iterations"] == 7 and again["max_size"] == 512
    assert "description" in yaml.safe_load(result.output)


def test_user_preset_overrides_builtin_and_the_listing_says_so(tmp_path, monkeypatch):
    folder = tmp_path / "config" / "dreamcli" / "presets"
    folder.mkdir(parents=True)
    (folder / "classic.yaml").write_text("description: my classic\noctaves: 2\n")
    (folder / "mine.yaml").write_text("description: my own\nlayers: [inception_3a]\n")
    assert settings_of("--preset", "classic")["octaves"] == 2
    listing = cli("list", "presets").output
    assert "classic  [user: " in listing and "(overrides built-in)" in listing
    assert "mine  [user: " in listing and "my own" in listing
    env = tmp_path / "env"
    env.mkdir()
    (env / "classic.yaml").write_text("octaves: 3\n")
    monkeypatch.setenv(presets.ENV_VAR, str(env))
    assert settings_of("--preset", "classic")["octaves"] == 3
    assert "overrides user, built-in" in cli("list", "presets").output


def test_listing_shows_name_origin_description_and_layers():
    out = cli("list", "presets").output
    for name in SHIPPED:
        assert f"{name}  [built-in]  layers: " in out
    assert "inception_4c" in out and "conv2/3x3_reduce" in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("octave: 3\n", "unknown key 'octave' (did you mean 'octaves'?)"),
        ("octaves: four\n", "octaves: expected a whole number (1-20)"),
        ("octaves: 0\n", "octaves: 0 is out of range; use 1-20"),
        ("octave_scale: 0.9\n", "octave_scale: 0.9 is out of range"),
        ("step_size: -1\n", "step_size: -1 is out of range"),
        ("layers: [inception_9z]\n", "layers: unknown layer 'inception_9z'"),
        ("layers: 5\n", "layers: expected a list of strings"),
        ("description: 3\n", "description: expected text"),
        ("- a\n- b\n", "a preset is a mapping"),
        ("octaves: [1\n", "not valid YAML"),
        ("!!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    ],
)
def test_bad_preset_is_one_line_naming_file_and_key(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    src = save_photo(tmp_path / "p.png", 32, 32)
    result = cli(src, "--preset", path)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith(f"Error: {path}: ")
    assert expected in result.output
    assert "pwned" not in result.output
    assert not (tmp_path / "p_dream.png").exists()


def test_unknown_preset_name_suggests_and_names_cannot_escape(tmp_path):
    result = cli("--preset", "clasic", "--show-settings")
    assert result.exit_code == 2 and "did you mean classic" in result.output
    result = cli("--preset", "..", "--show-settings")
    assert result.exit_code == 2 and "not valid" in result.output
    result = cli("--preset", "../../etc/passwd", "--show-settings")
    assert result.exit_code == 2
    assert "root:" not in result.output


def test_preset_from_a_picture_reproduces_it(tiny, tmp_path, weights_file):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    assert tiny(photo, "-o", tmp_path / "first.png", "--seed", "7", "--jitter", "5").exit_code == 0
    plain = cli_invoker(weights_file)  # no flags: every setting from the picture
    assert plain(photo, "--preset", tmp_path / "first.png", "-o", tmp_path / "again.png").exit_code == 0
    first = Image.open(tmp_path / "first.png")
    assert first.tobytes() == Image.open(tmp_path / "again.png").tobytes()
    assert tiny(photo, "--preset", photo).exit_code == 2  # a photo holds no settings: said so


def test_show_settings_says_what_the_flags_changed_in_the_preset(weights_file):
    import yaml

    shown = yaml.safe_load(
        cli_invoker(weights_file)("--preset", "deep", "--octaves", "5", "--show-settings").output
    )
    assert shown["octaves"] == 5 and "(Changed from the deep preset: octaves.)" in shown["description"]


def test_a_retired_key_gets_a_note_in_a_preset_file_and_none_from_an_old_picture(weights_file, tmp_path):
    preset = tmp_path / "old.yaml"
    preset.write_text("octaves: 2\nparam: fft\n")  # a --show-settings saved by an older version
    cli = cli_invoker(weights_file)
    result = cli("--preset", preset, "--show-settings")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == [
        f"Note: {preset}: key 'param' is ignored, as it never changed a dream (the real one is "
        "dream features --param); delete it from the file to silence this"
    ]
    assert yaml.safe_load(result.stdout)["octaves"] == 2
    assert cli("--preset", preset, "--show-settings", "-q").stderr == ""
    recorded = json.loads(dream_metadata())
    recorded["settings"]["param"] = "fft"  # old pictures recorded it too
    picture = png_with_text(tmp_path / "old.png", json.dumps(recorded))
    result = cli("--preset", picture, "--show-settings")
    assert result.exit_code == 0 and result.stderr == "", result.output


def test_a_picture_with_broken_settings_is_no_preset(weights_file, tmp_path):
    photo = save_photo(tmp_path / "p.png", 40, 32)
    odd = Image.new("RGB", (8, 8))
    info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
    info.add_text("dreamcli", json.dumps({"settings": 5}))
    odd.save(tmp_path / "odd.png", pnginfo=info)
    result = cli_invoker(weights_file)(photo, "--preset", tmp_path / "odd.png")
    assert result.exit_code == 2 and "holds no dreamcli settings" in result.output


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


def test_huge_numbers_in_a_preset_are_one_line(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(f"octaves: {'9' * 4000}\n")
    with pytest.raises(SettingsError, match="octaves"):
        presets.load(path)
    path.write_text(f"octaves: {'9' * 5000}\n")  # over Python's int-from-text limit
    with pytest.raises(SettingsError, match="big.yaml"):
        presets.load(path)


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


def test_the_preview_preset_claims_the_work_it_does():
    from dreamcli import presets as preset_files
    from dreamcli.config import Settings
    from dreamcli.engine.steps import octave_sizes

    def work(settings: Settings, height: int = 768, width: int = 1024) -> float:
        """Pixels of every octave times the steps: what the loop's time follows."""
        if settings.max_size and max(height, width) > settings.max_size:
            scale = settings.max_size / max(height, width)
            height, width = round(height * scale), round(width * scale)
        sizes = octave_sizes(height, width, settings.octaves, settings.octave_scale)
        return sum(h * w for h, w in sizes) * settings.iterations

    preview = preset_files.find("preview", preset_files.search_path([]))
    assert "a ninth of the default's work on a 1024x768 photo" in " ".join(preview.description.split())
    assert 8.5 <= work(Settings()) / work(preview.apply(Settings())) <= 9.5
