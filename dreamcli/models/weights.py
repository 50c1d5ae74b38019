"""Weights files: loading them safely, downloading them into torch's cache, fitting them to a network."""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import urllib.error
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dreamcli.errors import WeightsError
from dreamcli.models.base import Network


def load_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a local state dict safely: ``weights_only=True`` refuses pickled code."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol chatter is not the user's problem
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist; check the --weights path") from None
    except IsADirectoryError:
        raise WeightsError(f"weights file {path} is a folder; give the .pth file inside it") from None
    except PermissionError:
        raise WeightsError(f"weights file {path} cannot be read (permission denied)") from None
    except Exception as exc:  # torch raises many types for bad or unsafe files
        raise WeightsError(
            f"weights file {path} cannot be loaded safely ({_reason(exc)}); "
            "give a state dict saved with torch.save(model.state_dict(), FILE)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    return state


def download(network: Network, progress: bool = True) -> dict[str, torch.Tensor]:
    """torch.hub's download path and cache (``$TORCH_HOME/hub/checkpoints``), as torchvision uses.

    The hash prefix in the file name (``googlenet-1378be20.pth``) is checked.
    """
    weights = network.weights
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    # torch.hub prints 'Downloading: "..."' on stdout, which is --json's: it goes to stderr,
    # and nowhere under -q.
    say = contextlib.redirect_stdout(sys.stderr if progress else io.StringIO())
    try:
        with say:
            return torch.hub.load_state_dict_from_url(
                weights.url, progress=progress, check_hash=True, map_location="cpu", weights_only=True
            )
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:  # a damaged file in the cache
        raise WeightsError(
            f"the cached weights {cache / weights.file} cannot be loaded ({_reason(exc)}); delete that file "
            "so that the next run downloads it again, or pass --weights FILE"
        ) from None
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsError(
            f"could not download the {network.title} weights {weights.url} into {cache} ({reason}); "
            "connect to the internet once, or put that file into that folder yourself, or pass --weights FILE"
        ) from None


def fit_state_dict(
    net: nn.Module,
    state_dict: dict,
    source: str,
    title: str,
    ignored: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> None:
    """Give ``net`` the tensors of ``state_dict``, or say which keys or shapes do not fit.

    Keys starting with an ``ignored`` prefix are dropped; those with an
    ``optional`` prefix may be missing as a group (e.g. a trunk-only file).
    """
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise WeightsError(f"{source} is not a state dict of {title} (a dict of tensors)")
    wanted = {k: v for k, v in state_dict.items() if not k.startswith(tuple(ignored))}
    expected = net.state_dict()
    for prefix in optional:
        if not any(k.startswith(prefix) for k in wanted):
            expected = {k: v for k, v in expected.items() if not k.startswith(prefix)}
    missing = sorted(set(expected) - set(wanted))
    unexpected = sorted(set(wanted) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({_some(missing)})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys ({_some(unexpected)})")
        raise WeightsError(f"{source} does not fit {title}: {'; '.join(parts)}")
    for key, tensor in wanted.items():
        if tensor.shape != expected[key].shape:
            raise WeightsError(
                f"{source} does not fit {title}: {key} has shape "
                f"{tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
            )
    wanted = {key: _checked(key, tensor, expected[key].dtype, source) for key, tensor in wanted.items()}
    net.load_state_dict(wanted, strict=False, assign=True)  # checked above; optional keys may be absent


def _checked(key: str, tensor: torch.Tensor, dtype: torch.dtype, source: str) -> torch.Tensor:
    """``tensor`` in the network's ``dtype``: half and bf16 weights become float32; integer
    weights, or NaN and infinity (they dream an all-black picture), are refused by key."""
    if tensor.dtype == dtype:
        converted = tensor
    elif dtype.is_floating_point == tensor.dtype.is_floating_point and not tensor.is_complex():
        converted = tensor.to(dtype)
    else:
        raise WeightsError(
            f"{source}: {key} holds {str(tensor.dtype).removeprefix('torch.')} numbers, expected "
            f"{str(dtype).removeprefix('torch.')}; save the model's own floating-point weights"
        )
    if converted.is_floating_point() and not bool(torch.isfinite(converted).all()):
        raise WeightsError(
            f"{source}: {key} holds NaN or infinite numbers; the file is damaged or was saved "
            "from a diverged training: use other weights"
        )
    return converted


def _reason(exc: Exception) -> str:
    """The error's type and the first line of its message, short enough for one ``Error:`` line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > 160:
        text = text[:160].rsplit(" ", 1)[0] + " …"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
