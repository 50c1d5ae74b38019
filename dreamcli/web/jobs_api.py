"""The API of ``dream serve`` under ``/api/``: what may be dreamed, uploads, jobs (dreams, and
the explanations and units of ``inside``), the files each job wrote.

Every input from the page is checked as the CLI checks a typed flag: presets
only by a name on the list (never a path), layers against the network, settings
through the run layer's ``Recipe`` (the CLI's own merge); an upload is decoded with the
CLI's own limits before it is kept, after the page's (``limits``: its pixels, one decode at a
time).  A refusal is one line: ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from dreamcli import __version__
from dreamcli import presets as preset_files
from dreamcli.config import FIELDS, Settings
from dreamcli.errors import DreamError, SettingsError, describe
from dreamcli.io.formats import IMAGE_EXTENSIONS
from dreamcli.jobs.naming import download_name
from dreamcli.run.recipe import Recipe
from dreamcli.web import commands, inside, limits
from dreamcli.web.limits import Refused
from dreamcli.web.work import Job, Upload, Work

MAX_JOB_REQUEST = 64 * 1024  # bytes of JSON a job's request may have
MAX_QUEUED = 100  # jobs waiting at once


def _error(exc: Refused) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


def add_sample(work: Work) -> None:
    """The sample photo that ships with dreamcli, as the upload ``sample``."""
    from dreamcli.io.images import decode_image

    path = Path(str(resources.files("dreamcli.data") / "sample.jpg"))
    width, height = decode_image(path).size
    work.add_upload(Upload("sample", path, "sample.jpg", width, height, sample=True))


async def options(request: Request) -> Response:
    """What the page offers: presets, layers, the settings' ranges and defaults, the limits."""
    config = request.app.state.config
    session = config.session
    network = session.network
    found = []
    for name, where in preset_files.available(config.folders()).items():
        try:
            preset = preset_files.load(where[0][1], where[0][0])
        except SettingsError:
            continue  # a broken user preset is not offered; the CLI says what is wrong with it
        if preset.values.get("model", network.name) == network.name:
            found.append({"name": name, "description": preset.description})
    fields = []
    for name in commands.EDITABLE:
        spec = FIELDS[name]
        default = getattr(Settings(), name)
        fields.append({"name": name, "kind": spec.kind.__name__, "low": spec.low, "high": spec.high,
                       "help": spec.help, "default": default})  # fmt: skip
    return JSONResponse(
        {
            "version": __version__,
            "model": session.loaded.label,
            "device": session.device,
            "precision": session.options.precision,
            "default_layer": network.default_layer,
            "layers": [row[0] for row in network.layers.rows()],
            "presets": found,
            "fields": fields,
            "max_size": config.max_size,
            "max_bytes": config.max_bytes,
            "max_pixels": config.max_pixels,
            "explain": inside.explain_fields(),
            "units": inside.unit_fields(),
        }
    )


async def upload(request: Request) -> Response:
    """The photo is the request's body; ``X-Filename`` (percent-encoded UTF-8, as a header
    carries only ASCII) names it for display and the command line only."""
    config, work, state = request.app.state.config, request.app.state.work, request.app.state
    name = upload_name(request.headers.get("x-filename", "upload"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > config.max_bytes:
        return _error(Refused(413, _too_big(config.max_bytes)))
    if state.uploading >= limits.MAX_UPLOADING:
        return _error(
            Refused(429, f"{limits.MAX_UPLOADING} uploads are arriving already; send it after them")
        )
    suffix = Path(name).suffix.lower()
    key, path = work.upload_path(suffix if suffix in IMAGE_EXTENSIONS else "")
    state.uploading += 1
    try:
        with open(path, "xb") as handle:
            too_big = _too_big(config.max_bytes)
            async for chunk in limits.body(request, config.max_bytes, too_big, config.body_timeout):
                handle.write(chunk)
            size = handle.tell()
        if size == 0:
            raise Refused(400, "the upload is empty; send a photo")
        width, height = await asyncio.to_thread(_decoded_size, path, name, config)
    except Refused as exc:
        path.unlink(missing_ok=True)
        return _error(exc)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        state.uploading -= 1
    up = Upload(key, path, name, width, height)
    work.add_upload(up)
    return JSONResponse(up.public(), status_code=201)


def _decoded_size(path: Path, name: str, config: Any) -> tuple[int, int]:
    """Decode the upload as the CLI would (its pixel limits, damaged files, odd modes), once
    the page's own pixel limit allows it, one decode at a time; its size."""
    from PIL import Image

    from dreamcli.io.images import decode_image

    limits.check_pixels(path, name, config.max_size, config.max_pixels)
    try:
        with limits.decoding():
            decode_image(path, config.max_size)
        with Image.open(path) as img:
            return img.size
    except DreamError as exc:
        raise Refused(400, str(exc).replace(str(path), name)) from None
    except Exception as exc:
        raise Refused(400, f"cannot read {name}: {describe(exc)}") from None


def upload_name(raw: str) -> str:
    """The photo's own name, exactly (the command line quotes it as a shell needs): only a
    folder part is dropped, and a name no file can have becomes ``upload``."""
    name = unquote(raw, errors="replace").rsplit("/", 1)[-1]
    if name in ("", ".", "..") or "\0" in name or len(name.encode("utf-8", "replace")) > 255:
        return "upload" + Path(name.replace("\0", "")).suffix[:10]
    return name


def _too_big(limit: int) -> str:
    return f"the upload is over {limit // (1024 * 1024)} MB; send a smaller photo"


async def jobs(request: Request) -> Response:
    return JSONResponse({"jobs": request.app.state.work.listing()})


async def submit(request: Request) -> Response:
    """A job from ``{"upload", "preset", "layers", "settings", "replaces"}``; queued at once."""
    return await _queue(request, _job)


async def explanations(request: Request) -> Response:
    """An explanation from ``{"upload", "layer", "options"}`` (``inside``); queued at once."""
    return await _queue(request, inside.explanation_job)


async def units(request: Request) -> Response:
    """A unit's page from ``{"layer", "channel", "options", "explanation"}``; queued at once."""
    return await _queue(request, inside.unit_job)


async def _queue(request: Request, make: Any) -> Response:
    try:
        job = make(request.app.state.config, request.app.state.work, await _json(request))
    except Refused as exc:
        return _error(exc)
    except SettingsError as exc:
        return _error(Refused(400, str(exc)))
    work = request.app.state.work
    if work.waiting() >= MAX_QUEUED:
        return _error(Refused(429, f"{MAX_QUEUED} jobs are waiting already; cancel some or wait"))
    work.submit(job)
    return JSONResponse(job.public(), status_code=201)


async def _json(request: Request) -> dict[str, Any]:
    body = b""
    too_big = f"a job's request is at most {MAX_JOB_REQUEST} bytes"
    async for chunk in limits.body(request, MAX_JOB_REQUEST, too_big, request.app.state.config.body_timeout):
        body += chunk
    if limits.json_depth(body) > limits.MAX_BODY_DEPTH:
        raise Refused(
            400, f"a job's JSON nests at most {limits.MAX_BODY_DEPTH} deep; send the job as the page does"
        )
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "send the job as a JSON object") from None
    if not isinstance(data, dict):
        raise Refused(400, "send the job as a JSON object")
    return data


def _job(config: Any, work: Work, data: dict[str, Any]) -> Job:
    unknown = set(data) - {"upload", "preset", "layers", "settings", "replaces"}
    if unknown:
        raise Refused(400, f"unknown key {sorted(unknown)[0]!r} in the job")
    up = work.uploads.get(str(data.get("upload", "")))
    if up is None:
        raise Refused(404, "no such upload (it may have been forgotten); upload the photo again")
    network = config.session.network
    preset = data.get("preset")
    if preset is not None and (
        not isinstance(preset, str) or preset not in preset_files.available(config.folders())
    ):
        raise Refused(400, f"unknown preset {str(preset)[:40]!r}; pick one from the list")
    overrides = data.get("settings") or {}
    if not isinstance(overrides, dict) or set(overrides) - set(commands.EDITABLE):
        raise Refused(400, f"settings: give only {', '.join(commands.EDITABLE)}")
    layers = data.get("layers") or ()
    recipe = Recipe(network.name, preset, overrides, layers, folders=tuple(config.preset_folders))
    chosen = recipe.load_preset()
    if chosen is not None and chosen.values.get("model", network.name) != network.name:
        raise Refused(
            400, f"preset {preset} is for {chosen.values['model']}; this server runs {network.name}"
        )
    resolved = recipe.resolve()
    settings = resolved.settings
    if max(up.width, up.height) > config.max_size and (settings.max_size or 1 << 30) > config.max_size:
        settings = dataclasses.replace(settings, max_size=config.max_size)  # the server's limit
    settings = settings.seeded()
    label = preset or ", ".join(str(spec) for spec in settings.layers)
    if preset and layers:
        label += " · " + ", ".join(str(spec) for spec in settings.layers)
    download = download_name(up.name, label, settings.seed)
    words = commands.command_line(
        settings, resolved.base, preset, None if up.sample else up.name, download, config.session.runtime
    )
    replaces = data.get("replaces")
    return Job(
        id=secrets.token_hex(6),
        number=work.new_number(),
        upload=up,
        settings=settings,
        preset=preset,
        label=label,
        command=commands.shown(words),
        download=download,
        replaces=str(replaces)[:20] if replaces else None,
    )


def _find(request: Request) -> Job:
    job = request.app.state.work.jobs.get(request.path_params["job"])
    if job is None:
        raise Refused(404, "no such job (it may have been forgotten)")
    return job


async def cancel(request: Request) -> Response:
    try:
        job = _find(request)
    except Refused as exc:
        return _error(exc)
    request.app.state.work.cancel(job)
    return JSONResponse(job.public())


async def preview(request: Request) -> Response:
    """The picture of the last octave done, at that octave's size (once done: the result)."""
    try:
        job = _find(request)
    except Refused as exc:
        return _error(exc)
    if job.picture is None and job.result is not None and job.result.is_file():
        return FileResponse(job.result, media_type="image/png")  # done: the last octave is the result
    if job.picture is None:
        return _error(Refused(404, "no octave of this job has finished yet"))
    return Response(job.picture, media_type="image/png", headers={"Cache-Control": "no-store"})


async def result(request: Request) -> Response:
    """The finished picture: the PNG the CLI writes, its settings inside."""
    try:
        job = _find(request)
    except Refused as exc:
        return _error(exc)
    if job.state != "done" or job.result is None or not job.result.is_file():
        return _error(Refused(404, f"this job is {job.state}; its picture comes when it is done"))
    return FileResponse(job.result, media_type="image/png", filename=job.download)


FILE_TYPES = {".png": "image/png", ".json": "application/json"}


async def file(request: Request) -> Response:
    """A file an explanation or a unit wrote, by a name the job lists (never a path)."""
    try:
        job = _find(request)
    except Refused as exc:
        return _error(exc)
    name = request.path_params["name"]
    path = job.files.get(name) if job.state == "done" else None
    if path is None or not path.is_file():
        return _error(Refused(404, f"this job ({job.state}) has no file {name[:40]!r}"))
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if name == "poster.png":
        return FileResponse(path, media_type="image/png", filename=job.download, headers=headers)
    return FileResponse(path, media_type=FILE_TYPES[path.suffix], headers=headers)


def routes() -> list[Route]:
    return [
        Route("/api/options", options),
        Route("/api/jobs", jobs),
        Route("/api/uploads", upload, methods=["POST"]),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
        Route("/api/jobs/{job}/preview.png", preview),
        Route("/api/jobs/{job}/result.png", result),
        Route("/api/jobs/{job}/files/{name}", file),
        Route("/api/explanations", explanations, methods=["POST"]),
        Route("/api/units", units, methods=["POST"]),
    ]
