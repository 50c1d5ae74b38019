"""Shell completion of preset, model and layer names (bash, zsh and fish, through Click).

eval "$(_DREAM_COMPLETE=bash_source dream)"     # in ~/.bashrc
eval "$(_DREAM_COMPLETE=zsh_source dream)"      # in ~/.zshrc
_DREAM_COMPLETE=fish_source dream | source       # in ~/.config/fish/completions/dream.fish
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from dreamcli import models
from dreamcli import presets as preset_files


def user_preset_folders() -> list[tuple[str, Path]]:
    """The user's preset folders, highest priority first: $DREAMCLI_PRESETS, then the config folder."""
    folders = []
    env = os.environ.get(preset_files.ENV_VAR)
    if env:
        folders.append((f"${preset_files.ENV_VAR}", Path(env)))
    folders.append(("user", Path(click.get_app_dir("dreamcli")) / "presets"))
    return folders


def presets(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    names = preset_files.available(preset_files.search_path(user_preset_folders()))
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def models_(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(name) for name in models.NETWORKS if name.startswith(incomplete)]


def layers(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The layers of the --model already typed (or the default network)."""
    chosen = ctx.params.get("model") or models.DEFAULT
    table = models.NETWORKS[chosen].layers if chosen in models.NETWORKS else models.get().layers
    names = [*table.aliases, *table.channels]
    return [CompletionItem(name) for name in dict.fromkeys(names) if name.startswith(incomplete)]
