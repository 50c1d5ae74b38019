"""The page's "Inside the network": an explanation of one photo at one layer, and a unit's page.

``POST /api/explanations`` ``{"upload", "layer", "options"}`` queues ``jobs.explain.explain``
on the server's one worker; ``POST /api/units`` ``{"layer", "channel", "options",
"explanation"}`` queues ``jobs.units.make_units`` for that one channel over every photo of
this session (``Work.photos``).  A thin adapter: the options are ``ExplainOptions`` and
``UnitsOptions`` built from the request's values (their defaults, their checks: a
``SettingsError`` is the page's one-line 400), the layer is checked against the network (did
you mean), and ``limits`` bounds what one request may cost.  ``jobs_api`` routes the requests
and serves what the jobs write, by the names each job lists (``inside_tasks``).
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
from pathlib import Path
from typing import Any

from dreamcli.config import FIELDS
from dreamcli.jobs.unit_options import ExplainOptions, UnitsOptions
from dreamcli.web import commands, inside_tasks, limits
from dreamcli.web.limits import Refused
from dreamcli.web.work import Job, Upload, Work

EXPLAIN_KEYS = {"upload", "layer", "options"}
UNIT_KEYS = {"layer", "channel", "options", "explanation"}


def explain_fields() -> list[dict[str, Any]]:
    """What the page offers for an explanation: each option's default (the CLI's) and bound."""
    return _fields(ExplainOptions(), commands.EXPLAIN_EDITABLE, limits.EXPLAIN_MOST)


def unit_fields() -> list[dict[str, Any]]:
    return _fields(UnitsOptions(), commands.UNITS_EDITABLE, limits.UNIT_MOST)


def _fields(defaults: Any, names: tuple[str, ...], most: dict[str, int]) -> list[dict[str, Any]]:
    from dreamcli.jobs.unit_options import PICTURE_PARAMS

    out = []
    for name in names:
        value = getattr(defaults, name)
        kind = "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "choice"
        out.append(
            {
                "name": name,
                "kind": kind,
                "default": value,
                "high": most.get(name),
                "choices": list(PICTURE_PARAMS) if name == "param" else None,
            }
        )
    return out


def _options(kind: type, what: str, given: Any, names: tuple[str, ...], most: dict[str, int], **more: Any):
    if given is None:
        given = {}
    if not isinstance(given, dict) or set(given) - set(names):
        raise Refused(400, f"{what} options: give only {', '.join(names)}")
    limits.check_most(what, given, most)
    for name, value in given.items():
        if isinstance(getattr(kind(), name), bool) and not isinstance(value, bool):
            raise Refused(400, f"{what} {name}: expected true or false, got {str(value)[:20]!r}")
    seed, spec = given.get("seed"), FIELDS["seed"]  # the seeds a picture's settings can record
    if isinstance(seed, int) and spec.high is not None and not 0 <= seed <= spec.high:
        raise Refused(400, f"{what} seed: expected a whole number from 0 to {spec.high:.0f}, got {seed}")
    return kind(**given, **more)  # its own checks: a SettingsError names the option and the fix


def _layer(network: Any, layer: Any) -> str:
    """The layer's name as the user gave it, once the network knows it (else: did you mean)."""
    if not isinstance(layer, str) or not layer.strip():
        raise Refused(400, f"give one layer of {network.name}, e.g. {network.default_layer}")
    if "[" in layer:
        raise Refused(400, f"give the layer without channels, e.g. {layer.split('[')[0]}")
    network.layers.resolve(layer)  # unknown: SettingsError with the nearest names
    return layer


def explanation_job(config: Any, work: Work, data: dict[str, Any]) -> Job:
    """An explanation's job from the page's request, checked; not yet queued."""
    _keys(data, EXPLAIN_KEYS, "explanation")
    up = _upload(work, data.get("upload"))
    network = config.session.network
    layer = _layer(network, data.get("layer") or network.default_layer)
    options = _options(
        ExplainOptions, "explain", data.get("options"), commands.EXPLAIN_EDITABLE, limits.EXPLAIN_MOST
    )
    default = ExplainOptions()
    limits.check_work(
        "explain", _explain_work(options), _explain_work(default), "the grid, steps or cell size"
    )
    key = secrets.token_hex(6)
    folder = work.folder / "results" / key
    poster = _stem(up.name) + "_explain.png"
    photo = str(up.path) if up.sample else up.name  # the sample: where it lies on this machine
    words = commands.explain_line(options, layer, photo, poster, network.name, config.session.runtime)
    return Job(
        id=key,
        number=work.new_number(),
        upload=up,
        settings=None,
        preset=None,
        label=f"{layer} · {up.name}",
        command=commands.shown(words),
        download=poster,
        kind="explain",
        task=functools.partial(inside_tasks.explanation, config.session, up, layer, options, folder, poster),
        folder=folder,
        about={"layer": layer, "options": dataclasses.asdict(options)},
    )


def unit_job(config: Any, work: Work, data: dict[str, Any]) -> Job:
    """A unit's job: one channel of one layer, its examples from every photo of this session."""
    _keys(data, UNIT_KEYS, "unit")
    network = config.session.network
    layer = _layer(network, data.get("layer"))
    channel = data.get("channel")
    count = network.layers.channels.get(network.layers.resolve(layer))
    if not isinstance(channel, int) or isinstance(channel, bool) or channel < 0:
        raise Refused(400, f"give the unit's channel as a whole number from 0, got {str(channel)[:20]!r}")
    if count is not None and channel >= count:
        raise Refused(
            400, f"layer {layer!r} has {count} channels (0-{count - 1}); channel {channel} does not exist"
        )
    options = _options(
        UnitsOptions,
        "units",
        data.get("options"),
        commands.UNITS_EDITABLE,
        limits.UNIT_MOST,
        channels=(channel,),
    )
    limits.check_work(
        "units", _unit_work(options), _unit_work(UnitsOptions()), "the steps, size or diverse pictures"
    )
    asked = data.get("explanation")
    origin = work.jobs.get(asked) if isinstance(asked, str) else None
    if asked is not None and (origin is None or origin.kind != "explain"):
        raise Refused(404, "no such explanation (it may have been forgotten); explain the photo again")
    if origin is not None and not origin.upload.sample and origin.upload.id not in work.uploads:
        # the server keeps the last uploads only: this explanation's photo is gone
        raise Refused(404, "the photo of this explanation is no longer kept; upload it again")
    photos = work.photos()
    if origin is not None and origin.upload not in photos:
        photos.append(origin.upload)
    if not photos:
        raise Refused(400, "upload a photo first: a unit's examples come from this session's photos")
    key = secrets.token_hex(6)
    site = work.folder / "units" / inside_tasks.site_name(config.session, layer, options)
    folder = work.folder / "results" / key
    output = f"units_{layer.replace('/', '_')}"
    names = [str(up.path) if up.sample else up.name for up in photos]
    words = commands.units_line(options, layer, names, output, network.name, config.session.runtime)
    return Job(
        id=key,
        number=work.new_number(),
        upload=origin.upload if origin is not None else photos[0],
        settings=None,
        preset=None,
        label=f"{layer} unit {channel}",
        command=commands.shown(words),
        download=output,
        kind="unit",
        task=functools.partial(inside_tasks.unit, config.session, photos, layer, options, site, folder),
        folder=folder,
        photos=tuple(photos),
        about={
            "layer": layer,
            "channel": channel,
            "explanation": origin.id if origin is not None else None,
            "photos": len(photos),
            "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "channels"},
        },
    )


def _explain_work(options: ExplainOptions) -> float:
    """The pictures' work: at most grid x grid cells and the groups, each steps x pixels."""
    return (options.grid**2 + options.groups) * options.steps * options.cell_size**2


def _unit_work(options: UnitsOptions) -> float:
    """The feature, negative and diverse pictures, each steps x pixels."""
    return (2 + options.diverse) * options.steps * options.size**2


def _keys(data: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise Refused(
            400, f"unknown key {sorted(unknown)[0][:40]!r} in the {what}; give {', '.join(sorted(allowed))}"
        )


def _upload(work: Work, key: Any) -> Upload:
    up = work.uploads.get(str(key or ""))
    if up is None:
        raise Refused(404, "no such upload (it may have been forgotten); upload the photo again")
    return up


def _stem(name: str) -> str:
    stem = Path(name).stem or "photo"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).lstrip("-.")[:80] or "photo"
