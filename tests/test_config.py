import pytest

from dreamcli import models
from dreamcli.config import FIELDS, LayerSpec, Settings
from dreamcli.errors import SettingsError


def test_layer_spec_parses_name_weight_and_channels():
    assert LayerSpec.parse("inception_4c") == LayerSpec("inception_4c", 1.0, None)
    assert LayerSpec.parse("inception_3b:0.5") == LayerSpec("inception_3b", 0.5, None)
    spec = LayerSpec.parse("inception_4c[0-3,7]:2")
    assert spec == LayerSpec("inception_4c", 2.0, (0, 1, 2, 3, 7))
    assert str(spec) == "inception_4c[0,1,2,3,7]:2"
    assert LayerSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["", "a:b", "x[3-1]", "x[a]", "x:0", "x[1]:nan", "x[]"])
def test_layer_spec_rejects_bad_syntax(text):
    with pytest.raises(SettingsError):
        LayerSpec.parse(text)


@pytest.mark.parametrize("text", ["inception_4c[strong:4,0-3]", "x[0-3,weak:2]:2", "x[strong:4,avg:2]"])
def test_a_pick_mixed_with_channels_says_a_pick_stands_alone(text):
    with pytest.raises(SettingsError) as refused:
        LayerSpec.parse(text)
    said = str(refused.value)
    assert "a pick cannot be mixed with other channels" in said and text in said
    assert "[strong:N], [weak:N] or [avg:N] alone in the brackets, or a channel list" in said


def test_settings_defaults_are_the_notebook_values():
    s = Settings()
    assert (s.octaves, s.octave_scale, s.iterations, s.step_size, s.jitter) == (4, 1.4, 10, 1.5, 32)
    assert s.layers == ()  # the network's default layer: the network decides it
    assert [str(x) for x in models.get(s.model).settings(s).layers] == ["inception_4c"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("octaves", 0),
        ("octave_scale", 1.0),
        ("iterations", -1),
        ("step_size", 0.0),
        ("jitter", -2),
        ("octaves", 2.5),
        ("octaves", True),
        ("step_size", "big"),
        ("max_size", 4),
    ],
)
def test_out_of_range_or_wrong_type_names_the_key(key, value):
    with pytest.raises(SettingsError, match=key):
        Settings.from_mapping({key: value})


def test_unknown_key_is_refused_with_a_suggestion():
    with pytest.raises(SettingsError, match=r"unknown key 'octave'.*did you mean 'octaves'"):
        Settings.from_mapping({"octave": 3})


def test_from_mapping_overrides_only_given_keys():
    base = Settings.from_mapping({"octaves": 6, "layers": ["inception_3b"]})
    s = Settings.from_mapping({"iterations": 3}, base=base)
    assert (s.octaves, s.iterations, str(s.layers[0])) == (6, 3, "inception_3b")
    assert Settings.from_mapping(s.to_dict()) == s


def test_every_field_states_its_range():
    for field in FIELDS.values():
        assert field.allowed()
