"""The default command: ``dream INPUT... [flags]`` dreams files, folders and stdin.

Every input is dreamed alike: a plain DeepDream, or per file guided by a
picture (``--guide``), toward classes (``--class``), with a heat map beside it
(``--heatmap``).  The flags become a request for the run layer (``run.recipe``:
defaults < preset < typed flags), the plan (inputs, output names, skips) is made
before torch loads, and the session's pipeline runs here or on a Ray cluster.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click

from dreamcli import presets as preset_files
from dreamcli.cli import common
from dreamcli.cli.common import Machine, flag
from dreamcli.cli.dream_flags import many_files, per_file
from dreamcli.errors import EXIT_OK
from dreamcli.events import Summary
from dreamcli.io.formats import VIDEO_INPUTS, file_problem
from dreamcli.jobs import inputs, naming
from dreamcli.run.recipe import Resolved


class DreamCommand(common.SectionedCommand):
    """``dream``'s help: two usage lines, and the commands after the options."""

    shown = ("Dreaming", "Other")

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("dream", "[OPTIONS] [INPUT]...")
        formatter.write("       dream COMMAND [ARGS]...  (dream COMMAND --help)\n")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        from dreamcli.cli import COMMANDS

        with formatter.section("Commands"):
            formatter.write_dl([(name, line) for name, (_, line) in COMMANDS.items()])


@click.command(cls=DreamCommand, name="dream", context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, metavar="[INPUT]...", type=click.Path())
@common.output_flag("Output file; a folder (end it with /) for several inputs.")
@common.dream_flags()
@common.quiet_flag()
@flag("--sample", section="Dreaming", is_flag=True, help="Dream the sample photo that ships with dreamcli.")
@flag(
    "--overwrite", section="Many files", is_flag=True, help="Replace existing outputs (default: skip them)."
)
@per_file
@common.model_flags()
@common.tile_flag()
@many_files
@flag(
    "--show-settings",
    section="Other",
    is_flag=True,
    help="Print the final settings as preset YAML, then exit.",
)
@common.version_flag()
@common.help_all_flag()
@click.pass_context
def command(ctx: click.Context, **params: Any) -> None:
    """DeepDream of images, folders, or - (paths on stdin), on GoogLeNet or another --model.

    \b
      dream photo.jpg --layer inception_4c
      dream photo.jpg --preset eyes -o eyes.png
      dream photos/ -r -o dreams/ --preset preview
    """
    from dreamcli.cli import run

    ctx.exit(run(_dream, ctx, params))


def _dream(ctx: click.Context, params: dict[str, Any]) -> int:
    chosen = common.chosen_settings(ctx, params)  # --class, --mask, --accentuate too: the run layer's
    settings = chosen.settings
    if params["show_settings"]:
        return _show_settings(ctx, chosen, params)
    guide: Path | None = params["guide"]
    if guide is not None and (problem := file_problem(guide)):
        raise click.BadParameter(f"{guide} {problem}; give a picture to dream of", param_hint="--guide")
    if params["ray_workers"] is not None and not params["ray"]:
        raise click.BadParameter(
            "sets the workers of --ray; add --ray or leave it out", param_hint="--ray-workers"
        )
    first = chosen.network.layers.resolve(chosen.settings.layers[0].name)
    if params["heatmap"] and first == chosen.network.logits:
        raise click.BadParameter(
            "shows where a layer fires, and a class has no place; add a --layer before the class "
            "(the map is of the first layer)",
            param_hint="--heatmap",
        )
    if params["ray"] and (params["guide"] or params["heatmap"] or settings.mask or settings.accentuate):
        raise click.BadParameter(
            "dreams plain or class dreams; --guide, --mask, --accentuate and --heatmap run here",
            param_hint="--ray",
        )
    names = list(params["inputs"])
    _refuse_misplaced_commands(names)
    machine = Machine.of(params)
    if params["sample"]:
        names.append(common.sample_path())
        if params["output"] is None and len(names) == 1:  # not beside the photo, inside the package
            params = {**params, "output": "./"}
        machine.say(f"Dreaming the {common.SAMPLE_CREDIT}")
    if not names:
        raise click.UsageError("give an image, a folder, or - (try 'dream --sample' or 'dream --help')")
    if params["ray"]:
        from dreamcli.run.cluster import require_ray

        require_ray()  # without the extra: which command installs it, before any work
    return _batch(chosen, names, params, machine)


def _refuse_misplaced_commands(names: list[str]) -> None:
    """``dream -q zoom a.png`` or ``dream zomm a.png``: a command's name (or a near miss) where a
    file was expected, and no such file: said now, before anything is loaded."""
    import difflib

    from dreamcli.cli import COMMANDS

    for position, name in enumerate(names):
        if os.path.lexists(name) or name == "-":
            continue
        if name in COMMANDS:
            raise click.UsageError(
                f"{name} is a command, and no file of that name is here: write the command first, "
                f"then its options (dream {name} ...); a file named {name} is ./{name}"
            )
        close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.75) if position == 0 else []
        if close:
            raise click.UsageError(f"{name} does not exist; did you mean the command 'dream {close[0]}'?")


def _show_settings(ctx: click.Context, chosen: Resolved, params: dict[str, Any]) -> int:
    description = chosen.preset.description if chosen.preset else ""
    changed = [name for name in common.DREAM_FIELDS + common.PICTURE_FIELDS if common.typed(ctx, name)]
    changed += ["layers"] if params["layers"] or params["classes"] else []
    if chosen.preset and changed:
        description += f" (Changed from the {chosen.preset.name} preset: {', '.join(changed)}.)"
    click.echo(preset_files.dump(chosen.settings, description.strip()), nl=False)
    return EXIT_OK


def _batch(chosen: Resolved, names: list[str], params: dict[str, Any], machine: Machine) -> int:
    output, into_folder = common.output_path(params["output"])
    found = inputs.collect_inputs(
        common.paths_from_stdin(names, params["null"]), params["recursive"], dreams=params["include_dreams"]
    )
    settings = chosen.settings
    template = params["template"] or naming.default_template(
        guided=params["guide"] is not None,
        classes=params["classes"],
        channels=any(spec.channels for spec in settings.layers),
    )
    jobs = naming.plan_jobs(
        found, output, template, settings, chosen.preset_name, into_folder, reads={"guide": params["guide"]}
    )
    if params["shard"]:
        jobs = inputs.take_shard(jobs, *inputs.parse_shard(params["shard"]))
    display = machine.display(many=len(jobs) > 1, as_json=params["as_json"])
    machine.check_device()
    if not params["overwrite"]:  # outputs of other settings: kept, the new dreams named beside them
        from dreamcli.events import Note
        from dreamcli.jobs import reruns

        default_name = params["template"] is None
        jobs, notes = reruns.settle(
            jobs, settings, chosen.preset_name, lambda job: default_name and job.output != output
        )
        for note in notes:
            display(Note(note))
    todo, settled = naming.triage(jobs, params["overwrite"])
    for job in todo:
        if job.source.suffix.lower() in VIDEO_INPUTS:
            raise click.UsageError(f"{job.source} is a video: dream it with 'dream video {job.source}'")
    if not todo:  # nothing to dream: say so at once, without loading torch or the model
        summary = Summary()
        for result in settled:
            summary.add(result)
            display(result)
        return display.finish(summary, found)
    if params["ray"]:
        return _ray(chosen, jobs, found, display, params, machine)
    from dreamcli.jobs import masks

    mask = masks.mask_of(settings)  # unreadable, all black, or unlike an input: said before loading
    if mask is not None:
        masks.check_inputs(mask, [job.source for job in todo])
    session = machine.open(chosen.network, reproducible=chosen.reproducible, report=display)
    summary = session.dream_files(
        jobs,
        settings,
        preset=chosen.preset_name,
        guide=params["guide"],
        heatmap=params["heatmap"],
        report=display,
        overwrite=params["overwrite"],
        batch_size=params["batch_size"],
        mask=mask,
    )
    display.close()
    return display.finish(summary, found)


def _ray(chosen: Resolved, jobs, found, display, params: dict[str, Any], machine: Machine) -> int:
    """The batch on a Ray cluster: the same plan, names, skips, errors and summary."""
    from dreamcli.run import cluster

    runtime = machine.runtime
    if params["ray"] == "local":  # the workers run here: what they would fail on fails now, once
        runtime.options(reproducible=False)  # a device this machine lacks
        if runtime.weights is None:  # the download, into the cache the workers read
            from dreamcli.models.weights import download

            download(chosen.network, progress=not machine.quiet)
    ray = cluster.connect(params["ray"])
    threads = 0  # on a cluster: the CPUs Ray gives each worker
    if params["ray"] == "local":
        # This machine's threads shared by its workers: one worker uses what a local run
        # would (so pixels match a local run), two split them rather than fight over them.
        import torch

        threads = max(1, torch.get_num_threads() // (params["ray_workers"] or 1))
    if runtime.weights is not None:  # a path every worker can read
        runtime = dataclasses.replace(runtime, weights=str(Path(runtime.weights).resolve()))
    spec = cluster.WorkerSpec(
        runtime=dataclasses.asdict(runtime),
        settings=chosen.settings.to_dict(),
        preset=chosen.preset_name,
        reproducible=chosen.reproducible,
        overwrite=params["overwrite"],
        batch_size=params["batch_size"],
        threads=threads,
    )
    summary = cluster.run(ray, jobs, spec, params["ray_workers"], report=display)
    display.close()
    return display.finish(summary, found)
