"""``dream units PHOTOS... --layer L``: a small offline site of a layer's units, with dataset
examples from the photos; and ``dream explain PHOTO --layer L`` (``cli.explain``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dreamcli.cli import common
from dreamcli.cli.common import Machine, Span, default_of, flag
from dreamcli.errors import EXIT_FAILED, EXIT_OK, DreamError, SettingsError, describe
from dreamcli.jobs import outputs as plan
from dreamcli.jobs.unit_options import PICTURE_PARAMS, UnitsOptions


def one_layer(chosen: common.Chosen, params: dict[str, Any], what: str, channels: bool) -> Any:
    """The one layer of a units site or an explanation (channels only where ``channels``)."""
    layers = chosen.settings.layers
    if len(layers) != 1 or (layers[0].channels is not None and not channels):
        example = chosen.network.default_layer + ("[0-15]" if channels else "")
        if chosen.preset and not params["layers"]:
            raise SettingsError(
                f"preset {chosen.preset.name} dreams on {', '.join(map(str, layers))}; {what} one "
                f"layer: add e.g. --layer {example}"
            )
        raise click.BadParameter(f"{what} one layer: give one --layer, e.g. {example}", param_hint="--layer")
    return layers[0]


@click.command(name="units", cls=common.SectionedCommand, context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, metavar="PHOTOS...", type=click.Path())
@common.output_flag("The site's folder.  [default: units_LAYER/ here]", section="Other")
@common.layer_flag(section="Other", help="The layer, with channels to show (e.g. inception_4c[0-15]).")
@flag(
    "--top",
    span=Span(int, 1, 4096),
    default=default_of(UnitsOptions, "top"),
    show_default=True,
    help="Without channels: this many, those the photos drive hardest.",
)
@flag(
    "--examples",
    span=Span(int, 1, 64),
    default=default_of(UnitsOptions, "examples"),
    show_default=True,
    help="Dataset examples per unit.",
)
@flag(
    "--diverse",
    span=Span(int, 0, 16),
    default=default_of(UnitsOptions, "diverse"),
    show_default=True,
    help="Diverse pictures per unit (0: none; not 1).",
)
@flag("--no-crops", is_flag=True, help="Scan the whole photos only, not also their four corners.")
@flag(
    "--size",
    span=Span(int, 32, 1024),
    default=default_of(UnitsOptions, "size"),
    show_default=True,
    help="Side of each unit picture, pixels.",
)
@flag(
    "--steps",
    span=Span(int, 1, 100_000),
    default=default_of(UnitsOptions, "steps"),
    show_default=True,
    help="Adam steps of each picture.",
)
@flag(
    "--param",
    type=click.Choice(PICTURE_PARAMS),
    default=default_of(UnitsOptions, "param"),
    show_default=True,
    help="How pictures are made (as dream features).",
)
@flag(
    "--photo-size",
    span=Span(int, 32, 4096),
    default=default_of(UnitsOptions, "photo_size"),
    show_default=True,
    help="Each photo's long side as the network sees it.",
)
@common.field_flag("seed", section="Other")
@flag("-r", "--recursive", is_flag=True, help="Walk folders recursively.")
@flag("-0", "--null", is_flag=True, help="With PHOTOS -: the paths on stdin end with NUL.")
@common.job_flags()
@click.pass_context
def command(ctx: click.Context, **params: Any) -> None:
    """What each unit of a layer responds to: its feature picture, diverse and negative
    pictures, and the crops of your photos that drive it hardest, with its map over them
    (Olah et al., "Feature Visualization", Distill 2017).  Writes a folder that is a small
    offline site: index.html, a page per unit, units.json.  A rerun into the same folder
    keeps the units already pictured (more photos or channels make only what is new).

    \b
      dream units photos/ --layer inception_4c -o units/
      dream units photos/ --layer "inception_4c[0-15]" --examples 8
    """
    from dreamcli.cli import run

    ctx.exit(run(_units, ctx, params))


def _units(ctx: click.Context, params: dict[str, Any]) -> int:
    chosen = common.chosen_settings(ctx, params, fields=("seed",))
    spec = one_layer(chosen, params, "a unit site shows", channels=True)
    found = plan.collect_inputs(
        common.paths_from_stdin(list(params["inputs"]), params["null"]), params["recursive"]
    )
    photos = [path for path, _root in found.files]
    if not photos:
        raise click.UsageError("give photos, or folders of photos, to find the units' examples in")
    folder = Path(params["output"] or f"units_{spec.name.replace('/', '_')}")
    if folder.exists() and not folder.is_dir():
        raise SettingsError(f"cannot write the site into {folder}: it is a file; choose another -o")
    if not folder.parent.is_dir():
        raise SettingsError(f"cannot write {folder}: the folder {folder.parent} does not exist")
    options = UnitsOptions(
        channels=spec.channels,
        top=params["top"],
        photo_size=params["photo_size"],
        crops=not params["no_crops"],
        examples=params["examples"],
        size=params["size"],
        steps=params["steps"],
        diverse=params["diverse"],
        param=params["param"],
        seed=chosen.settings.seeded(default=0).seed or 0,
    )
    machine = Machine.of(params)
    machine.check_device()
    from dreamcli.jobs.units import make_units

    run_options = machine.run_options(reproducible=True)
    with machine.display() as display:
        loaded = machine.load(chosen.network, run_options)
        try:
            site = make_units(
                loaded, spec.name, photos, folder, options, report=display, fresh=params["overwrite"]
            )
        except DreamError:
            raise
        except Exception as exc:  # never a traceback: one line, exit 1
            raise DreamError(f"the unit site could not be made: {describe(exc)}") from None
    machine.say(f"Wrote {folder / 'index.html'} ({len(site['list'])} units, {len(photos)} photos)")
    return EXIT_FAILED if site["skipped"] else EXIT_OK
