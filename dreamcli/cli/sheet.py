"""``dream sheet PHOTO``: one photo dreamed per layer, per preset or per channel, on one sheet."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from dreamcli.cli import common
from dreamcli.cli.common import Machine, flag
from dreamcli.config import LayerSpec
from dreamcli.errors import SettingsError
from dreamcli.io.formats import check_output_path, refuse_inputs
from dreamcli.jobs import inputs, naming


@click.command(name="sheet", cls=common.SectionedCommand, context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, metavar="PHOTO", type=click.Path())
@flag(
    "--layers", "sweep", metavar="'LAYER LAYER ...'", help="One dream per layer (spaces or commas between)."
)
@flag("--presets", "preset_list", metavar="'PRESET ...'", help="One dream per preset.")
@flag(
    "--channels",
    metavar="LAYER[CHANNELS]",
    help="One dream per channel, e.g. 'inception_4c[0-63]' (default: the first 64).",
)
@common.output_flag(
    "Output file, or a folder ending with /.  [default: PHOTO_sheet.png beside it]", section="Other"
)
@common.dream_job_flags(sample="Use the sample photo that ships with dreamcli.")
@click.pass_context
def command(ctx: click.Context, **params: Any) -> None:
    """One photo dreamed once per layer, per preset or per channel, on a labelled sheet.

    \b
      dream sheet photo.jpg --layers "conv2/3x3_reduce inception_3b inception_4c inception_5b"
      dream sheet photo.jpg --presets "brushstrokes eyes classic animals" -o styles.png
      dream sheet photo.jpg --channels "inception_4c[0-15]"
    """
    from dreamcli.cli import run

    ctx.exit(run(_sheet, ctx, params))


def _sheet(ctx: click.Context, params: dict[str, Any]) -> int:
    wanted = [key for key in ("sweep", "preset_list", "channels") if params.get(key)]
    if len(wanted) != 1:
        raise click.UsageError("give one of --layers, --presets or --channels")
    if params["layers"] and not params["preset_list"]:
        raise click.BadParameter(
            "a sheet's --layers or --channels choose its layers; --layer only overrides presets' layers",
            param_hint="--layer",
        )
    chosen = common.chosen_settings(ctx, params)
    network, settings = chosen.network, chosen.settings
    machine = Machine.of(params)
    names = list(params["inputs"])
    if params["sample"]:
        names.append(common.sample_path())
        machine.say(f"Dreaming the {common.SAMPLE_CREDIT}")
    photo = inputs.one_photo(names, "sheet")
    output, into_folder = common.output_path(params["output"])
    check_output_path(params["output"], Path(params["output"] or "."))
    path = naming.sheet_output(output, into_folder, photo, here=params["sample"])
    check_output_path(params["output"], path)
    variants: list = []
    sheet_presets: list = []
    channels = None
    if params.get("sweep"):
        for text in params["sweep"].replace(",", " ").split():
            spec = LayerSpec.parse(text)
            common.check_layer(network, spec, "--layers")
            variants.append((str(spec), dataclasses.replace(settings, layers=(spec,))))
    elif params.get("preset_list"):
        typed_values = {
            n: params[n] for n in common.DREAM_FIELDS + common.PICTURE_FIELDS if common.typed(ctx, n)
        }
        for name in params["preset_list"].replace(",", " ").split():
            each = common.recipe(ctx, params, preset=name, model=network.name, values=typed_values)
            with common.as_flags():
                preset = each.load_preset()
            common.say_notes(preset, params)
            sheet_presets += [preset] if preset else []
            model = preset.values.get("model", network.name) if preset else network.name
            if model != network.name:
                raise SettingsError(
                    f"--presets: preset {name} dreams with {model}, the sheet with "
                    f"{network.name}; one sheet takes one model (--model chooses it)"
                )
            with common.as_flags():
                variants.append((name, each.resolve().settings))
    else:
        channels = LayerSpec.parse(params["channels"])
        common.check_layer(network, channels, "--channels")
    if channels is not None:  # the metadata's settings name the layers dreamed
        settings = dataclasses.replace(settings, layers=(channels,))
    elif not params.get("preset_list"):
        settings = dataclasses.replace(settings, layers=tuple(v.layers[0] for _, v in variants))
    read = [("photo", photo), ("preset", chosen.preset.path if chosen.preset else None)]
    refuse_inputs(path, read + [("preset", preset.path) for preset in sheet_presets])
    if machine.kept(path, params["overwrite"]):
        return 0
    from dreamcli.jobs.sheets import SheetRequest, run_sheet

    def job(loaded, options, metadata, display) -> Path:
        request = SheetRequest(photo, settings, path, tuple(variants), channels, metadata=metadata)
        return run_sheet(loaded, request, options, display)

    written = machine.work(chosen, job, many=len(variants) > 1)
    machine.say(f"Wrote {written}")
    return 0
