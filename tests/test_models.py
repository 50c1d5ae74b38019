import pickle
import urllib.error

import pytest
import torch
from faults import TINY, _save_state, errors

from dreamcli import models
from dreamcli.engine.devices import select_device
from dreamcli.errors import SettingsError, WeightsError
from dreamcli.models.loading import load

from conftest import cli_invoker, save_photo


def load_googlenet(weights, progress=True):
    return load(models.get("googlenet"), weights=weights, progress=progress)


def test_weights_file_loads_into_the_trunk(weights_file, net):
    loaded = load_googlenet(weights_file)
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded.module(x), net(x), atol=1e-4, rtol=1e-4)  # BatchNorm folded
    assert not any(p.requires_grad for p in loaded.module.parameters())
    assert not loaded.module.training
    assert loaded.label == f"googlenet ({weights_file.name})"


def test_loading_is_reported_before_the_seconds_it_takes(weights_file):
    from dreamcli.events import Loading

    events = []
    load(models.get("googlenet"), weights=weights_file, report=events.append)
    assert events == [Loading("GoogLeNet", f"weights file {weights_file.name}")]


def test_unknown_model_gets_a_suggestion():
    with pytest.raises(SettingsError, match="unknown model 'googlenett': did you mean googlenet"):
        models.get("googlenett")


def test_full_torchvision_state_dict_with_aux_and_fc_loads(tmp_path):
    from torchvision.models import googlenet

    full = googlenet(weights=None, aux_logits=True, init_weights=False)
    torch.save(full.state_dict(), tmp_path / "full.pth")
    load_googlenet(tmp_path / "full.pth")


def test_wrong_state_dict_names_the_keys(tmp_path, net):
    from dreamcli.models.weights import WeightsNote

    state = dict(net.state_dict())
    del state["inception4c.branch1.conv.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.warns(WeightsNote, match=r"2 tensors not loaded \(extra.weight is not in .*inception4c"):
        loaded = load_googlenet(tmp_path / "bad.pth")
    # A key the network lacks at its top could belong anywhere: every layer is refused, by name.
    with pytest.raises(WeightsError, match=r"up to layer conv2/3x3: extra.weight is not in"):
        loaded.resolve("conv2/3x3")


def test_wrong_shape_is_named_when_a_layer_needs_it(tmp_path, net):
    from dreamcli.models.weights import WeightsNote

    state = dict(net.state_dict())
    state["inception4c.branch1.conv.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.warns(WeightsNote, match="1 tensors not loaded"):
        loaded = load_googlenet(tmp_path / "shape.pth")
    assert loaded.resolve("inception_4b") == "inception4b"  # before the mis-shaped block: as trained
    with pytest.raises(WeightsError, match=r"inception4c.branch1.conv.weight has shape \(2, 2\), expected"):
        loaded.resolve("inception_4c")
    with pytest.raises(WeightsError, match=r"inception4c.branch1.conv.weight has shape"):
        loaded.module(torch.rand(1, 3, 64, 64))  # a path that skips resolve meets the guard


def test_a_file_of_which_nothing_fits_is_refused_at_load(tmp_path):
    torch.save({"a.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match=r"does not fit torchvision's GoogLeNet: missing \d+ keys"):
        load_googlenet(tmp_path / "other.pth")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"conv1.conv.weight": Evil()}, f)
    with pytest.raises(WeightsError, match="cannot be loaded safely"):
        load_googlenet(tmp_path / "evil.pth")
    assert "pwned" not in capsys.readouterr().out


def test_truncated_and_missing_files(tmp_path, weights_file):
    (tmp_path / "cut.pth").write_bytes(weights_file.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="cut.pth cannot be loaded safely"):
        load_googlenet(tmp_path / "cut.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        load_googlenet(tmp_path / "none.pth")


def test_offline_without_cache_names_url_cache_and_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError) as info:
        load_googlenet(None, progress=False)
    message = str(info.value)
    assert "googlenet-1378be20.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "--weights" in message


def test_device_selection():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(SettingsError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SettingsError, match="CUDA is not available"):
            select_device("cuda:0")


def test_folding_batchnorm_keeps_the_function(net):
    import copy

    from dreamcli.models.prepare import fold_batchnorm, prepare_for_dreaming

    # Give the BNs non-trivial statistics so that folding has something to fold.
    original = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(0)
    for module in original.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=gen)
            module.running_var.uniform_(0.5, 2.0, generator=gen)
            module.weight.data.uniform_(0.5, 1.5, generator=gen)
    folded = fold_batchnorm(copy.deepcopy(original))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 96, 80)
    torch.testing.assert_close(folded(x), original(x), atol=1e-4, rtol=1e-4)
    prepared = prepare_for_dreaming(copy.deepcopy(original), torch.device("cpu"))
    assert prepared.conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(prepared(x), original(x), atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in prepared.parameters())


@pytest.mark.parametrize("reproducible", [True, False])
def test_cudnn_kernels_follow_the_seed(monkeypatch, reproducible):
    from dreamcli.engine.devices import choose_kernels

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", not reproducible)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    choose_kernels(torch.device("cpu"), reproducible)
    assert torch.backends.cudnn.deterministic is not reproducible  # the CPU leaves cuDNN alone
    choose_kernels(torch.device("cuda"), reproducible)
    assert torch.backends.cudnn.deterministic is reproducible
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize("amx, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_the_cpu_is_bf16_only_with_amx(monkeypatch, amx, expected):
    from dreamcli.engine.devices import choose_precision

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert choose_precision("auto", torch.device("cpu")) == expected
    assert choose_precision("fp16", torch.device("cpu")) == "fp16"
    assert choose_precision("auto", torch.device("mps")) == "fp32"


def test_free_memory_honours_a_per_process_cap(monkeypatch):
    from dreamcli.engine import devices

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (100 * gib, 140 * gib))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 1 * gib)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda index: 8 / 140, raising=False)
    assert devices.free_memory(torch.device("cuda")) == 7 * gib  # the 8 GiB cap, less what is in use
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda index: 1.0)
    assert devices.free_memory(torch.device("cuda")) == 100 * gib  # no cap: what the card has free


def test_run_options_are_built_once_for_the_device(monkeypatch):
    from dreamcli.engine import devices

    monkeypatch.setattr(devices, "free_memory", lambda device: 1000)
    from dreamcli.run.session import Runtime

    options = devices.run_options("cpu", "auto", tile_size=64)
    assert Runtime("cpu").options()[0] == "cpu" and options.precision in ("fp32", "bf16")
    assert options.tile_size == 64 and options.memory == pytest.approx(700)  # MEMORY_SHARE of what is free
    with pytest.raises(SettingsError, match="precision 'fp64' is unknown"):
        devices.run_options("cpu", "fp64")


def test_a_damaged_cached_download_says_how_to_fetch_it_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "googlenet-1378be20.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a state dict at all")
    with pytest.raises(
        WeightsError, match=r"cached weights .*googlenet-1378be20.pth cannot be loaded.*delete"
    ):
        load_googlenet(None, progress=False)


def test_no_free_memory_is_a_budget_of_zero_not_a_usage_error(monkeypatch):
    from dreamcli.engine import devices

    monkeypatch.setattr(devices, "free_memory", lambda device: 0)
    assert devices.run_options("cpu").memory == 0  # the engine then refuses with --max-size advice


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


def test_a_text_file_as_weights_says_what_it_is(tmp_path, photo):
    (tmp_path / "notes.pth").write_text("just some text, no tensors\n")
    result = cli_invoker(tmp_path / "notes.pth")(photo)
    (line,) = errors(result)
    assert "notes.pth cannot be loaded safely (" in line and ": " in line.split("safely (", 1)[1]


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


# ---------------------------------------------------------------- weights files that are not state dicts


def _one_error_line(result, *parts):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert len(errors[0]) < 400
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def _dream(tmp_path, weights, *args):
    from click.testing import CliRunner

    from dreamcli.cli import main

    photo = tmp_path / "p.png"
    if not photo.exists():
        from tests.conftest import save_photo

        save_photo(photo, 64, 48)
    argv = [str(photo), "-o", str(tmp_path / "out.png"), "--overwrite", "--weights", str(weights)]
    argv += ["--octaves", "1", "--iterations", "1", "--seed", "0", *args]
    return CliRunner().invoke(main, argv)


@pytest.mark.parametrize(
    "held, says",
    [
        (None, "holds nothing (None), not a state dict"),
        ([torch.zeros(2)], "holds a list, not a state dict"),
        ({"conv1.conv.weight": "text"}, "conv1.conv.weight' holds a str, not a tensor"),
        ({"conv1.conv.weight": torch.zeros(64, 3, 7, 7).to_sparse()}, "is a sparse or quantized tensor"),
        ({1: torch.zeros(2)}, "the key 1 is not a name"),
    ],
)
def test_a_file_that_is_not_a_mapping_of_dense_tensors_is_one_line(tmp_path, held, says):
    torch.save(held, tmp_path / "odd.pth")
    _one_error_line(_dream(tmp_path, tmp_path / "odd.pth"), "odd.pth", says)
    assert not (tmp_path / "out.png").exists()


def test_a_whole_pickled_model_is_one_line_naming_its_class(tmp_path):
    from torchvision.models import resnet18

    torch.save(resnet18(), tmp_path / "whole.pth")
    line = _one_error_line(
        _dream(tmp_path, tmp_path / "whole.pth", "--model", "torchvision:resnet18", "--layer", "layer3"),
        "whole.pth cannot be loaded safely: it holds a pickled torchvision.models.resnet.ResNet",
        "torch.save(model.state_dict(), FILE)",
    )
    assert "\x1b" not in line  # torch's message carries terminal escapes


@pytest.fixture(scope="module")
def resnet18_ten_classes(tmp_path_factory):
    """A fine-tuned ResNet18's file: torchvision's keys, a 10-class head."""
    from torchvision.models import resnet18

    path = tmp_path_factory.mktemp("weights") / "r18_10.pth"
    torch.save(resnet18(num_classes=10).state_dict(), path)
    return path


def test_a_fine_tuned_head_dreams_the_layers_before_it_with_a_note(tmp_path, resnet18_ten_classes):
    model = ["--model", "torchvision:resnet18"]
    result = _dream(tmp_path, resnet18_ten_classes, *model, "--layer", "layer3")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("Note:")]
    assert len(notes) == 1 and "r18_10.pth: 2 tensors not loaded (fc.weight has shape (10, 512)" in notes[0]
    assert notes[0].endswith("a dream that needs them is refused")  # whole, not cut mid-word
    assert (tmp_path / "out.png").exists()
    # The class objective needs the head: one line naming the key, nothing written.
    (tmp_path / "out.png").unlink()
    _one_error_line(
        _dream(tmp_path, resnet18_ten_classes, *model, "--class", "3"),
        "r18_10.pth does not fit torchvision's resnet18 up to layer fc: fc.weight has shape (10, 512), "
        "expected (1000, 512) (and 1 more)",
    )
    assert not (tmp_path / "out.png").exists()


def test_patches_and_atlas_labels_refuse_a_head_the_weights_left_out(tmp_path, resnet18_ten_classes):
    from dreamcli.jobs.atlas import make_atlas
    from dreamcli.jobs.patches import Classifier
    from dreamcli.jobs.requests import AtlasOptions

    with pytest.warns(UserWarning, match="2 tensors not loaded"):
        loaded = load(models.get("torchvision:resnet18"), weights=resnet18_ten_classes)
    with pytest.raises(WeightsError, match=r"up to layer fc: fc.weight has shape \(10, 512\)"):
        Classifier.of(loaded)
    with pytest.raises(WeightsError, match=r"up to layer fc: fc.weight has shape"):
        make_atlas(loaded, "layer3", [tmp_path / "none.png"], AtlasOptions(labels=True))
