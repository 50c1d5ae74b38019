"""``dream zoom [PHOTO]``: dream, zoom in a little, dream again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dreamcli.cli import common
from dreamcli.cli.common import Machine, Span, default_of, flag
from dreamcli.io.formats import check_output_path, refuse_frames_over, refuse_inputs
from dreamcli.jobs import naming
from dreamcli.jobs.requests import ZoomRequest


def _check_pan(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float]:
    try:
        dx, dy = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value[:40]!r}: write DX,DY in pixels, e.g. 2,0") from None
    return dx, dy


@click.command(name="zoom", cls=common.SectionedCommand, context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, metavar="[PHOTO]", type=click.Path())
@flag(
    "--frames",
    span=Span(int, 1, 100_000),
    default=default_of(ZoomRequest, "frames"),
    show_default=True,
    help="Frames to dream.",
)
@flag(
    "--scale",
    span=Span(float, 0.5, 2.0),
    default=default_of(ZoomRequest, "scale"),
    show_default=True,
    help="Zoom per frame (1.05 = 5 % closer).",
)
@flag(
    "--rotate",
    span=Span(float, -45, 45),
    default=default_of(ZoomRequest, "rotate"),
    show_default=True,
    help="Degrees to rotate per frame.",
)
@flag(
    "--pan",
    metavar="DX,DY",
    default="{:g},{:g}".format(*default_of(ZoomRequest, "pan")),
    show_default=True,
    callback=_check_pan,
    help="Pixels to pan per frame.",
)
@flag(
    "--fps",
    span=Span(float, 1, 120),
    default=default_of(ZoomRequest, "fps"),
    show_default=True,
    help="Frames per second.",
)
@flag(
    "--size",
    metavar="WxH",
    callback=common.check_size,
    help="Size of a zoom from noise (no PHOTO).  [default: {}x{}]".format(*default_of(ZoomRequest, "size")),
)
@common.output_flag(
    "gif, webp, mp4, or a folder (no extension) of PNG frames.  [default: PHOTO_zoom.gif]", section="Other"
)
@common.dream_job_flags(sample="Zoom into the sample photo that ships with dreamcli.")
@click.pass_context
def command(ctx: click.Context, **params: Any) -> None:
    """Infinite zoom: dream, zoom in a little, dream again, --frames times. Without PHOTO it
    starts from the 2015 notebook's near-grey noise.

    \b
      dream zoom photo.jpg --frames 120 -o zoom.mp4 --iterations 5 --octaves 2
      dream zoom --frames 200 --layer inception_4c -o frames/
    """
    from dreamcli.cli import run

    ctx.exit(run(_zoom, ctx, params))


def _zoom(ctx: click.Context, params: dict[str, Any]) -> int:
    chosen = common.chosen_settings(ctx, params)
    names = list(params["inputs"])
    machine = Machine.of(params)
    if params["sample"]:
        names.append(common.sample_path())
        machine.say(f"Dreaming the {common.SAMPLE_CREDIT}")
    if len(names) > 1:
        raise click.UsageError(f"dream zoom takes one PHOTO, or none to start from noise; got {len(names)}")
    photo = Path(names[0]) if names else None
    if photo is not None and params["size"] is not None:
        raise click.BadParameter(
            "sets the size of a zoom from noise; a photo keeps its own (--max-size)", param_hint="--size"
        )
    if photo is None and common.typed(ctx, "max_size"):
        raise click.BadParameter("shrinks a photo; a zoom from noise takes --size", param_hint="--max-size")
    output, into_folder = common.output_path(params["output"])
    check_output_path(params["output"], Path(params["output"] or "."))
    path = naming.zoom_output(output, into_folder, photo, here=params["sample"])
    check_output_path(params["output"], path)
    read = [("photo", photo), ("preset", chosen.preset.path if chosen.preset else None)]
    if path.suffix == "":
        refuse_frames_over(path, params["frames"], read)
    else:
        refuse_inputs(path, read)
    if machine.kept(path, params["overwrite"]):
        return 0
    from dreamcli.jobs.animations import run_zoom

    def job(loaded, options, metadata, display) -> None:
        request = ZoomRequest(
            chosen.settings,
            path,
            photo,
            frames=params["frames"],
            scale=params["scale"],
            rotate=params["rotate"],
            pan=params["pan"],
            fps=params["fps"],
            size=params["size"] or default_of(ZoomRequest, "size"),
            metadata=metadata,
        )
        run_zoom(loaded, request, options, display)

    machine.work(chosen, job)
    machine.say(f"Wrote {path} ({params['frames']} frames)")
    return 0
