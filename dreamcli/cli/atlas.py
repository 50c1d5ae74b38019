"""``dream atlas PHOTOS...``: an activation atlas of the user's photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dreamcli.cli import common
from dreamcli.cli.common import Machine, Span, default_of, flag
from dreamcli.errors import EXIT_FAILED, EXIT_OK, DreamError, SettingsError, describe
from dreamcli.io.formats import check_output
from dreamcli.jobs import inputs
from dreamcli.jobs.requests import AtlasOptions


@click.command(name="atlas", cls=common.SectionedCommand, context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, metavar="PHOTOS...", type=click.Path())
@common.output_flag("The atlas picture; its JSON goes beside it.  [default: atlas.png]", section="Other")
@common.layer_flag(section="Other", help="The one layer to map (no channels).  [default: the network's]")
@common.preset_flag(section="Other")
@common.field_flag("seed", section="Other")
@flag(
    "--grid",
    span=Span(int, 1, 100),
    default=default_of(AtlasOptions, "grid"),
    show_default=True,
    help="Cells a side.",
)
@flag(
    "--method",
    type=click.Choice(("umap", "tsne", "pca")),
    default=default_of(AtlasOptions, "method"),
    show_default=True,
    help="How activations are laid out in 2-D; umap and tsne need pip install 'dreamcli[atlas]'.",
)
@flag(
    "--samples",
    span=Span(int, 1, 10_000),
    default=default_of(AtlasOptions, "samples_per_image"),
    show_default=True,
    help="Positions sampled from each photo (100,000 in all at most).",
)
@flag(
    "--photo-size",
    span=Span(int, 32, 4096),
    default=default_of(AtlasOptions, "size"),
    show_default=True,
    help="Each photo's long side, in pixels, as the network sees it.",
)
@flag(
    "--steps",
    span=Span(int, 1, 100_000),
    default=default_of(AtlasOptions, "steps"),
    show_default=True,
    help="Optimisation steps of each cell's picture.",
)
@flag(
    "--labels/--no-labels",
    default=None,
    help="Write each cell's top class under it.  [default: on where the network has classes]",
)
@flag(
    "--compare",
    metavar='"A,B"',
    callback=lambda ctx, param, value: _check_compare(value),
    help="Two classes: each cell framed by its attribution toward A (blue) or B (orange).",
)
@flag("-r", "--recursive", is_flag=True, help="Walk folders recursively.")
@flag("-0", "--null", is_flag=True, help="With PHOTOS -: the paths on stdin end with NUL.")
@flag("--include-dreams", is_flag=True, help="Also take pictures dreamcli made when walking folders.")
@common.job_flags()
@click.pass_context
def command(ctx: click.Context, **params: Any) -> None:
    """Map what a layer sees in a collection of photos (Carter et al., "Activation Atlas",
    Distill 2019): activations laid out by similarity, binned into a grid, each cell drawn as
    the feature picture of its average activation. Writes the picture and a JSON beside it.

    \b
      dream atlas photos/ -r -o atlas.png --layer inception_4c
      dream atlas photos/ -o atlas.png --grid 12 --method pca --seed 1
      dream atlas photos/ --compare "snorkel,scuba diver" --layer inception_4d
    """
    from dreamcli.cli import run

    ctx.exit(run(_atlas, ctx, params))


def _atlas(ctx: click.Context, params: dict[str, Any]) -> int:
    chosen = common.chosen_settings(ctx, params, fields=("seed",))
    layer = _layer(chosen, params)
    found = inputs.collect_inputs(
        common.paths_from_stdin(list(params["inputs"]), params["null"]),
        params["recursive"],
        dreams=params["include_dreams"],
    )
    photos = [path for path, _root in found.files]
    if not photos:
        raise click.UsageError("give photos, or folders of photos, to make an atlas of")
    raw, into_folder = common.output_path(params["output"] or "atlas.png")
    output = Path(raw or "atlas.png")
    output = output / "atlas.png" if into_folder or output.is_dir() else output
    check_output(output)
    if into_folder:
        output.parent.mkdir(parents=True, exist_ok=True)
    elif not output.parent.is_dir():  # found now, not after minutes of work
        raise SettingsError(f"cannot write {output}: the folder {output.parent} does not exist")
    for path in (output, output.with_suffix(".json")):
        if any(inputs.same_file(photo, path) for photo in photos):
            raise SettingsError(
                f"{path} is one of the photos; dreamcli never overwrites an input: choose another -o"
            )
    machine = Machine.of(params)
    if machine.kept(output, params["overwrite"]):
        return EXIT_OK
    if not params["overwrite"]:
        _check_atlas_json(output)
    from dreamcli.jobs import atlas

    network = chosen.network
    compare = params["compare"]
    if compare is not None:
        if network.logits is None:
            raise click.BadParameter(f"{network.name} has no classes to compare", param_hint="--compare")
        try:
            for name in compare:  # an unknown class is one line before the model loads
                network.class_index(name)
        except SettingsError as exc:
            raise click.BadParameter(str(exc), param_hint="--compare") from None
    labels = params["labels"] if params["labels"] is not None else network.logits is not None
    if labels and network.logits is None:
        raise click.BadParameter(f"{network.name} has no classes to label cells with", param_hint="--labels")
    options = AtlasOptions(
        grid=params["grid"],
        size=params["photo_size"],
        samples_per_image=params["samples"],
        method=params["method"],
        steps=params["steps"],
        labels=labels,
        seed=chosen.settings.seeded(steady=True).seed or 0,
        compare=compare,
    )
    atlas.require_layout(options.method)  # a missing extra says so before the model loads
    with machine.display() as display:
        loaded = machine.open(network).loaded
        try:
            made = atlas.make_atlas(loaded, layer, photos, options, report=display)
            atlas.write_atlas(made, output)
        except DreamError:
            raise
        except Exception as exc:  # never a traceback: one line, exit 1
            raise DreamError(f"the atlas could not be made: {describe(exc)}") from None
    used = made.metadata["photos_used"]
    machine.say(
        f"Wrote {output} and {output.with_suffix('.json').name} ({len(made.cells)} cells, {used} photos)"
    )
    return EXIT_FAILED if made.skipped else EXIT_OK


def _check_compare(value: str | None) -> tuple[str, str] | None:
    """``"A,B"`` -> two class names or indices; a class name with a comma cannot be given."""
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise click.BadParameter(f'{value[:60]!r}: give two different classes, e.g. "snorkel,scuba diver"')
    return names[0], names[1]


def _layer(chosen: common.Resolved, params: dict[str, Any]) -> str:
    layers = chosen.settings.layers
    if len(layers) != 1 or layers[0].channels is not None:
        if chosen.preset and not params["layers"]:
            raise SettingsError(
                f"preset {chosen.preset.name} dreams on {', '.join(map(str, layers))}; an atlas maps "
                f"one whole layer: add e.g. --layer {chosen.network.default_layer}"
            )
        raise click.BadParameter(
            "an atlas maps one whole layer: give one --layer, without channels", param_hint="--layer"
        )
    return layers[0].name


def _check_atlas_json(output: Path) -> None:
    """atlas.webp after atlas.png would share (and replace) atlas.json: refuse, unless that
    JSON is this picture's own (a run killed between writing the JSON and the picture)."""
    described = output.with_suffix(".json")
    if not described.exists():
        return
    try:
        image = json.loads(described.read_text(encoding="utf-8"))["atlas"]["image"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        image = None
    if image != output.name:
        whose = f"the map of {image}" if isinstance(image, str) else "not an atlas map of this picture"
        raise SettingsError(f"{described} exists, {whose}; --overwrite replaces it, or choose another -o")
