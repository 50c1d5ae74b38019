"""Animations: zoom (GIF, WebP, MP4, frames) and dreamed video with audio, resume and flow."""

import builtins
import itertools
import os

import av
import corpus
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dreamcli.cli import main
from dreamcli.jobs import animations as animate

from conftest import cli_invoker, save_photo

FAST = ["--octaves", "1", "--iterations", "2", "--layer", "inception_3a", "--seed", "0", "-q"]


@pytest.fixture
def run(weights_file):
    return cli_invoker(weights_file, *FAST)


def video_streams(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        info = {
            "size": (video.width, video.height),
            "seconds": float(container.duration / av.time_base),
            "fps": float(video.average_rate),
            "audio": audio is not None and audio.codec_context.name,
            "audio_seconds": float(audio.duration * audio.time_base) if audio is not None else None,
        }
        info["frames"] = sum(1 for _ in container.decode(video))
    return info


def test_zoom_gif_is_smooth_and_timed(run, tmp_path):
    src = save_photo(tmp_path / "p.png", 64, 48)
    result = run("zoom", src, "--frames", "5", "--fps", "10", "--scale", "1.1")
    assert result.exit_code == 0, result.output
    gif = Image.open(tmp_path / "p_zoom.gif")
    assert gif.n_frames == 5 and gif.size == (64, 48) and gif.info["duration"] == 100
    frames = []
    for i in range(5):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB"), dtype=float))
    steps = [np.abs(a - b).mean() for a, b in itertools.pairwise(frames)]
    assert min(steps) > 0.5  # it moves
    assert max(steps) < np.abs(frames[0] - frames[-1]).mean()  # step by step, not jumping


def test_zoom_mp4_webp_and_frames_folder(run, tmp_path):
    src = save_photo(tmp_path / "p.png", 66, 50)
    assert run("zoom", src, "--frames", "6", "--fps", "12", "-o", tmp_path / "z.mp4").exit_code == 0
    info = video_streams(tmp_path / "z.mp4")
    assert info["frames"] == 6 and info["size"] == (66, 50)
    assert info["seconds"] == pytest.approx(0.5, abs=0.09)
    assert run("zoom", src, "--frames", "3", "-o", tmp_path / "z.webp").exit_code == 0
    assert Image.open(tmp_path / "z.webp").n_frames == 3
    assert run("zoom", src, "--frames", "3", "-o", tmp_path / "frames").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "frame_00001.png",
        "frame_00002.png",
        "frame_00003.png",
    ]
    result = run("zoom", src, "--frames", "3", "-o", tmp_path / "z.png")
    assert result.exit_code == 2 and "gif" in result.output


def test_zoom_step_zooms_into_the_centre():
    image = torch.zeros(3, 40, 40)
    image[:, 15:25, 15:25] = 1.0
    assert torch.allclose(animate.zoom_step(image, 1.0), image, atol=1e-5)
    bigger = animate.zoom_step(image, 2.0)
    assert bigger.mean() > 3 * image.mean()  # the centre square now fills more of the frame
    turned = animate.zoom_step(image, 1.0, rotate=45)
    assert not torch.allclose(turned, image, atol=0.05)


def test_dreamed_video_keeps_frames_size_duration_and_audio(run, tmp_path):
    clip = corpus.synthetic_video(tmp_path / "clip.mp4", frames=6, fps=12)
    before = video_streams(clip)
    result = run("video", clip, "--flow")
    assert result.exit_code == 0, result.output
    after = video_streams(tmp_path / "clip_dream.mp4")
    assert after["frames"] == 6 and after["size"] == (64, 48) and after["fps"] == pytest.approx(12)
    assert after["audio"] == "aac" and after["audio_seconds"] == pytest.approx(
        before["audio_seconds"], abs=0.03
    )
    assert after["seconds"] == pytest.approx(before["seconds"], abs=0.1)
    assert not (tmp_path / ".clip_dream.mp4.frames").exists()  # the work folder is gone once encoded


def test_interrupted_video_resumes_from_written_frames(weights_file, tmp_path, monkeypatch):
    clip = corpus.synthetic_video(tmp_path / "clip.mp4", frames=5)
    work = tmp_path / ".clip_dream.mp4.frames"
    work.mkdir()
    for i in (1, 2, 3):  # as left by an interrupted run
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(work / f"{i:06d}.png")
    calls = []
    real = animate.dream
    monkeypatch.setattr(animate, "dream", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = ["video", str(clip), "--weights", str(weights_file), *FAST]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert len(calls) == 2  # only frames 4 and 5 were dreamed
    with av.open(str(tmp_path / "clip_dream.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert abs(first.mean() - 40) < 6  # frame 1 is the one already written


def test_missing_video_extra_is_one_clear_line(run, tmp_path, monkeypatch):
    clip = corpus.synthetic_video(tmp_path / "clip.mp4", frames=2)
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    result = run("video", clip)
    assert result.exit_code == 1
    assert "pip install 'dreamcli[video]'" in result.output and "Traceback" not in result.output


def every_mode(kind: str, tmp_path):
    """Arguments that run ``kind`` (one of the modes) on tiny inputs."""
    if kind == "video":
        return ["video", corpus.synthetic_video(tmp_path / "clip.mp4", frames=2)]
    photo = save_photo(tmp_path / "p.png", 64, 48)
    return {
        "zoom": ["zoom", photo, "--frames", "2", "-o", tmp_path / "z.gif"],
        "view": ["sheet", photo, "--presets", "classic eyes"],  # --layer (in FAST) overrides theirs
        "batch": [photo],
    }[kind]


MODES = ["zoom", "video", "view", "batch"]


@pytest.mark.parametrize("kind", MODES)
def test_every_mode_honours_the_tile_size(run, tmp_path, monkeypatch, kind):
    import dreamcli.engine.tiling

    tiles = []
    real = dreamcli.engine.tiling.TiledGradient.__init__
    monkeypatch.setattr(
        dreamcli.engine.tiling.TiledGradient,
        "__init__",
        lambda self, tile, geom, *rest: tiles.append(tile) or real(self, tile, geom, *rest),
    )
    result = run(*every_mode(kind, tmp_path), "--tile-size", "32")
    assert result.exit_code == 0, result.output
    assert tiles and set(tiles) == {32}


@pytest.mark.parametrize("kind", MODES)
def test_every_mode_honours_the_memory_budget(run, tmp_path, monkeypatch, kind):
    import dreamcli.engine.devices

    monkeypatch.setattr(dreamcli.engine.devices, "free_memory", lambda device: 20_000)  # 20 kB: nothing fits
    args = every_mode(kind, tmp_path)
    before = sorted(os.listdir(tmp_path))
    result = run(*args)
    assert result.exit_code == 1
    if kind == "zoom":  # a zoom into a file holds its frames, and that is checked first
        assert (
            "2 frames of 64x48 need 0.1 MB until they are encoded, more than the 0.0 MB free" in result.output
        )
        assert "use a smaller picture or -o FOLDER/" in result.output and "--frames 0" not in result.output
    else:
        assert "does not fit in the 0.0 MB free for it, even in tiles; use --max-size" in result.output
    assert "Traceback" not in result.output
    assert sorted(os.listdir(tmp_path)) == before  # refused before any output was written


def test_a_zoom_into_a_file_checks_its_frames_fit_and_a_folder_streams_them(tmp_path, monkeypatch, run):
    monkeypatch.setattr(animate, "memory_budget", lambda device: 3 * 64 * 48 * 12 + 1)
    photo = save_photo(tmp_path / "p.png", 64, 48)
    refused = run("zoom", photo, "--frames", "5", "-o", tmp_path / "z.gif")
    assert refused.exit_code == 1, refused.output
    assert "5 frames of 64x48 need" in refused.output and "use --frames 3 or fewer" in refused.output
    assert not (tmp_path / "z.gif").exists()
    streamed = run("zoom", photo, "--frames", "5", "-o", tmp_path / "frames/")
    assert streamed.exit_code == 0, streamed.output
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        f"frame_0000{i}.png" for i in range(1, 6)
    ]


def test_a_broken_video_names_ffmpegs_reason_without_an_errno(tmp_path, run):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    result = run("video", clip, "-o", tmp_path / "out.mp4")
    assert result.exit_code == 1, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert "cannot read video" in line and "Errno" not in line and "is it a whole video file" in line
