"""The default command's groups of flags: many files (names, batches, shards, Ray) and per file
(classes, guides, masks, accentuation, heat maps); ``cli/dreaming.py`` is the command."""

from __future__ import annotations

from pathlib import Path

import click

from dreamcli.cli.common import Span, flag, together
from dreamcli.config import MAX_PULL, PULL

many_files = together(
    flag(
        "--name",
        "template",
        section="Many files",
        help="Output name: {stem} {ext} {preset} {layer} {channels} {index}; the extension sets the format. "
        "[default: {stem}_dream.png; _guided, _class-NAME, _LAYER-CHANNELS for those dreams]",
    ),
    flag(
        "--batch-size",
        section="Many files",
        span=Span(int, 1, 1024),
        default=1,
        show_default=True,
        help="Dream up to this many same-size images together (faster on a GPU; uses more memory).",
    ),
    flag(
        "-r",
        "--recursive",
        section="Many files",
        is_flag=True,
        help="Walk folders recursively, keeping sub-folders.",
    ),
    flag(
        "--shard", section="Many files", metavar="K/N", help="Dream only the K-th of N shares of the inputs."
    ),
    flag(
        "--json",
        "as_json",
        section="Many files",
        is_flag=True,
        help="Print one JSON line per file on stdout.",
    ),
    flag(
        "-0",
        "--null",
        section="Many files",
        is_flag=True,
        help="With INPUT -: the paths on stdin end with NUL, not newline (find -print0).",
    ),
    flag(
        "--ray",
        section="Many files",
        metavar="auto|local|ADDRESS",
        help="Dream the batch on a Ray cluster: ray start's / RAY_ADDRESS's (auto), a new one here (local), "
        "or a head node's address. Needs: pip install 'dreamcli[ray]'.",
    ),
    flag(
        "--ray-workers",
        section="Many files",
        span=Span(int, 1, 100_000),
        help="Ray workers (with --ray)  [default: one per GPU, else one]",
    ),
    flag(
        "--include-dreams",
        section="Many files",
        is_flag=True,
        help="Also take pictures dreamcli made when walking folders (left out by default).",
    ),
)

per_file = together(
    flag(
        "--class",
        "classes",
        section="Per file",
        multiple=True,
        metavar="NAME|INDEX",
        help="Dream toward a class of the network (e.g. dumbbell, 543); repeat for several.",
    ),
    flag(
        "--guide",
        section="Per file",
        type=click.Path(path_type=Path),
        help="Dream of this picture's features (Google's guided objective).",
    ),
    flag(
        "--mask",
        section="Pictures",
        type=click.Path(path_type=Path),
        help="Dream only where this greyscale picture is white (grey: partly); one mask for every file.",
    ),
    flag(
        "--mask-invert",
        section="Pictures",
        is_flag=True,
        help="Dream where the mask is black instead.",
    ),
    flag(
        "--accentuate",
        section="Per file",
        is_flag=True,
        help="Make the photo more --class/--layer to the network and keep it a photo (Hamblin, Fel et al."
        " 2024); also writes where it changed (_changed).",
    ),
    flag(
        "--pull",
        section="Per file",
        span=Span(float, 0, MAX_PULL),
        help=f"How hard --accentuate holds the picture to the photo [default: {PULL:g}].",
    ),
    flag(
        "--heatmap",
        section="Per file",
        is_flag=True,
        help="Also write where the layer fires on the input (_heatmap).",
    ),
)
