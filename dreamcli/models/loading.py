"""Loading a network for dreaming: its weights (a local file or the download), built, prepared."""

from __future__ import annotations

import warnings
from pathlib import Path

from dreamcli.events import Loading, Report, ignore
from dreamcli.models.base import Loaded, Network
from dreamcli.models.prepare import prepare_for_dreaming
from dreamcli.models.weights import WeightsNote, collecting, download, load_file


def load(
    network: Network,
    *,
    weights: str | Path | None = None,
    device="cpu",
    progress: bool = True,
    report: Report = ignore,
) -> Loaded:
    """``network`` with its pretrained weights, from ``weights`` (a local file) or the download;
    ``report`` hears ``Loading`` first (the CLI shows it while the seconds pass).

    A file that fits in part (a fine-tuned head) is loaded in part: one ``Note:`` line
    (a ``WeightsNote`` warning) says what was left out, and ``Loaded.resolve`` refuses a
    layer that needs it.
    """
    source = (
        f"weights file {Path(weights).name}" if weights is not None else f"{network.weights.label} weights"
    )
    report(Loading(network.title, source))
    with collecting() as left_out:
        if weights is not None:
            state = load_file(weights)
            module = network.build(state, source=f"weights file {weights}")
            label = f"({Path(weights).name})"
        else:
            fetch = getattr(network, "pretrained", None)  # a library that downloads its own weights (timm)
            state = (fetch() if fetch else None) or download(network, progress)
            module = network.build(state, source="the downloaded weights")
            label = network.weights.label
    for part in left_out:
        warnings.warn(part.note(), WeightsNote, stacklevel=2)
    return Loaded(network, prepare_for_dreaming(module, device), label, left_out[0] if left_out else None)
