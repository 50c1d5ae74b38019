"""``dream patch test|make``: adversarial patches (Brown et al., 2017), tested and made."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from dreamcli.cli import common
from dreamcli.cli.common import Machine, Span, default_of, flag
from dreamcli.errors import EXIT_FAILED, EXIT_OK, DreamError, SettingsError, describe
from dreamcli.io.formats import check_output, refuse_inputs, shown
from dreamcli.jobs import inputs
from dreamcli.jobs.requests import MAKE_AREA, PatchOptions

SHEET = "patch_test.png"  # patch test's contact sheet, in the current folder unless -o
PATCH = "patch.png"  # patch make's output unless -o


def _check_area(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    """``MIN-MAX`` or one share -> (low, high), each in (0, 0.5]."""
    if value is None:
        return None
    low, _, high = value.partition("-")
    try:
        shares = (float(low), float(high or low))
    except ValueError:
        raise click.BadParameter(
            f"{value[:40]!r}: write MIN-MAX shares of the area, e.g. 0.05-0.25"
        ) from None
    if not 0 < shares[0] <= shares[1] <= 0.5:
        raise click.BadParameter(f"{value[:40]!r}: shares must be above 0, at most 0.5, MIN <= MAX")
    return shares


def _ranged(decl: str, field: str, span: Span, help: str) -> common.Decorator:
    """A numeric flag whose default is ``PatchOptions``'s."""
    return flag(decl, span=span, default=default_of(PatchOptions, field), show_default=True, help=help)


def _shared(area_default: str) -> common.Decorator:
    """The flags of both subcommands."""
    return common.together(
        click.argument("inputs", nargs=-1, metavar="PHOTOS...", type=click.Path()),
        flag(
            "--target",
            required=True,
            metavar="CLASS",
            help="The class the patch should make the network say.",
        ),
        flag(
            "--area",
            metavar="MIN-MAX",
            default=area_default,
            show_default=True,
            callback=_check_area,
            help="The patch's share of each photo's area.",
        ),
        _ranged("--rotate", "rotate", Span(float, 0, 180), "Turned by up to this many degrees either way."),
        _ranged("--placements", "placements", Span(int, 1, 10_000), "Random placements per photo tested."),
        _ranged(
            "--size",
            "size",
            Span(int, 32, 4096),
            "Each photo's side as the network sees it (short side scaled, centre cropped).",
        ),
        _ranged("--seed", "seed", Span(int, 0, 2**32 - 1), "Same seed, same placements, same result."),
        flag("--json", "as_json", is_flag=True, help="One JSON line per photo and a summary line on stdout."),
        flag("-r", "--recursive", is_flag=True, help="Walk folders recursively."),
        common.job_flags(),
    )


@click.group(name="patch", context_settings={"max_content_width": 100})
def group() -> None:
    """Adversarial patches (Brown et al., 2017): a small picture that, pasted anywhere in a
    photo, makes the network say one class.  Test any picture as a patch, or make one.

    \b
      dream patch test photos/ --patch train.png --target "scuba diver"
      dream patch make photos/ --target toaster -o toaster.png
    """


@group.command(name="test", cls=common.SectionedCommand, context_settings={"max_content_width": 100})
@flag("--patch", required=True, type=click.Path(), help="The picture to paste (any image; alpha is kept).")
@common.output_flag(f"The contact sheet of examples.  [default: {SHEET} here]", section="Other")
@flag("--no-sheet", is_flag=True, help="Write no contact sheet.")
@_shared("0.05-0.25")
@click.pass_context
def test(ctx: click.Context, **params: Any) -> None:
    """Paste a picture into every photo at random places, sizes and rotations (seeded) and
    report how often the network's top-1 becomes the target, with the top-5 before and after.

    \b
      dream patch test photos/ --patch train.png --target "scuba diver"
      dream patch test photos/ --patch noise.png --target toaster --json
    """
    from dreamcli.cli import run

    ctx.exit(run(_test, ctx, params))


@group.command(name="make", cls=common.SectionedCommand, context_settings={"max_content_width": 100})
@common.output_flag(f"The patch picture.  [default: {PATCH}]", section="Other")
@flag(
    "--steps",
    span=Span(int, 1, 100_000),
    default=default_of(PatchOptions, "steps"),
    show_default=True,
    help="Adam steps.",
)
@flag(
    "--batch",
    span=Span(int, 1, 1024),
    default=default_of(PatchOptions, "batch"),
    show_default=True,
    help="Photos, each with its own placement, per step.",
)
@flag(
    "--holdout",
    span=Span(float, 0, 0.9),
    default=default_of(PatchOptions, "holdout"),
    show_default=True,
    help="Share of the photos kept out of training for the report (under 4 photos: new placements only).",
)
@flag(
    "--start",
    metavar="FILE|crop:PHOTO[:x,y,w,h]",
    help="Start from a picture or a photo's crop.  [default: noise]",
)
@flag("--sheet", type=click.Path(), help="Also write a contact sheet of held-out examples.")
@_shared("-".join(f"{v:g}" for v in MAKE_AREA))
@click.pass_context
def make(ctx: click.Context, **params: Any) -> None:
    """Train a patch by gradient ascent on the target's log-probability over random placements,
    sizes and rotations (expectation over transformation), then report its success on held-out
    photos and placements, as patch test does.

    \b
      dream patch make photos/ --target toaster -o toaster.png
      dream patch make photos/ --target "scuba diver" --start crop:train.jpg:40,60,120,120
    """
    from dreamcli.cli import run

    ctx.exit(run(_make, ctx, params))


# ---------------------------------------------------------------------------------------------


def _photos(
    params: dict[str, Any], outputs: list[Path], patch: Path | None = None, reads: tuple = ()
) -> list[Path]:
    """The photos named (folders walked), without the patch itself when it lies among them;
    no output may be one of them or of the other files read (``reads``: (flag, path))."""
    found = inputs.collect_inputs(common.paths_from_stdin(list(params["inputs"]), False), params["recursive"])
    photos = [path for path, _root in found.files if patch is None or not inputs.same_file(path, patch)]
    if not photos:
        raise click.UsageError("give photos, or folders of photos, to paste the patch into")
    for output in outputs:
        check_output(output)
        if not output.parent.is_dir():
            raise SettingsError(f"cannot write {output}: the folder {output.parent} does not exist")
        if any(inputs.same_file(photo, output) for photo in photos):
            raise SettingsError(f"{output} is one of the photos; dreamcli never overwrites an input")
        refuse_inputs(output, reads)
    return photos


def _options(params: dict[str, Any], **extra: Any) -> PatchOptions:
    return PatchOptions(
        target=params["target"],
        size=params["size"],
        area=params["area"],
        rotate=params["rotate"],
        placements=params["placements"],
        seed=params["seed"],
        **extra,
    )


def _class(params: dict[str, Any]) -> None:
    """An unknown class is one line (with suggestions) before the model loads."""
    network = common.network_for(params.get("model"))
    try:
        network.class_index(params["target"])
    except SettingsError as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from None


def _test(ctx: click.Context, params: dict[str, Any]) -> int:
    _class(params)
    sheet = None if params["no_sheet"] else Path(params["output"] or SHEET)
    patch_path = Path(params["patch"])
    photos = _photos(params, [sheet] if sheet else [], patch_path, (("--patch", patch_path),))
    from dreamcli.jobs import patches

    patch, alpha = patches.read_patch(params["patch"])
    options = _options(params)
    machine = Machine.of(params)
    machine.check_device()
    partial = patches.PatchReport([], {})  # what was done, for the table if Ctrl-C comes
    as_json = params["as_json"]

    def line(photo: dict[str, Any]) -> None:  # a --json line per photo as soon as it is scored
        click.echo(json.dumps(patches.json_line(photo), ensure_ascii=True))

    with machine.display(as_json=as_json) as display:
        session = machine.open(common.network_for(params.get("model")))
        loaded, run_options = session.loaded, session.options
        try:
            result = patches.evaluate_patch(
                loaded,
                photos,
                patch,
                params["target"],
                options,
                alpha=alpha,
                precision=run_options.precision,
                report=display,
                on_photo=line if as_json else None,
                result=partial,
            )
        except KeyboardInterrupt:
            display.close()
            if not as_json and partial.photos:
                _table(partial.photos, params)
                click.echo(f"(interrupted after {len(partial.photos)} of {len(photos)} photos)")
            raise
        except DreamError:
            raise
        except Exception as exc:
            raise DreamError(f"the patch could not be tested: {describe(exc)}") from None
    _print(result, params, streamed=as_json)
    if sheet is not None:
        _write_sheet(machine, result, sheet, params["overwrite"], session.metadata(None))
    return EXIT_FAILED if result.skipped else EXIT_OK


def _make(ctx: click.Context, params: dict[str, Any]) -> int:
    _class(params)
    output = Path(params["output"] or PATCH)
    sheet = Path(params["sheet"]) if params["sheet"] else None
    reads = (("--start", _start_file(params["start"])),) if params["start"] else ()
    photos = _photos(params, [output] + ([sheet] if sheet else []), reads=reads)
    machine = Machine.of(params)
    if machine.kept(output, params["overwrite"]):
        return EXIT_OK
    start = _start(params["start"]) if params["start"] else None
    options = _options(params, steps=params["steps"], batch=params["batch"], holdout=params["holdout"])
    from dreamcli.jobs import patch_training

    with machine.display(as_json=params["as_json"]) as display:
        session = machine.open(common.network_for(params.get("model")))
        loaded, run_options = session.loaded, session.options
        try:
            made = patch_training.make_patch(
                loaded,
                photos,
                params["target"],
                options,
                start=start,
                precision=run_options.precision,
                report=display,
                memory=run_options.memory,
            )
            patch_training.write_patch(made, output, session.metadata(None))
        except DreamError:
            raise
        except Exception as exc:
            raise DreamError(f"the patch could not be made: {describe(exc)}") from None
    if made.report.summary["held_out"] == "placements":
        machine.say(
            f"Note: the report is on held-out placements of the {len(made.report.photos)} training photos "
            "only (photos are held out where there are 4 or more and --holdout is above 0)"
        )
    _print(made.report, params)
    machine.say(f"Wrote {shown(output)}")
    if sheet is not None:
        _write_sheet(machine, made.report, sheet, params["overwrite"], session.metadata(None))
    return EXIT_FAILED if made.report.skipped else EXIT_OK


CROP = re.compile(r"^(?P<photo>.+?)(?::(?P<box>\d+,\d+,\d+,\d+))?$")


def _crop_parts(value: str) -> tuple[str, str | None]:
    """``crop:PHOTO[:X,Y,W,H]`` -> (PHOTO, the box or None); a box that is not four whole
    numbers is named as a box, not taken for part of the photo's name."""
    found = CROP.match(value[5:])
    if found is None:
        raise click.BadParameter(
            f"{value[:60]!r}: write crop:PHOTO or crop:PHOTO:X,Y,W,H", param_hint="--start"
        )
    photo, box = found["photo"], found["box"]
    head, _, tail = value[5:].rpartition(":")
    if box is None and head and not Path(photo).exists() and Path(head).is_file():
        raise click.BadParameter(
            f"the box {tail[:40]!r} of {shown(head)} is not X,Y,W,H: write four whole numbers, "
            "e.g. crop:photo.jpg:40,60,120,120",
            param_hint="--start",
        )
    return photo, box


def _start_file(value: str) -> Path:
    """The file ``--start`` reads (the picture, or the photo a crop is taken from)."""
    return Path(_crop_parts(value)[0] if value.startswith("crop:") else value)


def _start(value: str):
    """``--start FILE`` or ``crop:PHOTO[:x,y,w,h]`` (default: the photo's centre square)."""
    from dreamcli.errors import ImageError
    from dreamcli.io.images import read_image

    photo, box = _crop_parts(value) if value.startswith("crop:") else (value, None)
    try:
        rgb = read_image(photo).rgb
    except ImageError as exc:
        raise SettingsError(f"--start: {exc}") from None
    if not value.startswith("crop:"):
        return rgb
    height, width = rgb.shape[-2:]
    if box is None:
        side = min(width, height)
        x, y, w, h = (width - side) // 2, (height - side) // 2, side, side
    else:
        x, y, w, h = (int(v) for v in box.split(","))
    if x + w > width or y + h > height:
        raise SettingsError(
            f"--start: the crop {x},{y},{w},{h} is not inside {shown(photo)} ({width}x{height}): "
            f"X+W at most {width}, Y+H at most {height}"
        )
    if w < 2 or h < 2:
        raise SettingsError(
            f"--start: the crop {x},{y},{w},{h} is {w}x{h}; a patch needs at least 2x2 pixels"
        )
    return rgb[:, y : y + h, x : x + w]


def _print(result: Any, params: dict[str, Any], streamed: bool = False) -> None:
    """The table (or JSON lines; ``streamed``: the photos' lines are out already) on stdout."""
    if params["as_json"]:
        for line in result.lines()[len(result.photos) if streamed else 0 :]:
            click.echo(json.dumps(line, ensure_ascii=True))
        return
    if params["quiet"]:
        return
    _table(result.photos, params)
    s = result.summary
    low, high = s["area"]
    click.echo(
        f"{s['target']}: top-1 in {s['successes']} of {s['placements']} placements "
        f"({100 * s['success_rate']:.1f} %) on {s['photos']} photos; patch {100 * low:g}-{100 * high:g} % "
        f"of the area, ±{s['rotate']:g}°, seed {s['seed']}"
    )


def _table(photos: list[dict[str, Any]], params: dict[str, Any]) -> None:
    """One row per photo: its top-1 before and after, and the placements where it became the target."""
    if params["quiet"]:
        return
    rows = [("photo", "before (top-1)", "after (top-1)", "success")]
    for photo in photos:
        before, after = photo["before"][0], photo["after"][0]
        rows.append(
            (
                shown(Path(photo["path"])),
                f"{before['name'].split(',')[0][:24]} {before['p']:.2f}",
                f"{after['name'].split(',')[0][:24]} {after['p']:.2f}",
                f"{photo['successes']}/{photo['placements']}",
            )
        )
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _write_sheet(machine: Machine, result: Any, sheet: Path, overwrite: bool, metadata: dict) -> None:
    from dreamcli.io.images import write_pil
    from dreamcli.jobs.patches import contact_sheet

    if sheet.exists() and not overwrite:
        from dreamcli.cli.display import skipped

        machine.say(skipped(sheet))
        return
    # Marked as dreamcli's (io.metadata.MARKS): a later run over the same folder leaves it out.
    write_pil(sheet, contact_sheet(result), dict(metadata, patch_sheet=result.summary))
    machine.say(f"Wrote {shown(sheet)}")
