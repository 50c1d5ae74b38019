"""``dream explain PHOTO --layer L``: the spatial activations of one photo, as a poster, a page
and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dreamcli.cli import common
from dreamcli.cli.common import Machine, Span, default_of, flag
from dreamcli.cli.units import one_layer
from dreamcli.errors import EXIT_OK, DreamError, SettingsError, describe
from dreamcli.io.formats import file_problem
from dreamcli.jobs import inputs, naming
from dreamcli.jobs.unit_options import PICTURE_PARAMS, ExplainOptions


def _check_cell(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 2 or not all(p.strip().isdecimal() for p in parts):
        raise click.BadParameter(f"{value[:40]!r}: give ROW,COL from 0, e.g. 3,4")
    return int(parts[0]), int(parts[1])


@click.command(name="explain", cls=common.SectionedCommand, context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, metavar="PHOTO", type=click.Path())
@common.output_flag(
    "The poster; its page (.html) and JSON go beside it.  [default: PHOTO_explain.png here]", section="Other"
)
@common.layer_flag(
    section="Other", help="The one layer to explain at (no channels).  [default: the network's]"
)
@flag(
    "--grid",
    span=Span(int, 1, 64),
    default=default_of(ExplainOptions, "grid"),
    show_default=True,
    help="Cells on the grid's long side at most (fewer where the layer has fewer positions).",
)
@flag(
    "--groups",
    span=Span(int, 1, 64),
    default=default_of(ExplainOptions, "groups"),
    show_default=True,
    help="Neuron groups (a non-negative factorisation of the activations).",
)
@flag(
    "--classes",
    span=Span(int, 0, 20),
    default=default_of(ExplainOptions, "classes"),
    show_default=True,
    help="Top classes to attribute to (activation x gradient).",
)
@flag(
    "--cell",
    metavar="ROW,COL",
    callback=_check_cell,
    help="The cell whose channels are shown.  [default: the most attributed]",
)
@flag(
    "--units",
    "units",
    type=click.Path(file_okay=False),
    help="A site made by dream units: the cell's channels link to their pages there.",
)
@flag(
    "--steps",
    span=Span(int, 1, 100_000),
    default=default_of(ExplainOptions, "steps"),
    show_default=True,
    help="Adam steps of each picture.",
)
@flag(
    "--cell-size",
    span=Span(int, 16, 512),
    default=default_of(ExplainOptions, "cell_size"),
    show_default=True,
    help="Side of each cell's and group's picture, pixels.",
)
@flag(
    "--param",
    type=click.Choice(PICTURE_PARAMS),
    default=default_of(ExplainOptions, "param"),
    show_default=True,
    help="How pictures are made (as dream features).",
)
@flag(
    "--photo-size",
    span=Span(int, 32, 4096),
    default=default_of(ExplainOptions, "photo_size"),
    show_default=True,
    help="The photo's long side as the network sees it.",
)
@common.field_flag("seed", section="Other")
@common.job_flags()
@click.pass_context
def command(ctx: click.Context, **params: Any) -> None:
    """What a layer sees where in one photo (Olah et al., "The Building Blocks of
    Interpretability", Distill 2018): a feature picture for each cell of a grid over the
    photo, neuron groups with their maps, attribution to the top classes, and a cell's
    strongest channels.  Writes a poster PNG, an offline HTML page and JSON.

    \b
      dream explain photo.jpg --layer inception_4d
      dream explain photo.jpg --layer inception_4c --groups 4 --units units/
    """
    from dreamcli.cli import run

    ctx.exit(run(_explain, ctx, params))


def _explain(ctx: click.Context, params: dict[str, Any]) -> int:
    chosen = common.chosen_settings(ctx, params, fields=("seed",))
    spec = one_layer(chosen, params, "an explanation is at", channels=False)
    photo = inputs.one_photo(list(params["inputs"]), "explain")
    if problem := file_problem(photo):
        raise SettingsError(f"{photo} {problem}; give one photo")
    output, into_folder = common.output_path(params["output"])
    path = naming.explain_output(output, into_folder, photo)
    if into_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise SettingsError(f"cannot write {path}: the folder {path.parent} does not exist")
    for written in (path, path.with_suffix(".html"), path.with_suffix(".json")):
        if inputs.same_file(photo, written):
            raise SettingsError(
                f"{written} is the photo; dreamcli never overwrites an input: choose another -o"
            )
    units = Path(params["units"]) if params["units"] else None
    if units is not None and not (units / "units.json").is_file():
        raise SettingsError(f"{units} is not a site made by dream units (no units.json); give its folder")
    options = ExplainOptions(
        photo_size=params["photo_size"],
        grid=params["grid"],
        groups=params["groups"],
        classes=params["classes"],
        cell=params["cell"],
        cell_size=params["cell_size"],
        steps=params["steps"],
        param=params["param"],
        seed=chosen.settings.seeded(steady=True).seed or 0,
    )
    machine = Machine.of(params)
    if machine.kept(path, params["overwrite"]):
        return EXIT_OK
    from dreamcli.jobs.explain import explain
    from dreamcli.jobs.explain_page import write_explanation

    with machine.display() as display:
        loaded = machine.open(chosen.network).loaded
        try:
            made = explain(loaded, spec.name, photo, options, report=display)
            write_explanation(made, path, units)
        except DreamError:
            raise
        except Exception as exc:  # never a traceback: one line, exit 1
            raise DreamError(f"the explanation could not be made: {describe(exc)}") from None
    machine.say(f"Wrote {path}, {path.with_suffix('.html').name} and {path.with_suffix('.json').name}")
    return EXIT_OK
