"""The ``dream`` command: the only package that knows Click and tqdm.

``dream INPUT... [flags]`` is the default command (``dreaming``): DeepDream of
files, folders and stdin.  Jobs of another shape are commands of their own,
one module each, imported only when used (``COMMANDS``): ``dream sheet``,
``dream zoom``, ``dream video``, ``dream features``, ``dream atlas``, ``dream units``, ``dream explain``,
``dream list``.  A first word that names a command is that command; a file
of that name is written ``./zoom``.

Problems arrive as ``DreamError``s (or Click's usage errors) and leave as one
``Error: ...`` line and their exit code; SIGTERM stops a run like Ctrl-C.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click
from click.shell_completion import CompletionItem

from dreamcli.cli.display import quiet_stdout
from dreamcli.errors import EXIT_INTERRUPTED, EXIT_USAGE, DreamError, Terminated

# name -> (module:attribute, one line for the command list).  Imported when used.
COMMANDS: dict[str, tuple[str, str]] = {
    "sheet": (
        "dreamcli.cli.sheet:command",
        "A photo dreamed per layer, preset or channel, on one sheet.",
    ),
    "zoom": (
        "dreamcli.cli.zoom:command",
        "Infinite zoom: dream, zoom in, dream again.",
    ),
    "video": (
        "dreamcli.cli.video:command",
        "Dream each frame of a video, carrying the dream along.",
    ),
    "features": ("dreamcli.cli.features:command", "Feature pictures from noise: a layer, channel or class."),
    "atlas": ("dreamcli.cli.atlas:command", "An activation atlas of your photos: what a layer sees in them."),
    "units": ("dreamcli.cli.units:command", "Unit pages of a layer: pictures and examples from your photos."),
    "explain": (
        "dreamcli.cli.explain:command",
        "What a layer sees where in one photo: grid, groups, attribution.",
    ),
    "patch": ("dreamcli.cli.patch:group", "Adversarial patches: make one, or test a picture as one."),
    "list": ("dreamcli.cli.listing:command", "List layers, models or presets."),
    "serve": ("dreamcli.cli.serve:command", "A local web page to try styles on a photo, side by side."),
}
DEFAULT = "dream"  # the default command's name, when no command is named

# Flags of the one command before each job had its own command, under names no command has
# now: what to type instead.  (--fps, --size, --blend... are named by the command that has them.)
MOVED = {
    "--sweep": "dream sheet PHOTO --layers 'A B C'",
    "--sweep-presets": "dream sheet PHOTO --presets 'A B C'",
    "--channel-grid": "dream features --layer 'LAYER[0-63]' --each, or dream sheet PHOTO --channels",
    "--start": "dream features (pictures from noise) or dream zoom without INPUT",
    "--zoom": "dream zoom PHOTO --frames N",
    "--zoom-scale": "dream zoom --scale",
    "--atlas": "dream atlas PHOTOS",
    "--atlas-grid": "dream atlas --grid",
    "--atlas-method": "dream atlas --method",
    "--atlas-samples": "dream atlas --samples",
    "--atlas-photo-size": "dream atlas --photo-size",
    "--atlas-steps": "dream atlas --steps",
    "--atlas-labels": "dream atlas --labels",
    "--list-layers": "dream list layers",
    "--list-models": "dream list models",
    "--list-presets": "dream list presets",
}


def load_command(name: str) -> click.Command:
    module, _, attribute = COMMANDS[name][0].partition(":")
    return getattr(importlib.import_module(module), attribute)


class DreamGroup(click.Group):
    """``dream``: a default command for files, and a command per job; every error one line."""

    def __init__(self, *args: Any, default: click.Command, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.default = default

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == DEFAULT:
            return self.default
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Anything but a command's name first is the default command's: dream photo.jpg, dream -q ...
        # (Completing the first word, the group itself answers: commands and files.)
        if (not args and not ctx.resilient_parsing) or (args and args[0] not in COMMANDS):
            args = [DEFAULT, *args]
        return super().parse_args(ctx, args)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """The first word: a command's name, or what the default command takes there."""
        commands = [CompletionItem(name, help=line) for name, (_, line) in COMMANDS.items()]
        found = [item for item in commands if item.value.startswith(incomplete)]
        if incomplete.startswith("-"):
            return [
                CompletionItem(opt)
                for p in self.default.params
                for opt in getattr(p, "opts", ())
                if opt.startswith(incomplete)
            ]
        return [*found, CompletionItem(incomplete, type="file")]

    def main(
        self, args: Any = None, prog_name: Any = None, *rest: Any, standalone_mode: bool = True, **extra: Any
    ):
        if not standalone_mode:
            return super().main(args, prog_name, *rest, standalone_mode=False, **extra)  # type: ignore[call-overload]
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, prog_name, *rest, standalone_mode=False, **extra)  # type: ignore[call-overload]
        except click.NoSuchOption as exc:
            name = exc.option_name.split("=", 1)[0]
            where = _where(exc.option_name, argv)
            # Where another command takes it (or an old mode flag moved), Click's guess among this
            # command's options ("Did you mean '--preset'?" for --fps) would only mislead.
            message = f"No such option '{name}'" if where else exc.format_message()
            click.echo(f"Error: {message}{where}", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:  # usage errors: one line, like every other error
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except DreamError as exc:  # from a command that did not go through run(): the same line
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # e.g. dream list models | head: the reader has what it wanted
            quiet_stdout()
            sys.exit(0)
        sys.exit(code if isinstance(code, int) else 0)


def _where(option: str, argv: list[str]) -> str:
    """A hint for an option this command does not take: the command that takes it, or what a
    mode flag of the old single command is now."""
    name = option.split("=", 1)[0]
    if name in MOVED or name.removeprefix("--no-") in MOVED:
        return f" (it is now: {MOVED.get(name) or MOVED['--' + name.removeprefix('--no-')]})"
    here = argv[0] if argv and argv[0] in COMMANDS else DEFAULT
    takers = [
        ("dream" if cmd == DEFAULT else f"dream {cmd}")
        for cmd in [DEFAULT, *COMMANDS]
        if cmd != here and name in _option_names(cmd)
    ]
    return f" (an option of {' and '.join(takers)})" if takers else ""


def _option_names(command: str) -> set[str]:
    cmd = main.default if command == DEFAULT else load_command(command)
    names: set[str] = set()
    for param in cmd.params:
        names.update(getattr(param, "opts", ()))
        names.update(getattr(param, "secondary_opts", ()))
    return names


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """A timeout, systemd or Slurm sends SIGTERM: stop the way Ctrl-C does (finish the write in
    progress, print the summary) and exit with 143."""

    def terminated(signum: int, frame: Any) -> None:
        raise Terminated

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (e.g. a test runner's thread)
        return
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(work: Any, *args: Any) -> int:
    """Run a command's work: a DreamError is one ``Error:`` line and its exit code, Ctrl-C and
    SIGTERM exit with 130 and 143."""
    try:
        with sigterm_as_interrupt():
            return int(work(*args))
    except DreamError as exc:
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        click.echo("Interrupted.", err=True)
        return int(getattr(exc, "exit_code", EXIT_INTERRUPTED))


def _make_main() -> DreamGroup:
    from dreamcli.cli import complete
    from dreamcli.cli.dreaming import command

    complete.register()  # bash: commands and files together (Click's script drops one for the other)

    return DreamGroup(
        name="dream",
        default=command,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )


main = _make_main()
