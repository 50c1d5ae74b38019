"""Weights files: loading them safely, downloading them into torch's cache, fitting them to a network."""

from __future__ import annotations

import contextlib
import contextvars
import io
import itertools
import pickle
import re
import sys
import urllib.error
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dreamcli.errors import WeightsError, brief
from dreamcli.models.base import Network


def load_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a local state dict safely: ``weights_only=True`` refuses pickled code.

    Whatever the file holds besides a mapping of names to dense tensors (``None``, a
    whole pickled model, a list, sparse or quantized tensors) is one ``WeightsError``.
    """
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
        pickled = _pickled_global(exc)
        if pickled is not None:
            raise WeightsError(
                f"weights file {path} cannot be loaded safely: it holds a pickled {pickled[:120]} "
                "(a whole model or code, not only tensors), which dreamcli never runs; save the weights "
                "alone with torch.save(model.state_dict(), FILE)"
            ) from None
        raise WeightsError(
            f"weights file {path} cannot be loaded safely ({_reason(exc)}); "
            "give a state dict saved with torch.save(model.state_dict(), FILE)"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    return dense_tensors(state, f"weights file {path}")


def dense_tensors(state: Any, source: str) -> dict[str, torch.Tensor]:
    """``state`` as a dict of names to dense tensors, or one line saying what it is instead."""
    if not isinstance(state, Mapping):
        what = "nothing (None)" if state is None else f"a {type(state).__name__}"
        raise WeightsError(
            f"{source} holds {what}, not a state dict (a mapping of names to tensors); "
            "save one with torch.save(model.state_dict(), FILE)"
        )
    for key, value in state.items():
        if not isinstance(key, str):
            raise WeightsError(f"{source}: the key {brief(key)} is not a name; give a state dict")
        if not isinstance(value, torch.Tensor):
            raise WeightsError(
                f"{source}: {brief(key)} holds a {type(value).__name__}, not a tensor; give a state dict "
                "(torch.save(model.state_dict(), FILE))"
            )
        if value.layout != torch.strided or value.is_quantized or value.device.type == "meta":
            kind = (
                "a meta tensor (no data)" if value.device.type == "meta" else "a sparse or quantized tensor"
            )
            raise WeightsError(
                f"{source}: {brief(key)} is {kind}; save dense floating-point weights "
                "(tensor.to_dense(), or the float model's state_dict())"
            )
    return dict(state)


def _pickled_global(exc: Exception) -> str | None:
    """The class or function a refused pickle names (``torchvision.models.resnet.ResNet``)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    return found[1] if found else None


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


@dataclass(frozen=True)
class LeftOut:
    """The tensors of a weights file that did not fit its network and were not loaded.

    ``problems``: each key and why (missing, another shape, not in the network);
    ``owners``: the module each would belong to; ``order``: each module's (first
    call, last return) in one forward pass, so that a layer needs every module called
    before it returns.  A dream that needs one is refused (``check``); one that does
    not (a dream on ``layer3`` of a file with a 10-class ``fc``) runs as trained.
    """

    source: str
    title: str
    problems: dict[str, str]
    owners: dict[str, str]
    order: dict[str, tuple[int, int]]

    def needed_by(self, module: str) -> list[str]:
        """The keys left out that ``module``'s output depends on (all of them when unknown)."""
        name = module
        while name not in self.order and name:
            name = name.rpartition(".")[0]  # a module added after fitting (a ViT's grid): its block
        if name not in self.order:
            return _ordered(self.problems)
        end = self.order[name][1]
        order = self.order
        needed = (k for k, owner in self.owners.items() if owner in order and order[owner][0] <= end)
        return _ordered(needed)

    def check(self, module: str, layer: str | None = None) -> None:
        """Refuse a dream on ``module`` (as the user named it: ``layer``) that needs a key left out."""
        keys = self.needed_by(module)
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            named = brief(layer or module, 80).strip("'")
            raise WeightsError(
                f"{self.source} does not fit {self.title} up to layer {named}: "
                f"{keys[0]} {self.problems[keys[0]]}{more}; dream an earlier layer, or give weights "
                "that hold it"
            )

    def note(self) -> str:
        """One line: what was not loaded, and what that means."""
        keys = _ordered(self.problems)
        listed = "; ".join(f"{k} {self.problems[k]}" for k in keys[:2])
        more = f"; and {len(keys) - 2} more" if len(keys) > 2 else ""
        return (
            f"{self.source}: {len(keys)} tensors not loaded ({listed}{more}); the layers before them "
            "dream as trained, a dream that needs them is refused"
        )


class WeightsNote(UserWarning):
    """Said once as a ``Note:`` line: a weights file loaded in part (``LeftOut.note``)."""


_LEFT_OUT: contextvars.ContextVar[list[LeftOut] | None] = contextvars.ContextVar("left_out", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list[LeftOut]]:
    """What ``fit_state_dict`` leaves out while a network is built inside this block."""
    found: list[LeftOut] = []
    token = _LEFT_OUT.set(found)
    try:
        yield found
    finally:
        _LEFT_OUT.reset(token)


def fit_state_dict(
    net: nn.Module,
    state_dict: dict,
    source: str,
    title: str,
    ignored: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> None:
    """Give ``net`` the tensors of ``state_dict`` that fit it (same name, same shape).

    Keys starting with an ``ignored`` prefix are dropped; those with an
    ``optional`` prefix may be missing as a group (e.g. a trunk-only file).  A file
    of which nothing fits is refused, naming the keys; one that fits in part (a
    fine-tuned head) is loaded in part: what did not fit is zeros, guarded (a module
    holding it refuses to run) and reported as a ``LeftOut`` to ``collecting``.
    """
    state_dict = dense_tensors(state_dict, source)
    wanted = {k: v for k, v in state_dict.items() if not k.startswith(tuple(ignored))}
    expected = net.state_dict()
    for prefix in optional:
        if not any(k.startswith(prefix) for k in wanted):
            expected = {k: v for k, v in expected.items() if not k.startswith(prefix)}
    missing = sorted(set(expected) - set(wanted))
    unexpected = sorted(set(wanted) - set(expected))
    shaped = sorted(k for k in set(wanted) & set(expected) if wanted[k].shape != expected[k].shape)
    fitting = {k: v for k, v in wanted.items() if k in expected and k not in shaped}
    if not fitting and expected:
        if shaped and not missing:
            key = shaped[0]
            raise WeightsError(
                f"{source} does not fit {title}: {key} has shape "
                f"{tuple(wanted[key].shape)}, expected {tuple(expected[key].shape)}"
            )
        parts = [f"missing {len(missing)} keys ({_some(missing)})"] if missing else []
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys ({_some(unexpected)})")
        raise WeightsError(f"{source} does not fit {title}: {'; '.join(parts)}")
    loaded = {key: _checked(key, tensor, expected[key].dtype, source) for key, tensor in fitting.items()}
    problems = {key: "is missing" for key in missing}
    problems.update(
        {k: f"has shape {tuple(wanted[k].shape)}, expected {tuple(expected[k].shape)}" for k in shaped}
    )
    problems.update({key: f"is not in {title}" for key in unexpected})
    if problems:
        modules = dict(net.named_modules())
        owners = {key: _owner(key, modules) for key in problems}
        left_out = LeftOut(source, title, problems, owners, call_order(net))
        for key in [*missing, *shaped]:  # zeros where the file has nothing that fits: never used
            loaded[key] = torch.zeros(expected[key].shape, dtype=expected[key].dtype)
        for owner in sorted({owners[key] for key in [*missing, *shaped]}):
            modules[owner].register_forward_pre_hook(_guard(left_out, owner))
        collected = _LEFT_OUT.get()
        if collected is not None:
            collected.append(left_out)
    net.load_state_dict(loaded, strict=False, assign=True)  # checked above; optional keys may be absent


def _ordered(keys: Iterable[str]) -> list[str]:
    """Keys by module, a module's weight first (``fc.weight`` says more than ``fc.bias``)."""
    return sorted(keys, key=lambda k: (k.rpartition(".")[0], not k.endswith(".weight"), k))


def _owner(key: str, modules: dict[str, nn.Module]) -> str:
    """The module that holds ``key``, or for a key the network lacks its nearest ancestor."""
    name = key.rpartition(".")[0]
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def _guard(left_out: LeftOut, owner: str):
    def refuse(_module, _inputs):
        left_out.check(owner)

    return refuse


def call_order(net: nn.Module, sizes: Sequence[int] = (224, 299)) -> dict[str, tuple[int, int]]:
    """Each module's (first call, last return) in one forward pass of ``net`` (on its own device,
    the meta one while it is being built), or where that pass fails (a holder of modules, a
    network that takes other sizes), their order of definition."""
    calls: dict[str, tuple[int, int]] = {}
    clock = itertools.count()
    handles = []
    for name, module in net.named_modules():

        def before(_module, _inputs, name=name):
            calls.setdefault(name, (next(clock), -1))

        def after(_module, _inputs, _output, name=name):
            calls[name] = (calls[name][0], next(clock))

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        device = next(net.parameters()).device
        for side in sizes:
            calls.clear()
            try:
                with torch.no_grad():
                    net(torch.zeros(1, 3, side, side, device=device))
                return calls
            except Exception:  # a holder with no forward, a network that takes other inputs
                continue
    except StopIteration:
        pass
    finally:
        for handle in handles:
            handle.remove()
    names = [name for name, _ in net.named_modules()]
    last = {
        name: max(i for i, other in enumerate(names) if other == name or other.startswith(f"{name}."))
        for name in names
        if name
    }
    return {"": (0, len(names)), **{name: (i, last[name]) for i, name in enumerate(names) if name}}


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
