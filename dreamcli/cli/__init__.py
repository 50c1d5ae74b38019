"""The ``dream`` command: the only package that knows Click and tqdm.

``options`` declares the flags, ``modes`` chooses and runs what they ask for,
``display`` shows progress.  Problems arrive as ``DreamError``s and leave as
one ``Error: ...`` line and the error's exit code.
"""

from __future__ import annotations

import click

from dreamcli.cli import modes
from dreamcli.cli.options import CliOptions, all_options
from dreamcli.errors import EXIT_INTERRUPTED, DreamError


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@all_options
@click.pass_context
def main(ctx: click.Context, **options):
    """Dream on images with GoogLeNet, the classic 2015 DeepDream.

    INPUT is an image file, a folder of images, or - to read one path per line
    from standard input. Examples:

    \b
      dream photo.jpg --layer inception_4c
      dream photo.jpg --preset eyes -o eyes.png
      dream photos/ -r -o dreams/ --preset preview
    """
    try:
        code = modes.run(ctx, CliOptions(**options))
    except DreamError as exc:
        click.echo(f"Error: {exc}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    ctx.exit(code)
