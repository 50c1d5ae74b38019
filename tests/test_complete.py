"""Shell completion, through the real bash: the script ``_DREAM_COMPLETE=bash_source`` prints,
sourced into an interactive bash on a terminal (a pty), with TAB typed as a user types it."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or not hasattr(os, "openpty"), reason="needs bash and a pty"
)


class Bash:
    """An interactive bash on a pty, with ``dream``'s completion sourced as the README says."""

    def __init__(self, folder):
        bin_ = folder / "bin"
        bin_.mkdir()
        dream = bin_ / "dream"
        dream.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dreamcli "$@"\n')
        dream.chmod(0o755)
        rc = folder / "bashrc"
        rc.write_text(
            'PS1="$ "\n'
            f'export PATH="{bin_}:$PATH"\n'
            'eval "$(_DREAM_COMPLETE=bash_source dream)"\n'
            "bind 'set bell-style none'\n"
            "echo READY\n"
        )
        primary, secondary = os.openpty()
        env = {**os.environ, "TERM": "dumb", "INPUTRC": "/dev/null", "COLUMNS": "200"}
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--rcfile", str(rc), "-i"],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            cwd=folder,
            env=env,
            start_new_session=True,
        )
        os.close(secondary)
        self.fd = primary
        self.seen = ""
        self.wait_for("READY")

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def wait_for(self, *texts: str, timeout: float = 120) -> str:
        """What the terminal showed until every one of ``texts`` is there."""
        end = time.monotonic() + timeout
        while not all(text in self.seen for text in texts):
            left = end - time.monotonic()
            assert left > 0, f"bash never showed {texts}; it showed: {self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536).decode("utf-8", "replace")
                except OSError:  # bash has gone
                    break
        shown, self.seen = self.seen, ""
        return shown

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self.fd)


@pytest.fixture
def bash(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"")
    (tmp_path / "photos").mkdir()
    session = Bash(tmp_path)
    yield session
    session.close()


def test_tab_tab_lists_the_commands_and_the_files(bash):
    bash.type("dream \t\t")
    shown = bash.wait_for("features", "zoom", "photo.jpg", "photos/")
    assert "sheet" in shown and "serve" in shown


def test_a_commands_start_completes_to_the_command(bash):
    bash.type("dream fea\t")
    bash.wait_for("dream features ")


def test_layers_complete_for_a_torchvision_model(bash):
    # bash splits torchvision:resnet18 at ':'; the layers are still resnet18's (layer4.0.downsample...)
    bash.type("dream --model torchvision:resnet18 --layer layer4.0.dow\t")
    bash.wait_for("layer4.0.downsample")


def test_library_model_names_complete_past_the_colon(bash):
    bash.type("dream --model torchvision:convnext_t\t")
    bash.wait_for("torchvision:convnext_tiny ")
