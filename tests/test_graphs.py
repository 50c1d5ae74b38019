"""The CUDA-graph step path, run on the CPU.

Recording needs CUDA, so these tests replace it with a stand-in whose "replay"
runs the recorded step eagerly.  Everything else is the real code: the static
buffers, the device-side jitter, warm-up, the cache, and the fallbacks.
"""

import contextlib
import functools
import gc
import weakref

import pytest
import torch
from torch import nn

from dreamcli.config import LayerSpec, Settings
from dreamcli.engine import cuda_graphs as graphs
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.objectives import Activations, ChannelPerImage, Guided
from dreamcli.engine.octaves import dream
from dreamcli.engine.step_policy import _MEASURED, OUT_OF_MEMORY
from dreamcli.engine.steps import gradient, step
from dreamcli.engine.transforms import RandomAffine
from dreamcli.events import Note
from dreamcli.run_options import RunOptions

from conftest import photo_array


def photo_tensor(width=96, height=64, seed=0):
    return torch.from_numpy(photo_array(width, height, seed)).permute(2, 0, 1).float() / 255


def small_net(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
    )
    return model.eval().requires_grad_(False)


class Recorder:
    """Stands in for ``graphs.record``: counts recordings and replays; a replay runs the body."""

    def __init__(self, fail: str | None = None):
        self.recorded = self.replayed = 0
        self.fail = fail

    def __call__(self, body, pool):
        if self.fail:
            raise RuntimeError(self.fail)
        self.recorded += 1
        # A CUDA graph replays kernels, not Python: the step lets go of its model and
        # objective once recorded, so the stand-in keeps them for its eager replays.
        model_and_goal = body.capture, body.goal

        def replay():
            self.replayed += 1
            capture, body.goal = model_and_goal
            body.capture = capture
            # A later dream replays after the recording dream removed its hooks.
            hooks = capture if not capture._handles else contextlib.nullcontext()
            try:
                with hooks:
                    body()
            finally:
                body.capture = body.goal = None

        return replay


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(graphs, "supported", lambda device: True)
    monkeypatch.setattr(graphs, "record", rec)
    return rec


SETTINGS = Settings(layers=[LayerSpec("4")], octaves=3, octave_scale=1.4, iterations=5, jitter=8, seed=3)


@pytest.mark.parametrize("shift", [(0, 0), (3, -2), (-5, 7), (17, -40), (-13, 13)])
def test_roll_by_a_tensor_matches_torch_roll(shift):
    image = torch.rand(2, 3, 9, 14)
    expected = torch.roll(image, shifts=shift, dims=(-2, -1))
    assert torch.equal(graphs.roll(image, torch.tensor(shift)), expected)
    assert torch.equal(graphs.roll(expected, -torch.tensor(shift)), image)


def test_only_fixed_gpu_only_objectives_are_recorded():
    plain = [LayerSpec("inception4c"), LayerSpec("inception4d", 0.5)]
    assert Activations(plain).graphable
    assert (Activations(plain[:1]) + 0.5 * Activations(plain[1:])).graphable
    assert not Activations([LayerSpec("inception4c", channels=(1, 2))]).graphable
    assert not Guided(plain, {"inception4c": torch.zeros(4, 4)}).graphable
    assert not Activations(plain, transform=RandomAffine()).graphable
    assert not (Activations(plain) + Activations(plain, transform=RandomAffine())).graphable
    assert not ChannelPerImage("inception4c", [1, 2]).graphable


@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16])
def test_static_step_is_the_eager_step(precision):
    model, image = small_net(), torch.rand(2, 3, 20, 24)
    goal = Activations([LayerSpec("4")])
    with LayerCapture(model, ["4"]) as capture:
        expected, loss = step(
            capture, image, goal, 1.5, (3, -5), functools.partial(gradient, dtype=precision)
        )
        static = graphs.StaticStep(capture, goal, 1.5, image.shape, precision)
        static.image.copy_(image)
        static.shift.copy_(torch.tensor([3, -5]))
        static()
    torch.testing.assert_close(static.image, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(static.loss, loss)
    assert not torch.equal(static.image, image)


def test_graphed_dream_is_the_eager_dream_and_replays_each_octave(recorder):
    model, image = small_net(), photo_tensor()
    eager = dream(model, image, settings=SETTINGS, options=RunOptions(graphs=False))
    assert recorder.recorded == 0
    events = []
    graphed = dream(model, image, settings=SETTINGS, report=events.append)
    torch.testing.assert_close(graphed, eager, atol=1e-6, rtol=0)
    # Per octave: the first step runs for real and is recorded, the other four replay.
    assert (recorder.recorded, recorder.replayed) == (3, 3 * 4)
    losses = [e.loss for e in events if getattr(e, "iteration", 0)]
    assert len(losses) == 15 and all(loss.shape == (1,) for loss in losses)
    assert not any(isinstance(e, Note) for e in events)


def test_a_second_dream_of_the_same_size_only_replays(recorder):
    model = small_net()
    first = dream(model, photo_tensor(seed=1), settings=SETTINGS)
    kept = first.clone()
    second = dream(model, photo_tensor(seed=2), settings=SETTINGS)
    assert recorder.recorded == 3 and recorder.replayed == 3 * 4 + 3 * 5
    assert torch.equal(first, kept), "the first result must not share memory with the buffers"
    eager = dream(model, photo_tensor(seed=2), settings=SETTINGS, options=RunOptions(graphs=False))
    torch.testing.assert_close(second, eager, atol=1e-6, rtol=0)


def test_batches_record_their_own_shape(recorder):
    model = small_net()
    images = torch.stack([photo_tensor(seed=s) for s in range(3)])
    out = dream(model, images, settings=SETTINGS)
    torch.testing.assert_close(
        out, dream(model, images, settings=SETTINGS, options=RunOptions(graphs=False)), atol=1e-6, rtol=0
    )
    dream(model, images[0], settings=SETTINGS)
    assert recorder.recorded == 6


def test_a_failed_recording_falls_back_to_eager_steps_with_a_note(monkeypatch):
    monkeypatch.setattr(graphs, "supported", lambda device: True)
    monkeypatch.setattr(graphs, "record", Recorder(fail="operation not permitted when stream is capturing"))
    model, image = small_net(), photo_tensor()
    events = []
    out = dream(model, image, settings=SETTINGS, report=events.append)
    torch.testing.assert_close(
        out, dream(model, image, settings=SETTINGS, options=RunOptions(graphs=False)), atol=1e-6, rtol=0
    )
    notes = {e.message for e in events if isinstance(e, Note)}
    assert notes == {"CUDA graphs are off for this octave: operation not permitted when stream is capturing"}


def test_out_of_memory_while_warming_up_drops_graphs_and_goes_on(monkeypatch, recorder):
    real_warm_up, calls = graphs.warm_up, []

    def warm_up(body, device):
        calls.append(1)
        if len(calls) == 2:
            raise OUT_OF_MEMORY("CUDA out of memory (simulated)")
        real_warm_up(body, device)

    monkeypatch.setattr(graphs, "warm_up", warm_up)
    model, image = small_net(), photo_tensor()
    events = []
    out = dream(model, image, settings=SETTINGS, report=events.append)
    torch.testing.assert_close(
        out, dream(model, image, settings=SETTINGS, options=RunOptions(graphs=False)), atol=1e-6, rtol=0
    )
    assert any(isinstance(e, Note) and "recording a CUDA graph" in e.message for e in events)


def test_tiled_dreams_are_not_recorded(recorder):
    model = small_net()
    dream(model, photo_tensor(), settings=SETTINGS, options=RunOptions(tile_size=32))
    assert recorder.recorded == 0


def test_views_that_change_every_step_are_not_recorded(recorder):
    model = small_net()
    dream(model, photo_tensor(), settings=SETTINGS, goal=Activations(SETTINGS.layers, RandomAffine(seed=1)))
    dream(
        model,
        photo_tensor(),
        settings=Settings(layers=[LayerSpec("4", channels=(0, 3))], iterations=2, seed=0),
    )
    assert recorder.recorded == 0


def test_cache_keeps_the_latest_recordings():
    cache = graphs.GraphCache(limit=2)
    made = []

    def make(name):
        return lambda pool: made.append(name) or name

    for key in ["a", "b", "a", "c", "b"]:
        cache.get((key,), make(key))
    assert made == ["a", "b", "c", "b"]  # "b" was the least recently used when "c" came
    assert list(cache.entries) == [("c",), ("b",)]


def test_recordings_do_not_keep_the_model_alive(monkeypatch):
    monkeypatch.setattr(graphs, "supported", lambda device: True)
    monkeypatch.setattr(graphs, "record", lambda body, pool: lambda: None)  # holds nothing, as CUDA's
    model = small_net()
    dream(model, photo_tensor(), settings=SETTINGS)
    assert model in _MEASURED
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
