"""Presets: named dream styles stored as YAML files, one style per file.

A preset's keys are the settings' names (see ``dreamcli.config``) plus
``description``.  Built-in presets ship in the package; a user's own presets
live in folders that the caller names (the per-user config folder and
``$DREAMCLI_PRESETS``), and a user preset wins over a built-in of the same name.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dreamcli import models
from dreamcli.config import RETIRED, Settings
from dreamcli.errors import SettingsError, brief, describe
from dreamcli.io.formats import IMAGE_EXTENSIONS
from dreamcli.io.metadata import read_metadata

ENV_VAR = "DREAMCLI_PRESETS"
SUFFIXES = (".yaml", ".yml")
# A preset name is a plain file stem: it can never climb out of a presets folder.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A preset is a few lines; a larger file is a mistake (or a YAML bomb), refused before it is parsed.
MAX_BYTES = 64 * 1024
MAX_NAME = 100  # characters of a preset name read from a picture


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    origin: str  # "built-in", or the label of the user folder it came from
    description: str
    values: dict[str, Any]  # the validated keys the file sets (not the defaults)
    notes: tuple[str, ...] = ()  # what the user should hear about the file (a retired key)

    def apply(self, base: Settings | None = None) -> Settings:
        return Settings.from_mapping(self.values, base)


def builtin_folder() -> Path:
    """The presets shipped with dreamcli.

    A wheel carries the top-level ``presets/`` as ``dreamcli/builtin_presets``
    (see pyproject.toml); an editable install runs from the source tree, where
    ``presets/`` sits beside the package.
    """
    packaged = Path(__file__).with_name("builtin_presets")
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "presets"


def _candidates(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in SUFFIXES and path.is_file() and NAME_RE.match(path.stem):
            found.setdefault(path.stem, path)
    return found


def search_path(user_folders: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """(label, folder) pairs, highest priority first; built-ins come last."""
    return [*user_folders, ("built-in", builtin_folder())]


def available(folders: list[tuple[str, Path]]) -> dict[str, list[tuple[str, Path]]]:
    """Each preset name -> the (label, path) pairs that define it, the winner first."""
    names: dict[str, list[tuple[str, Path]]] = {}
    for label, folder in folders:
        for name, path in _candidates(folder).items():
            names.setdefault(name, []).append((label, path))
    return dict(sorted(names.items()))


def find(name_or_path: str, folders: list[tuple[str, Path]]) -> Preset:
    """A preset by name (searched in ``folders``), by the path of a YAML file, or by the path
    of a picture dreamcli made (its recorded settings)."""
    if Path(name_or_path).suffix.lower() in IMAGE_EXTENSIONS:
        return from_picture(Path(name_or_path))
    # Only a .yaml/.yml path is read as a file, so a name like ../../etc/passwd is refused.
    if name_or_path.endswith(SUFFIXES):
        path = Path(name_or_path)
        if path.is_dir():
            raise SettingsError(f"preset file {path} is a folder; give a .yaml file inside it")
        if not path.is_file():
            raise SettingsError(f"preset file {path} does not exist; give a .yaml file or a preset name")
        return load(path, "file")
    if not NAME_RE.match(name_or_path):
        raise SettingsError(
            f"preset name {brief(name_or_path)} is not valid: a name has letters, digits, '-', '_' and '.' "
            "and no folders; to use a file, give its path ending in .yaml"
        )
    known = available(folders)
    if name_or_path not in known:
        close = difflib.get_close_matches(name_or_path, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "run 'dream list presets' to see them"
        raise SettingsError(f"unknown preset {brief(name_or_path)}: {hint}")
    label, path = known[name_or_path][0]
    return load(path, label)


def load(path: Path, origin: str = "file") -> Preset:
    """Read and validate one preset file; every error names the file and the key."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise SettingsError(
                f"{path}: a preset file is at most {MAX_BYTES // 1024} KiB; this is not a preset"
            )
        data = yaml.safe_load(raw.decode("utf-8"))
    except RecursionError:
        raise SettingsError(f"{path}: nested too deeply; a preset maps keys to plain values") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or describe(exc)
        raise SettingsError(
            f"{path}: not valid YAML{where} ({problem[:120]}); only plain keys and values are allowed"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot be read ({describe(exc)[:120]})") from None
    except (ValueError, TypeError, OverflowError) as exc:  # PyYAML's own constructors (a date, an int)
        raise SettingsError(
            f"{path}: not valid YAML ({describe(exc)[:120]}); only plain keys and values are allowed"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: a preset is a mapping of keys to values, like 'octaves: 4'")
    values = {str(k): v for k, v in data.items()}
    description = values.pop("description", "")
    if not isinstance(description, str):
        raise SettingsError(f"{path}: description: expected text, got {brief(description)}")
    try:
        Settings.from_mapping(values)
        if "model" in values:
            models.get(values["model"])
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}") from None
    # A retired key never changed a picture, so it is dropped, not refused (saved presets hold it);
    # a file is the user's to edit, so it is named.  A picture's metadata drops it silently.
    notes = tuple(
        f"{path}: key {key!r} is ignored, as it never changed a dream (the real one is "
        f"{RETIRED[key]}); delete it from the file to silence this"
        for key in values
        if key in RETIRED
    )
    return Preset(path.stem, path, origin, description.strip(), values, notes)


def from_picture(path: Path) -> Preset:
    """The settings a dreamcli picture recorded, as a preset: ``--preset dream.png`` reproduces it."""
    if not path.is_file():
        raise SettingsError(f"preset picture {path} does not exist; give a picture dreamcli made")
    metadata = read_metadata(path)
    if metadata is None:
        raise SettingsError(f"{path} holds no dreamcli settings; give a picture dreamcli made, or a preset")
    # Everything read back from a picture is checked like a typed flag: the file may be hostile.
    try:
        recorded = Settings.from_mapping(metadata["settings"])
        models.get(recorded.model)
    except SettingsError as exc:
        raise SettingsError(f"{path}: its recorded settings are not valid here ({exc})") from None
    name = metadata.get("preset")
    if not isinstance(name, str) or not _plain_name(name):  # {preset} of --name takes it
        name = path.stem if _plain_name(path.stem) else "picture"
    return Preset(name, path, "picture", f"the settings of {path.name}", dict(metadata["settings"]))


def _plain_name(name: Any) -> bool:
    """A preset name as ``find`` takes one: no folders, no ``..``, not too long for a file name."""
    return isinstance(name, str) and len(name) <= MAX_NAME and NAME_RE.match(name) is not None


def dump(settings: Settings, description: str = "") -> str:
    """The full settings as a preset file, ready to be saved and edited."""
    data: dict[str, Any] = {"description": description} if description else {}
    data.update(settings.to_dict())
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
