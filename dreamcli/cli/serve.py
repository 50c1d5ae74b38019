"""``dream serve``: a page on this machine to try styles on a photo, side by side.

The network loads once and stays loaded; the page's jobs run one at a time on
it.  Needs the web extra (``pip install 'dreamcli[web]'``).  Listens on
127.0.0.1 unless ``--host`` says otherwise; the address printed carries a token
drawn for this start, without which the server answers nothing.  Another address
only with ``--expose-to-network``, which says what that gives other machines.
"""

from __future__ import annotations

import socket
from typing import Any

import click

from dreamcli import __version__
from dreamcli.cli import common
from dreamcli.cli.common import Machine, Span, flag
from dreamcli.errors import EXIT_OK, DreamError

PORT = 8765
MAX_SIZE = 1024  # the long side uploads are dreamed at, at most, unless --max-size


class ServeCommand(common.SectionedCommand):
    shown = ("Serving", "Running", "Other")


@click.command(name="serve", cls=ServeCommand, context_settings={"max_content_width": 100})
@common.together(
    *(
        flag(name, section="Serving", default=default, show_default=True, help=text, **kind)
        for name, default, kind, text in (
            ("--port", PORT, {"span": Span(int, 0, 65535)}, "Port to listen on (0: any)."),
            (
                "--host",
                "127.0.0.1",
                {},
                "Address to listen on: 127.0.0.1 or another loopback address, or, with "
                "--expose-to-network, one other machines reach (0.0.0.0: every interface).",
            ),
            (
                "--max-size",
                MAX_SIZE,
                {"span": Span(int, 16, 65_536)},
                "Dream uploads shrunk so their long side is at most this many pixels.",
            ),
        )
    ),
    flag(
        "--expose-to-network",
        section="Serving",
        is_flag=True,
        help="Let a --host beyond loopback serve the page to the network: anyone who has the "
        "address with its token can upload photos, dream them on this machine and download them.",
    ),
)
@common.model_flags()
@common.quiet_flag(section="Other")
@common.help_all_flag()
@click.pass_context
def command(ctx: click.Context, **params: Any) -> None:
    """Serve a page to try styles on a photo: upload it, pick presets and layers,
    watch each dream fill in octave by octave, tune it, download it.

    \b
      dream serve                    # then open the address it prints
      dream serve --port 9000 --device cpu
    """
    from dreamcli.cli import run

    ctx.exit(run(_serve, ctx, params))


def _serve(ctx: click.Context, params: dict[str, Any]) -> int:
    try:
        from dreamcli.web import server
    except ImportError as exc:
        raise DreamError(
            f"dream serve needs its extra ({exc.name} is missing): pip install 'dreamcli[web]'"
        ) from None
    from dreamcli.cli.complete import user_preset_folders
    from dreamcli.web.commands import Machine as Shown

    host = _host(params["host"], params["expose_to_network"])
    network = common.network_for(params["model"], None)
    machine = Machine.of(params)
    machine.check_device()
    sock = _listen(host, params["port"])
    options = machine.run_options(reproducible=True)  # every job has a seed, shown in its command
    loaded = machine.load(network, options)
    weights = str(params["weights"].resolve()) if params["weights"] else None
    config = server.Config(
        loaded=loaded,
        options=options,
        metadata=machine.metadata(loaded, options, None),
        machine=Shown(network.name, weights, params["device"], params["precision"]),
        host=host,
        port=sock.getsockname()[1],
        max_size=params["max_size"],
        preset_folders=user_preset_folders(),
    )
    click.echo(f"dreamcli {__version__} serving {loaded.label} on {options.device}; open:")
    click.echo(f"  {config.url()}")
    machine.say("Ctrl-C stops it.")
    server.serve(config, sock)
    return EXIT_OK


def _host(host: str, exposed: bool) -> str:
    """The address to listen on: never empty (that is every interface); beyond loopback only
    with --expose-to-network."""
    from dreamcli.web.server import loopback

    name = host.strip().strip("[]")
    if not name:
        raise click.BadParameter(
            "give an address: 127.0.0.1 (this machine only, the default), or 0.0.0.0 (every "
            "interface) with --expose-to-network",
            param_hint="--host",
        )
    if not loopback(name) and not exposed:
        raise click.BadParameter(
            f"{name[:80]} is reachable from other machines; add --expose-to-network to serve the page "
            "there (anyone with its address and token can use it), or leave --host out for 127.0.0.1",
            param_hint="--host",
        )
    return name


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, so that a busy port or a bad address is one line before any work."""
    from dreamcli.web.connections import BACKLOG

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or --host",
            param_hint="--port",
        ) from None
    return sock
