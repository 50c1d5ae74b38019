"""``dream features``: feature pictures from noise, of a layer, channels or classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dreamcli.cli import common
from dreamcli.cli.common import Machine, flag
from dreamcli.config import MAX_MASK_PATH
from dreamcli.errors import brief
from dreamcli.io.formats import check_output_path, file_problem, refuse_inputs
from dreamcli.jobs import naming
from dreamcli.jobs.requests import PARAMS, FeatureRequest


@click.command(name="features", cls=common.SectionedCommand, context_settings={"max_content_width": 100})
@common.layer_flag(section="Other")
@flag(
    "--class",
    "classes",
    multiple=True,
    metavar="NAME|INDEX",
    help="A class of the network to picture (e.g. goldfish, 1); repeat for several.",
)
@flag(
    "--param",
    type=click.Choice(PARAMS),
    default=common.default_of(FeatureRequest, "param"),
    show_default=True,
    help="fft: a decorrelated spectrum through random transformations (Distill's Feature "
    "Visualization); maco: a photo's spectrum magnitude, only the phase free, random crops (Fel et "
    "al. 2023; best on large modern networks); pixel: the 2015 way, DeepDream's steps from noise.",
)
@flag(
    "--like",
    type=click.Path(path_type=Path),
    metavar="PHOTO",
    help="Match this photo's activations at --layer (feature inversion): what the layer keeps of it.",
)
@flag(
    "--caricature", is_flag=True, help="With --like: exaggerate the photo's activations instead of matching."
)
@flag("--each", is_flag=True, help="One picture per channel, layer or class, on a labelled sheet.")
@flag(
    "--alpha",
    is_flag=True,
    help="Also write the transparency map (where the objective's gradient went) as STEM_alpha.png.",
)
@flag(
    "--size",
    metavar="WxH",
    callback=common.check_size,
    help="Picture size.  [default: 512x512; 224x224 per sheet tile]",
)
@common.output_flag(
    "Output picture, or a folder ending with /.  [default: features_LAYER.png here]", section="Other"
)
@common.preset_flag(section="Other")
@common.field_flag("octaves", section="Other")
@common.field_flag("iterations", section="Other")
@common.field_flag("step_size", section="Other")
@common.field_flag("seed", section="Other")
@common.job_flags()
@click.pass_context
def command(ctx: click.Context, **params: Any) -> None:
    """What a layer, a channel or a class looks like to the network, made from noise.

    fft and maco run OCTAVES x ITERATIONS x 8 Adam steps (320: minutes per picture
    on a CPU; a few steps in, it says how long at its pace); channels rise by their
    mean and classes by their logit, as in the papers.

    \b
      dream features --layer inception_4d --size 768x512
      dream features --layer "inception_4c[0-15]" --each -o channels.png
      dream features --class goldfish --param maco --alpha
    """
    from dreamcli.cli import run

    ctx.exit(run(_features, ctx, params))


def _features(ctx: click.Context, params: dict[str, Any]) -> int:
    if params["alpha"] and params["param"] == "pixel":
        raise click.UsageError("--alpha needs --param fft or maco: pixel pictures have no transparency map")
    if params["caricature"] and params["like"] is None:
        raise click.BadParameter(
            "exaggerates a photo's activations: give the photo with --like", param_hint="--caricature"
        )
    if params["like"] is not None and (params["each"] or params["classes"] or params["param"] == "pixel"):
        raise click.UsageError(
            "--like makes one fft or maco picture of one layer: leave out --each, --class, pixel"
        )
    if params["like"] is not None and (problem := file_problem(params["like"])):
        raise click.BadParameter(f"{params['like']} {problem}; give a photo", param_hint="--like")
    chosen = common.chosen_settings(ctx, params, fields=("octaves", "iterations", "step_size", "seed"))
    settings = chosen.settings  # --class too: the run layer makes it a logits layer
    if chosen.preset is not None and chosen.preset.origin == "picture":
        params = _as_recorded(ctx, params, chosen.preset.path)
    output, into_folder = common.output_path(params["output"])
    check_output_path(params["output"], Path(params["output"] or "."))
    like = "caricature" if params["caricature"] else "inversion" if params["like"] is not None else None
    path = naming.features_output(output, into_folder, settings, params["classes"], chosen.preset_name, like)
    check_output_path(params["output"], path)
    machine = Machine.of(params)
    reads = [("preset", chosen.preset.path if chosen.preset else None), ("--like photo", params["like"])]
    for written in (path, naming.alpha_path(path)) if params["alpha"] else (path,):  # --alpha's map too
        refuse_inputs(written, reads)
    if machine.kept(path, params["overwrite"]):
        return 0
    from dreamcli.jobs.features import run_features

    def job(loaded, options, metadata, display) -> None:
        request = FeatureRequest(
            settings,
            path,
            size=params["size"],
            param=params["param"],
            each=params["each"],
            alpha=params["alpha"],
            metadata=metadata,
            like=params["like"],
            caricature=params["caricature"],
        )
        run_features(loaded, request, options, display)

    machine.work(chosen, job)
    machine.say(f"Wrote {path}")
    return 0


def _as_recorded(ctx: click.Context, params: dict[str, Any], picture: Path) -> dict[str, Any]:
    """``--preset picture.png`` of a feature picture: its --param and --size too, unless typed
    (the settings alone would make a 512x512 fft picture of a 300x200 maco one)."""
    from dreamcli.io.metadata import read_metadata

    recorded = read_metadata(picture) or {}
    params = dict(params)
    if not common.typed(ctx, "param") and recorded.get("features") in PARAMS:
        params["param"] = recorded["features"]
    size = recorded.get("size")
    whole = isinstance(size, list) and len(size) == 2 and all(type(side) is int for side in size)
    if not common.typed(ctx, "size") and whole:  # a hostile picture's size: checked as if typed
        assert isinstance(size, list)
        try:
            params["size"] = common.check_size(ctx, None, f"{size[0]}x{size[1]}")  # type: ignore[arg-type]
        except click.BadParameter as exc:
            raise click.BadParameter(
                f"{picture}: its recorded size {exc.message}", param_hint="--preset"
            ) from None
    like = recorded.get("like")
    if params["like"] is None and isinstance(like, str) and not (params["each"] or params["classes"]):
        usable = bool(like) and len(like) <= MAX_MASK_PATH and "\0" not in like
        problem = file_problem(like) if usable else "is not a path"
        if problem:
            raise click.BadParameter(
                f"{picture} was made --like {brief(like, 80)}, which {problem} here; "
                "give the photo with --like",
                param_hint="--preset",
            )
        params["like"] = Path(like)
        params["caricature"] = params["caricature"] or recorded.get("match") == "caricature"
    return params
