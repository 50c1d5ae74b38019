"""Every command line of README.md, run in order in one folder, as a newcomer would type them.

Random GoogLeNet weights wait in a private torch cache (``$TORCH_HOME``), where
the real download would put them, so the lines run exactly as written; tiny
sizes and few steps are added to each ``dream`` so the whole README runs in a
minute or two.  Each line must exit 0, print no traceback, skip nothing, and
write what it names with ``-o`` (or, without one, some new file).  The lines
that need a GPU, the internet or a cluster are listed here by their text, so a
new README line is run unless someone decides otherwise.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dreamcli.cli import main

from conftest import save_photo

README = Path(__file__).resolve().parent.parent / "README.md"

NOT_RUN = {
    "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu": "the internet",
    "pip install .": "the internet (CI installs the checkout itself)",
    "pip install '.[test]' && python -m pytest": "this test suite itself",
    "pip install '.[atlas]'": "the internet",
    "pip install '.[web]'": "the internet",
    "dream serve": "a server that runs until Ctrl-C: tests/test_web.py starts and drives it",
    "dream serve --port 9000 --device cpu --max-size 768": "a server that runs until Ctrl-C",
    'eval "$(_DREAM_COMPLETE=zsh_source dream)"': "zsh (the bash line runs; Click makes all three)",
    "_DREAM_COMPLETE=fish_source dream | source": "fish (the bash line runs; Click makes all three)",
    "dream photo.jpg --max-size 1024 --device cuda:1": "a second CUDA GPU",
    'dream features --model torchvision:convnext_tiny --layer "features.5[0-7]" --each': (
        "torchvision's download (tests/test_modern.py builds ConvNeXt and ViT)"
    ),
    "dream photo.jpg --model torchvision:convnext_tiny": "torchvision's download",
    'dream features --model torchvision:vit_b_16 --layer "encoder_layer_8[0-15]" --each --param maco': (
        "torchvision's download"
    ),
    "N=$(nvidia-smi -L | wc -l)": "NVIDIA GPUs",
    "for i in $(seq 0 $((N - 1))); do": "NVIDIA GPUs",
    "CUDA_VISIBLE_DEVICES=$i dream photos/ -r -o out/ --shard $((i + 1))/$N -q &": "NVIDIA GPUs",
    "done": "NVIDIA GPUs",
    "wait": "NVIDIA GPUs",
    "ray start --head": "a Ray cluster",
    "ray start --address HEAD_IP:6379": "a Ray cluster",
    "dream photos/ -r -o out/ --ray auto": "a Ray cluster",
    "dream photos/ -r -o out/ --ray HEAD_IP:6379": "a Ray cluster",
    "dream photos/ -o out/ --ray local": "starts Ray for ~20 s; tests/test_ray.py runs the same",
}
# What each command gets added (last wins in Click): tiny pictures, few steps.
TINY = {
    "dream": ["--max-size", "48", "--octaves", "1", "--iterations", "1"],
    "sheet": ["--max-size", "48", "--octaves", "1", "--iterations", "1"],
    "video": ["--max-size", "48", "--octaves", "1", "--iterations", "1"],
    "zoom": ["--frames", "2", "--octaves", "1", "--iterations", "1"],
    "features": ["--size", "32x32", "--octaves", "1", "--iterations", "1"],
    "atlas": ["--photo-size", "48", "--steps", "8", "--grid", "2", "--samples", "4", "--method", "pca"],
    "units": [
        "--photo-size",
        "48",
        "--size",
        "32",
        "--steps",
        "8",
        "--diverse",
        "2",
        "--examples",
        "2",
        "--top",
        "2",
    ],
    "explain": ["--photo-size", "48", "--grid", "2", "--groups", "2", "--steps", "8"],
    "list": [],
    "patch": ["--steps", "2", "--batch", "2", "--size", "32", "--placements", "2"],
}
PRINTS_ONLY = ("dream list", "--show-settings", "_DREAM_COMPLETE", "python -c")  # lines that only print


def readme_lines() -> list[str]:
    """Shell lines of the README's plain code blocks, in order, without their comments."""
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"^```([a-z]*)\n(.*?)^```", text, re.S | re.M):
        language, body = block
        if language not in ("", "sh", "bash", "shell", "console"):  # python, yaml, text
            continue
        for line in body.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def tiny(line: str) -> str:
    """``line`` with the tiny flags added to its ``dream`` command (before a pipe or redirect)."""
    match = re.search(r"(?:^|\|\s*)dream\b([^|>&]*)", line)
    assert match, line
    words = shlex.split(match.group(1))
    command = words[0] if words and words[0] in TINY else "dream"
    extra = list(TINY[command])
    if command == "patch" and "test" in words[:2]:
        extra.remove("--steps"), extra.remove("2"), extra.remove("--batch"), extra.remove("2")
    if command == "zoom":
        extra += (
            ["--max-size", "48"] if len(words) > 1 and not words[1].startswith("-") else ["--size", "32x32"]
        )
    end = match.end(1)
    return line[:end].rstrip() + " " + " ".join(extra) + " " + line[end:]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, net):
    """A user's folder: photos, a guide, a clip; the weights where the download puts them."""
    here = tmp_path_factory.mktemp("readme")
    for name, seed in (
        ("photo.jpg", 0),
        ("portrait.jpg", 1),
        ("a.jpg", 2),
        ("flowers.jpg", 3),
        ("coffee.jpg", 5),
    ):
        save_photo(here / name, 64, 48, seed=seed)
    save_photo(here / "b.png", 64, 48, seed=4)
    save_photo(here / "train.png", 48, 48, seed=6)
    save_photo(here / "train.jpg", 200, 200, seed=7)
    (here / "more_photos").mkdir()
    save_photo(here / "more_photos" / "m0.jpg", 56, 48, seed=30)
    (here / "photos" / "more").mkdir(parents=True)
    for i in range(3):
        save_photo(here / "photos" / f"p{i}.jpg", 56, 48, seed=10 + i)
    save_photo(here / "photos" / "more" / "q0.jpg", 56, 48, seed=20)
    import corpus

    corpus.synthetic_video(here / "clip.mp4", frames=2)
    cache = here / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(net.state_dict(), cache / "googlenet-1378be20.pth")  # found there: never downloaded
    return here


def files(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and "torch-home" not in p.parts
    }


def test_the_readme_lists_its_lines_in_order():
    lines = readme_lines()
    assert lines[0] == "dream photo.jpg --layer inception_4c"  # the main call comes first
    assert set(NOT_RUN) <= set(lines), set(NOT_RUN) - set(lines)  # no stale exception


def test_every_readme_command_line_runs_in_order(folder, monkeypatch):
    monkeypatch.chdir(folder)
    monkeypatch.setenv("TORCH_HOME", str(folder / "torch-home"))
    env = dict(os.environ, TORCH_HOME=str(folder / "torch-home"), OMP_NUM_THREADS="1")
    ran = []
    for line in readme_lines():
        if line in NOT_RUN:
            continue
        before = files(folder)
        command = tiny(line) if re.search(r"(?:^|\|\s*)dream\b", line) and "_DREAM" not in line else line
        if re.search(r"[|>&$;]|^eval|^find|^python", line):  # shell: through bash, dream as python -m
            script = f'dream() {{ {shlex.quote(sys.executable)} -m dreamcli "$@"; }}\n{command}'
            done = subprocess.run(
                ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300
            )
            code, output = done.returncode, done.stdout + done.stderr
        else:
            result = CliRunner().invoke(main, shlex.split(command)[1:], catch_exceptions=False)
            code, output = result.exit_code, result.output
        assert code == 0, f"{line}\n{output}"
        assert "Traceback" not in output and "Skipped" not in output, f"{line}\n{output}"
        after = files(folder)
        written = {name for name, stamp in after.items() if before.get(name) != stamp}
        named = re.search(r"-o (\S+)", line)
        if named:  # this line wrote what it names (a file, or files in a folder)
            target = named.group(1).rstrip("/")
            assert any(name == target or name.startswith(target + "/") for name in written), (
                f"{line}: wrote nothing at {target}: {sorted(written)}"
            )
        elif not any(word in line for word in PRINTS_ONLY):
            assert written, f"{line}: wrote nothing"
        ran.append(line)
    assert len(ran) >= 25
