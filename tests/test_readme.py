"""Every command line of README.md and of the manual (docs/*.md), run as a newcomer would type them.

Each page's lines run in order in a fresh folder of small photos (a page is
read on its own, so it may not lean on another's files).  Random GoogLeNet
weights wait in a private torch cache (``$TORCH_HOME``), where the real
download would put them, so the lines run exactly as written; tiny sizes and
few steps are added to each ``dream`` so that all pages run in a few minutes.
Each line must exit 0, print no traceback, skip nothing, and write what it
names with ``-o`` (or, without one, some new file).  A page's ``python``
blocks run too, in the same folder, in order.  The lines that need a GPU, the
internet or a cluster are listed here by their exact text, with the reason, so
a new line in any page is run unless someone decides otherwise.

Shell lines run through bash with ``dream`` and ``python`` both meaning the
interpreter that runs the tests (``sys.executable``), so the suite started as
``venv/bin/python -m pytest`` without the venv on ``PATH`` runs the checkout
it tests, not whichever ``python`` comes first.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dreamcli.cli import main

from conftest import save_photo

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

NOT_RUN = {
    "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu": "the internet",
    "pip download torch torchvision --index-url https://download.pytorch.org/whl/cpu -d wheels/": (
        "the internet"
    ),
    "pip install --no-index --find-links wheels/ torch torchvision": "the wheels of the line before",
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
    # python blocks, by their first line
    "import lite0": "../shared/realnet's Lite0, not in a fresh clone (benchmarks/readme_pictures.py runs it)",
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
SHELL = ("", "sh", "bash", "shell", "console")  # the code blocks whose lines are typed
PYTHON_RAN: set[str] = set()  # python blocks already run in this session (one example on two pages)


def page_blocks(page: Path) -> list[tuple[str, str]]:
    """The page's runnable pieces in order: ("sh", one shell line without its comment) or
    ("python", a whole python block); yaml, text and other blocks are not run."""
    text = page.read_text(encoding="utf-8")
    pieces = []
    for language, body in re.findall(r"^```([a-z]*)\n(.*?)^```", text, re.S | re.M):
        if language == "python":
            pieces.append(("python", body))
        elif language in SHELL:
            for line in body.splitlines():
                line = re.sub(r"\s+#\s.*$", "", line).strip()
                if line:
                    pieces.append(("sh", line))
    return pieces


def page_lines(page: Path) -> list[str]:
    return [text for kind, text in page_blocks(page) if kind == "sh"]


def key(kind: str, text: str) -> str:
    """How NOT_RUN names a piece: a shell line by its text, a python block by its first line."""
    return text if kind == "sh" else text.strip().splitlines()[0]


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


def shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``command`` through bash, ``dream`` and ``python`` being this interpreter whatever ``PATH`` says."""
    python = shlex.quote(sys.executable)
    script = f'python() {{ {python} "$@"; }}\ndream() {{ {python} -m dreamcli "$@"; }}\n{command}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def template(tmp_path_factory, net):
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
    cache = tmp_path_factory.mktemp("torch-home")
    (cache / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(net.state_dict(), cache / "hub" / "checkpoints" / "googlenet-1378be20.pth")  # never downloaded
    return here, cache


def files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_the_pages_list_their_lines_in_order():
    lines = page_lines(README)
    assert lines[0] == "dream photo.jpg --layer inception_4c"  # the main call comes first
    every = {key(kind, text) for page in PAGES for kind, text in page_blocks(page)}
    assert set(NOT_RUN) <= every, set(NOT_RUN) - every  # no stale exception
    assert len([1 for page in PAGES for line in page_lines(page) if line not in NOT_RUN]) >= 50


def test_the_readme_stays_a_readme():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200  # the rest is in docs/
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", README.read_text(encoding="utf-8")):
        assert (ROOT / link).exists(), link
    for page in PAGES[1:]:  # and the manual's links between its pages hold
        for link in re.findall(r"\]\(([^)#:]+)[)#]", page.read_text(encoding="utf-8")):
            assert (page.parent / link).exists(), f"{page.name}: {link}"


def test_readme_pictures_are_small_and_there():
    pictures = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", README.read_text(encoding="utf-8"))
    assert 3 <= len(pictures) <= 4, pictures
    for picture in pictures:
        assert (ROOT / picture).stat().st_size < 100_000, picture


def test_python_lines_run_with_the_interpreter_of_the_tests(tmp_path):
    """``python -c ...`` in a page means this interpreter even where ``PATH`` has another first
    (pytest started as ``venv/bin/python -m pytest`` without the venv on ``PATH``)."""
    other = tmp_path / "bin"
    other.mkdir()
    (other / "python").write_text("#!/bin/sh\necho not-the-tests-python\n")
    (other / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{other}:/usr/bin:/bin")
    done = shell('python -c "import sys, dreamcli; print(sys.executable, dreamcli.__file__)"', env)
    assert done.returncode == 0, done.stderr
    interpreter, package = done.stdout.split()
    assert interpreter == sys.executable
    assert Path(package).resolve().is_relative_to(ROOT)  # this checkout, not another install


@pytest.mark.parametrize(
    "page", [page for page in PAGES if page_blocks(page)], ids=lambda page: str(page.relative_to(ROOT))
)
def test_every_command_line_of_the_page_runs_in_order(page, template, tmp_path, monkeypatch):
    here, cache = template
    folder = tmp_path / "user"
    shutil.copytree(here, folder)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("TORCH_HOME", str(cache))
    env = dict(os.environ, TORCH_HOME=str(cache), OMP_NUM_THREADS="1")
    for kind, text in page_blocks(page):
        if key(kind, text) in NOT_RUN:
            continue
        before = files(folder)
        if kind == "python":
            if text in PYTHON_RAN:  # the same example on two pages (README's, the API page's): once
                continue
            exec(compile(text, str(page), "exec"), {})
            PYTHON_RAN.add(text)
            assert set(files(folder)) - set(before), f"{page.name}: the python block wrote nothing"
            continue
        line = text
        command = tiny(line) if re.search(r"(?:^|\|\s*)dream\b", line) and "_DREAM" not in line else line
        if re.search(r"[|>&$;]|^eval|^find|^python", line):  # shell: through bash
            done = shell(command, env)
            code, output = done.returncode, done.stdout + done.stderr
        else:
            result = CliRunner().invoke(main, shlex.split(command)[1:], catch_exceptions=False)
            code, output = result.exit_code, result.output
        where = f"{page.name}: {line}"
        assert code == 0, f"{where}\n{output}"
        assert "Traceback" not in output and "Skipped" not in output, f"{where}\n{output}"
        after = files(folder)
        written = {name for name, stamp in after.items() if before.get(name) != stamp}
        named = re.search(r"-o (\S+)", line)
        if named:  # this line wrote what it names (a file, or files in a folder)
            target = named.group(1).rstrip("/")
            assert any(name == target or name.startswith(target + "/") for name in written), (
                f"{where}: wrote nothing at {target}: {sorted(written)}"
            )
        elif not any(word in line for word in PRINTS_ONLY):
            assert written, f"{where}: wrote nothing"
