"""``dream list layers|models|presets``: what there is to choose from.  Never loads torch for
presets and the default network's layers."""

from __future__ import annotations

import click

from dreamcli import models
from dreamcli import presets as preset_files
from dreamcli.cli import common
from dreamcli.cli.complete import user_preset_folders
from dreamcli.errors import EXIT_OK, SettingsError


@click.group(name="list", invoke_without_command=True, context_settings={"max_content_width": 100})
@click.pass_context
def command(ctx: click.Context) -> None:
    """List layers, models or presets: dream list layers|models|presets."""
    if ctx.invoked_subcommand is None:  # dream list: what it can list
        click.echo(ctx.get_help())


@command.command(name="layers")
@common.flag("-m", "--model", help="The network whose layers to list.  [default: googlenet]")
def layers(model: str | None) -> None:
    """Every layer of a network with its channels, under both names where it has two."""
    network = common.network_for(model)
    click.echo(f"# {network.name}: {network.description}")
    click.echo(f"# input: {network.input}; default layer: {network.default_layer}")
    click.echo(f"{'name':<34} {'module':<34} channels")
    for alias, module, channels in network.layers.rows():
        click.echo(f"{alias:<34} {module:<34} {channels}")


@command.command(name="models")
def models_() -> None:
    """Each network: its input, default layer, weights file and whether it is downloaded."""
    cache = models.cache_folder()
    for network in models.NETWORKS.values():
        cached = "cached" if (cache / network.weights.file).is_file() else "not downloaded yet"
        default = " (default)" if network.name == models.DEFAULT else ""
        click.echo(f"{network.name}{default}: {network.description}")
        click.echo(f"    input: {network.input}; default layer: {network.default_layer}")
        click.echo(f"    weights: {network.weights.file} ({cached}), from {network.weights.url}")
    click.echo(f"Downloads are kept in {cache}; --weights FILE takes a file you have.")


@command.command(name="presets")
def presets() -> int:
    """Each preset: where it comes from (and what it overrides), its layers and description."""
    folders = preset_files.search_path(user_preset_folders())
    for name, sources in preset_files.available(folders).items():
        label, path = sources[0]
        try:
            chosen = preset_files.load(path, label)
            layer_text = ", ".join(str(s) for s in chosen.apply().layers)
            description = chosen.description
        except SettingsError as exc:
            layer_text, description = "?", f"(broken: {exc})"
        origin = label if label == "built-in" else f"{label}: {path}"
        if len(sources) > 1:
            origin += f" (overrides {', '.join(lbl for lbl, _ in sources[1:])})"
        click.echo(f"{name}  [{origin}]  layers: {layer_text}")
        if description:
            click.echo(f"    {description}")
    return EXIT_OK
