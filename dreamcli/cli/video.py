"""``dream video CLIP``: dream every frame, carrying the dream from frame to frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dreamcli.cli import common
from dreamcli.cli.common import Machine, Span, default_of, flag
from dreamcli.io.formats import check_output_path, refuse_inputs
from dreamcli.jobs import naming
from dreamcli.jobs.requests import VideoRequest


@click.command(name="video", cls=common.SectionedCommand, context_settings={"max_content_width": 100})
@click.argument("clip", metavar="CLIP", type=click.Path(path_type=Path))
@flag(
    "--blend",
    span=Span(float, 0, 1),
    default=default_of(VideoRequest, "blend"),
    show_default=True,
    help="How much of the previous frame's dream carries into the next.",
)
@flag("--flow", is_flag=True, help="Move the carried dream along the optical flow (OpenCV).")
@common.output_flag(
    "The dreamed MP4, or a folder ending with /.  [default: CLIP_dream.mp4 beside it]", section="Other"
)
@common.dream_job_flags()
@click.pass_context
def command(ctx: click.Context, **params: Any) -> None:
    """Dream every frame of a video (MP4, MOV, MKV, WebM, AVI); the audio is copied. Needs the
    video extra: pip install 'dreamcli[video]'.

    \b
      dream video clip.mp4 -o clip_dream.mp4 --preset subtle --blend 0.6 --flow
    """
    from dreamcli.cli import run

    ctx.exit(run(_video, ctx, params))


def _video(ctx: click.Context, params: dict[str, Any]) -> int:
    chosen = common.chosen_settings(ctx, params)
    source: Path = params["clip"]
    check_output_path(params["output"], Path(params["output"] or "."))
    output = naming.video_output(source, *common.output_path(params["output"]))
    check_output_path(params["output"], output)
    machine = Machine.of(params)
    refuse_inputs(output, [("clip", source), ("preset", chosen.preset.path if chosen.preset else None)])
    if machine.kept(output, params["overwrite"]):
        return 0
    from dreamcli.jobs import animations

    animations.probe_video(source)  # a bad file fails before the model loads

    def job(loaded, options, metadata, display):
        request = VideoRequest(
            chosen.settings, source, output, blend=params["blend"], flow=params["flow"], metadata=metadata
        )
        return animations.run_video(loaded, request, options, display)

    info = machine.work(chosen, job)
    machine.say(f"Wrote {output} ({info.frames} frames at {info.fps:g} fps)")
    return 0
