"""The ``dream`` command: the only package that knows Click and tqdm.

``options`` declares the flags, ``modes`` chooses and runs what they ask for,
``display`` shows progress, ``complete`` completes names in the shell.
Problems arrive as ``DreamError``s (or Click's usage errors) and leave as one
``Error: ...`` line and their exit code; SIGTERM stops a run like Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

import click

from dreamcli.cli import modes
from dreamcli.cli.display import quiet_stdout
from dreamcli.cli.options import SECTIONS, CliOptions, all_options
from dreamcli.errors import EXIT_INTERRUPTED, DreamError, Terminated


class DreamCommand(click.Command):
    """``dream``: help in sections, and every error as one ``Error:`` line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:  # usage errors: one line, like every other error
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # e.g. dream --list-models | head: the reader has what it wanted
            quiet_stdout()
            sys.exit(0)
        sys.exit(code if isinstance(code, int) else 0)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """``--help``: the Dreaming flags in full, the other sections' flags by name."""
        every = ctx.meta.get("dreamcli.help_all", False)
        by_section: dict[str, list] = {section: [] for section in SECTIONS}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                by_section[getattr(param, "section", "Dreaming")].append((param, record))
        for section, params in by_section.items():
            if every or section == "Dreaming":
                with formatter.section(f"{section} options"):
                    formatter.write_dl([record for _, record in params])
        if not every:
            with formatter.section("More options (dream --help-all explains them)"):
                formatter.write_dl(
                    [
                        (section, " ".join(_grouped([max(p.opts, key=len) for p, _ in params])))
                        for section, params in by_section.items()
                        if section != "Dreaming"
                    ]
                )


def _grouped(flags: list[str]) -> list[str]:
    """``--atlas --atlas-grid --atlas-method ...`` as ``--atlas --atlas-*`` (three or more share it)."""
    heads = [name for name in flags if sum(f.startswith(name + "-") for f in flags) >= 2]
    out: list[str] = []
    for name in flags:
        if name in heads:
            out += [name, f"{name}-*"]
        elif not any(name.startswith(head + "-") for head in heads):
            out.append(name)
    return out


def _help_all(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        ctx.meta["dreamcli.help_all"] = True
        click.echo(ctx.get_help())
        ctx.exit()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A timeout, systemd or Slurm sends SIGTERM: stop the way Ctrl-C does (finish the write in
    progress, print the summary) and exit with 143."""

    def terminated(signum, frame):
        raise Terminated

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (e.g. a test runner's thread)
        return
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command(
    cls=DreamCommand,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@all_options
@click.option(
    "--help-all",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_help_all,
    help="Show every option.",
)
@click.pass_context
def main(ctx: click.Context, **options):
    """Dream on images: the 2015 DeepDream, on GoogLeNet or another --model.

    INPUT is an image file, a folder of images, or - to read paths from
    standard input. Examples:

    \b
      dream photo.jpg --layer inception_4c
      dream photo.jpg --preset eyes -o eyes.png
      dream photos/ -r -o dreams/ --preset preview
    """
    try:
        with _sigterm_as_interrupt():
            code = modes.run(ctx, CliOptions(**options))
    except DreamError as exc:
        click.echo(f"Error: {exc}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        click.echo("Interrupted.", err=True)
        code = getattr(exc, "exit_code", EXIT_INTERRUPTED)
    ctx.exit(code)
