"""Shell completion of commands, preset, model and layer names (bash, zsh and fish, through Click).

eval "$(_DREAM_COMPLETE=bash_source dream)"     # in ~/.bashrc
eval "$(_DREAM_COMPLETE=zsh_source dream)"      # in ~/.zshrc
_DREAM_COMPLETE=fish_source dream | source       # in ~/.config/fish/completions/dream.fish

Bash gets a script of its own (``BashComplete``): Click's empties its list when a
``file`` entry comes, so ``dream <TAB>`` offered files and never the commands.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from click import shell_completion
from click.shell_completion import CompletionItem, split_arg_string

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
    names = list(models.NETWORKS)
    source, colon, _ = incomplete.partition(":")
    if colon and source in ("torchvision", "timm"):  # the library's classifiers (imports it)
        from dreamcli.models.modern import known

        try:
            names = [f"{source}:{arch}" for arch in known(source)]
        except Exception:  # timm not installed: nothing to offer
            names = []
    else:
        names += ["torchvision:", "timm:"]
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def layers(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The layers of the --model already typed (or the default network)."""
    chosen = ctx.params.get("model") or models.DEFAULT
    try:  # torchvision:NAME and timm:NAME read their table off the network (imports torch)
        table = models.get(chosen).layers
    except Exception:  # a model name still being typed, or a library not installed: nothing to offer
        return []
    names = [*table.aliases, *table.channels]
    return [CompletionItem(name) for name in dict.fromkeys(names) if name.startswith(incomplete)]


# Click's bash script, but a ``file`` or ``dir`` entry adds the matching paths to the list
# (``compgen``) instead of emptying it, and the line goes as typed (COMP_LINE), so that a word
# bash splits at ``:`` (``torchvision:resnet18``) reaches Click whole.
_SOURCE_BASH = r"""
%(complete_func)s() {
    local IFS=$'\n'
    local response completion type value paths=""
    response=$(env COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD=$COMP_CWORD COMP_LINE="$COMP_LINE" \
        COMP_POINT=$COMP_POINT _DREAM_WORDBREAKS="$COMP_WORDBREAKS" %(complete_var)s=bash_complete $1)
    COMPREPLY=()
    for completion in $response; do
        IFS=',' read type value <<< "$completion"
        if [[ $type == 'plain' ]]; then
            COMPREPLY+=("$value")
        elif [[ $type == 'file' ]]; then
            paths=-f
        elif [[ $type == 'dir' && $paths != -f ]]; then
            paths=-d
        fi
    done
    if [[ -n $paths ]]; then
        compopt -o filenames
        COMPREPLY+=($(compgen $paths -- "${COMP_WORDS[COMP_CWORD]}"))
    fi
    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""


class BashComplete(shell_completion.BashComplete):
    """Bash: commands and files together; words bash splits at ``:`` or ``=`` taken whole."""

    source_template = _SOURCE_BASH
    _lead = ""  # what bash's current word leaves out of Click's incomplete value (``torchvision:``)

    def get_completion_args(self) -> tuple[list[str], str]:
        line, point = os.environ.get("COMP_LINE"), os.environ.get("COMP_POINT", "")
        if line is None or not point.isdecimal():  # an older script: Click's own reading
            return super().get_completion_args()
        head = line[: int(point)]
        words = split_arg_string(head)
        word = "" if not words or head[-1:].isspace() else words.pop()
        breaks = os.environ.get("_DREAM_WORDBREAKS", "")
        value = word.partition("=")[2] if word.startswith("-") and "=" in word else word
        cut = max((value.rfind(c) for c in ":=" if c in breaks), default=-1)
        self._lead = value[: cut + 1]
        return words[1:], word

    def format_completion(self, item: CompletionItem) -> str:
        value = item.value
        if self._lead and item.type == "plain" and value.startswith(self._lead):
            value = value[len(self._lead) :]  # bash replaces only the part after the last ':'
        return f"{item.type},{value}"


def register() -> None:
    """Use ``BashComplete`` for ``_DREAM_COMPLETE=bash_source`` and ``bash_complete``."""
    shell_completion.add_completion_class(BashComplete)
