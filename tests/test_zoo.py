"""More networks (issue 15): every network loads its users' files as they are and dreams.

Random weights check the mechanics; the Caffe and TF GoogLeNets are compared
with references written here from their definitions (the prototxt, the TF
graph), independent of dreamcli's modules.
"""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from dreamcli import models
from dreamcli.cli import main
from dreamcli.engine.capture import LayerCapture, smallest_input
from dreamcli.errors import SettingsError, WeightsError
from dreamcli.io.images import read_metadata
from dreamcli.models.loading import load

from conftest import KEYS, save_photo, state_in_real_layout

NAMES = list(models.NETWORKS)
PORTS = ["bvlc_googlenet", "googlenet_places365", "googlenet_places205", "inception5h"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("name", PORTS)
def test_the_ports_have_exactly_the_users_key_layout(name):
    layout = dict(line.split("\t") for line in (KEYS / f"{name}.keys.tsv").read_text().splitlines())
    built = models.get(name).build().state_dict()
    assert {key: str(tuple(value.shape)) for key, value in built.items()} == layout


@pytest.mark.parametrize("name", NAMES)
def test_every_network_dreams_a_tiny_image_from_its_users_file(name, tmp_path, model_weights):
    network = models.get(name)
    side = max(64, network.min_input + 8)
    photo = save_photo(tmp_path / "p.png", side + 16, side)
    out = tmp_path / "dream.png"
    result = run(
        photo,
        "--model",
        name,
        "--weights",
        model_weights(name),
        "-o",
        out,
        "--octaves",
        "2",
        "--iterations",
        "2",
        "--seed",
        "1",
        "-q",
    )
    assert result.exit_code == 0, result.output
    before, after = Image.open(photo).convert("RGB"), Image.open(out).convert("RGB")
    assert after.size == before.size and before.tobytes() != after.tobytes()
    meta = read_metadata(out)
    assert meta["settings"]["model"] == name and meta["settings"]["layers"] == [network.default_layer]
    assert meta["model"].startswith(f"{name} (")  # e.g. "bvlc_googlenet (bvlc_googlenet.pth)"


@pytest.mark.parametrize("name", NAMES)
def test_each_network_declares_its_smallest_input_and_its_layer_table_is_true(name):
    network = models.get(name)
    net = network.build()
    names = {n for n, _ in net.named_modules()} - {""}
    assert set(network.layers.modules) <= names and set(network.layers.channels) <= names
    with LayerCapture(net, [network.layers.resolve(network.logits)]) as capture:
        assert smallest_input(capture, torch.device("cpu")) == network.min_input
    # Channels, on the meta device: shapes only.
    size = 299 if name == "inception_v3" else 224
    with torch.device("meta"):
        meta = network.build()
        with LayerCapture(meta, list(network.layers.channels)) as capture:
            outputs = capture(torch.zeros(1, 3, size, size))
    assert {k: v.shape[1] for k, v in outputs.items()} == dict(network.layers.channels)
    network.layers.resolve(network.default_layer)


def test_googlenet_is_torchvisions_without_importing_it(tmp_path, weights_file):
    from torchvision.models import googlenet

    ours = models.get("googlenet").build(state_in_real_layout("googlenet", seed=4))
    theirs = googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False)
    theirs.load_state_dict(ours.state_dict())
    theirs.eval()
    x = torch.rand(2, 3, 120, 96)
    normalised = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(ours(x), theirs(normalised), atol=1e-4, rtol=1e-4)
    # And a default dream never imports torchvision (2.4 s of start-up; benchmarks/README.md).
    photo = save_photo(tmp_path / "p.png", 48, 40)
    code = (
        "import sys\nfrom dreamcli.cli import main\n"
        f"try:\n    main({[str(photo), '--weights', str(weights_file), '--iterations', '1', '-q']!r})\n"
        "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "print('torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr


# ---------------------------------------------------------------- references from the definitions

CAFFE_INCEPTIONS = [  # deploy.prototxt: name, 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj
    ("inception_3a", 64, 96, 128, 16, 32, 32),
    ("inception_3b", 128, 128, 192, 32, 96, 64),
    ("inception_4a", 192, 96, 208, 16, 48, 64),
    ("inception_4b", 160, 112, 224, 24, 64, 64),
    ("inception_4c", 128, 128, 256, 24, 64, 64),
    ("inception_4d", 112, 144, 288, 32, 64, 64),
    ("inception_4e", 256, 160, 320, 32, 128, 128),
    ("inception_5a", 256, 160, 320, 32, 128, 128),
    ("inception_5b", 384, 192, 384, 48, 128, 128),
]


def caffe_reference(state, rgb, mean):
    """bvlc_googlenet's deploy.prototxt, layer by layer, in plain functional PyTorch.

    Returns every blob by its Caffe name.  Caffe: BGR 0-255 less the mean, ReLU in
    place, LRN alpha/size, max pools rounding up (ceil).
    """
    blobs = {}

    def conv(name, x, pad=0, stride=1):
        key = name.replace("/", "_")
        y = F.relu(F.conv2d(x, state[f"{key}.weight"], state[f"{key}.bias"], stride, pad))
        blobs[name] = y
        return y

    x = rgb.flip(1) * 255 - torch.tensor(mean).view(1, 3, 1, 1)
    x = conv("conv1/7x7_s2", x, pad=3, stride=2)
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = F.local_response_norm(x, 5, 1e-4, 0.75, 1.0)
    x = conv("conv2/3x3_reduce", x)
    x = conv("conv2/3x3", x, pad=1)
    x = F.local_response_norm(x, 5, 1e-4, 0.75, 1.0)
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    for name, *_ in CAFFE_INCEPTIONS:
        a = conv(f"{name}/1x1", x)
        b = conv(f"{name}/3x3", conv(f"{name}/3x3_reduce", x), pad=1)
        c = conv(f"{name}/5x5", conv(f"{name}/5x5_reduce", x), pad=2)
        d = conv(f"{name}/pool_proj", F.max_pool2d(x, 3, 1, 1, ceil_mode=True))
        x = blobs[f"{name}/output"] = torch.cat([a, b, c, d], 1)
        if name in ("inception_3b", "inception_4e"):
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    aux = F.avg_pool2d(blobs["inception_4d/output"], 5, 3, ceil_mode=True)  # 4x4 at 224 px
    aux = conv("loss2/conv", aux).flatten(1)
    aux = F.relu(F.linear(aux, state["loss2_fc_1.weight"], state["loss2_fc_1.bias"]))
    blobs["loss2/classifier"] = F.linear(
        aux, state["loss2_classifier_1.weight"], state["loss2_classifier_1.bias"]
    )
    return blobs


@pytest.mark.parametrize("name", ["bvlc_googlenet", "googlenet_places365"])
def test_caffe_googlenet_matches_its_prototxt(name):
    from dreamcli.models import caffe_googlenet as entries

    state = state_in_real_layout(name, seed=2)
    network = models.get(name)
    net = network.build(state)
    rgb = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    mean = entries.BVLC_MEAN if name == "bvlc_googlenet" else entries.PLACES365_MEAN
    want = caffe_reference(state, rgb, mean)
    blobs = [
        "conv2/3x3",
        "inception_3a/5x5",
        "inception_4c/output",
        "inception_5b/pool_proj",
        "loss2/classifier",
    ]
    with LayerCapture(net, [network.layers.resolve(b) for b in blobs]) as capture:
        got = capture(rgb)
    for blob in blobs:
        expected = want[blob]
        torch.testing.assert_close(
            got[network.layers.resolve(blob)], expected, atol=1e-3 * float(expected.abs().max()), rtol=1e-4
        )


def tf_same(x, kernel, stride, value=0.0):
    """TensorFlow's SAME padding, from its documentation: out = ceil(in / stride), odd pixel after."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


def test_inception5h_matches_the_tf_graph_on_an_odd_size():
    state = state_in_real_layout("inception5h", seed=3)
    network = models.get("inception5h")
    net = network.build(state)
    rgb = torch.rand(1, 3, 131, 117, generator=torch.Generator().manual_seed(1))  # odd: SAME's asymmetry

    def conv(name, x, kernel):
        y = F.conv2d(x, state[f"{name}_pre_relu_conv.weight"], state[f"{name}_pre_relu_conv.bias"])
        return F.relu(y) if kernel == 1 else y

    def lrn(x):  # tf.nn.lrn(depth_radius=4, bias=1, alpha=1e-4, beta=0.5): alpha on the plain sum
        squares = F.pad(x.pow(2).unsqueeze(1), (0, 0, 0, 0, 4, 4)).squeeze(1)
        total = sum(squares[:, i : i + x.shape[1]] for i in range(9))
        return x / (1 + 1e-4 * total) ** 0.5

    x = rgb * 255 - 117
    x = F.relu(
        F.conv2d(
            tf_same(x, 7, 2), state["conv2d0_pre_relu_conv.weight"], state["conv2d0_pre_relu_conv.bias"], 2
        )
    )
    x = lrn(F.max_pool2d(tf_same(x, 3, 2, float("-inf")), 3, 2))
    x = F.relu(conv("conv2d1", x, 1))
    x = F.relu(
        F.conv2d(x, state["conv2d2_pre_relu_conv.weight"], state["conv2d2_pre_relu_conv.bias"], padding=1)
    )
    x = F.max_pool2d(tf_same(lrn(x), 3, 2, float("-inf")), 3, 2)
    for block in ("mixed3a", "mixed3b"):
        a = F.relu(conv(f"{block}_1x1", x, 1))
        b = F.relu(
            F.conv2d(
                F.relu(conv(f"{block}_3x3_bottleneck", x, 1)),
                state[f"{block}_3x3_pre_relu_conv.weight"],
                state[f"{block}_3x3_pre_relu_conv.bias"],
                padding=1,
            )
        )
        c = F.relu(
            F.conv2d(
                F.relu(conv(f"{block}_5x5_bottleneck", x, 1)),
                state[f"{block}_5x5_pre_relu_conv.weight"],
                state[f"{block}_5x5_pre_relu_conv.bias"],
                padding=2,
            )
        )
        d = F.relu(conv(f"{block}_pool_reduce", F.max_pool2d(x, 3, 1, 1), 1))
        x = torch.cat([a, b, c, d], 1)
    with LayerCapture(net, ["mixed3b"]) as capture:
        got = capture(rgb)["mixed3b"]
    torch.testing.assert_close(got, x, atol=1e-3 * float(x.abs().max()), rtol=1e-4)


# ---------------------------------------------------------------- the command line


def test_a_wrong_file_for_the_model_names_the_model_and_the_keys(tmp_path, model_weights):
    photo = save_photo(tmp_path / "p.png", 80, 64)
    result = run(photo, "--model", "bvlc_googlenet", "--weights", model_weights("inception5h"))
    assert result.exit_code == 1
    (line,) = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert "does not fit the BVLC GoogLeNet: missing 126 keys (conv1_7x7_s2.bias" in line
    assert "unexpected 116 keys (conv2d0_pre_relu_conv.bias" in line and "Traceback" not in result.output


def test_layers_are_named_per_model_with_suggestions(tmp_path):
    listing = run("list", "layers", "--model", "inception5h").output
    assert "mixed4d_3x3_bottleneck_pre_relu    mixed4d_3x3_bottleneck_pre_relu_conv" in listing
    result = run("--model", "bvlc_googlenet", "--layer", "inception_4c/5x5_reduc", "--show-settings")
    assert result.exit_code == 2 and "did you mean inception_4c/5x5_reduce" in result.output
    assert "(model bvlc_googlenet)" in result.output
    vgg = run("--model", "vgg16", "--layer", "features.22", "--show-settings")
    assert vgg.exit_code == 0 and "model: vgg16" in vgg.output
    assert run("--model", "googlenett").output.startswith("Error: Invalid value for --model: unknown model")


def test_list_models_says_what_each_needs_and_whether_it_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = models.cache_folder()
    assert (
        cache
        == tmp_path / "torch" / "hub" / "checkpoints"
        == __import__("pathlib").Path(torch.hub.get_dir()) / "checkpoints"
    )
    cache.mkdir(parents=True)
    (cache / "bvlc_googlenet.pth").write_bytes(b"x")
    listing = run("list", "models").output
    for name in NAMES:
        assert f"\n{name}" in f"\n{listing}"
    assert "bvlc_googlenet.pth (cached)" in listing and "inception5h.pth (not downloaded yet)" in listing
    assert "BGR 0-255 less the mean (B 103.939" in listing


def test_classes_use_each_models_own_labels(tmp_path, model_weights):
    places = models.get("googlenet_places365")
    assert places.class_index("amusement park") == places.class_index("amusement_park") == 7
    assert models.get("googlenet_places205").class_index("abbey") == 0
    with pytest.raises(SettingsError, match="no class names for inception5h; give a class index 0-1007"):
        models.get("inception5h").class_index("dumbbell")
    assert models.get("inception5h").class_index("42") == 42
    photo = save_photo(tmp_path / "p.png", 96, 80)
    result = run(
        photo,
        "--model",
        "googlenet_places365",
        "--weights",
        model_weights("googlenet_places365"),
        "--class",
        "lighthouse",
        "--octaves",
        "1",
        "--iterations",
        "2",
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert read_metadata(tmp_path / "p_class-lighthouse.png")["settings"]["layers"] == [
        "loss2/classifier[214]"
    ]


def test_a_preset_may_name_a_model_and_flags_override_it(tmp_path):
    assert "model: bvlc_googlenet" in run("--preset", "classic-caffe", "--show-settings").output
    swapped = run("--preset", "classic-caffe", "--model", "googlenet_places205", "--show-settings").output
    assert "model: googlenet_places205" in swapped
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: vgg161\n")
    result = run("--preset", bad, "--show-settings")
    assert result.exit_code == 2 and "bad.yaml: unknown model 'vgg161': did you mean vgg16" in result.output
    with pytest.raises(WeightsError):
        load(models.get("vgg16"), weights=tmp_path / "missing.pth")


def test_review_fixes_of_the_networks(net):
    from dreamcli.models.lrn import LocalResponseNorm

    # fp16: the Caffe nets' 0-255 inputs square past fp16's range; the LRN works in float32.
    x = torch.full((1, 8, 4, 4), 300.0)
    with torch.autocast("cpu", torch.float16):
        assert torch.isfinite(LocalResponseNorm(5, 1e-4 / 5, 0.75, 1.0)(x.half())).all()
    # Exact class names first: "cardigan" is the sweater, "Cardigan" the corgi.
    googlenet = models.get("googlenet")
    assert googlenet.class_index("cardigan") == 474 and googlenet.class_index("Cardigan") == 264
    # A captured conv output is not rewritten by a ReLU that runs in place after it.
    image = torch.rand(1, 3, 96, 96)
    with LayerCapture(net, ["inception4c.branch1.conv"]) as alone:
        first = alone(image)["inception4c.branch1.conv"].clone()
    with LayerCapture(net, ["inception4c.branch1.conv", "inception4d"]) as both:
        second = both(image)["inception4c.branch1.conv"]
    assert float(first.min()) < 0 and torch.equal(first, second)


def test_a_sheet_of_presets_takes_one_model(weights_file, tmp_path):
    photo = save_photo(tmp_path / "p.png", 64, 48)
    result = run("sheet", photo, "--presets", "classic,classic-caffe", "--weights", weights_file)
    assert result.exit_code == 2
    assert "preset classic-caffe dreams with bvlc_googlenet, the sheet with googlenet" in result.output
