"""Devices, precision and memory: everything ``RunOptions`` is built from.

``run_options`` is what the run layer (``dreamcli.run.session``) calls once per
job: it chooses cuDNN's kernels, resolves ``--precision auto`` and measures the
memory a dream may plan to use on the device ``select_device`` checked.
"""

from __future__ import annotations

import os

import torch

from dreamcli.errors import SettingsError, brief
from dreamcli.run_options import DEFAULT_PRECISION, MEMORY_SHARE, RunOptions

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; explicit names are checked."""
    name = name.strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingsError(f"unknown device {brief(name)}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(f"device {brief(name)}: CUDA is not available here; use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise SettingsError(
                f"device {brief(name)}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif device.type == "mps" and not mps_ok:
        raise SettingsError(
            f"device {brief(name)}: Apple MPS is not available here; use --device cpu or auto"
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise SettingsError(f"unknown device {brief(name)}; use auto, cpu, cuda, cuda:N or mps")
    return device


def choose_kernels(device: torch.device, reproducible: bool) -> None:
    """cuDNN: repeatable kernels when a seed was given, and never autotuning.

    Same seed, same file needs deterministic kernels.  ``cudnn.benchmark`` is
    left off: on an H100 its timing of candidates for every new shape (each
    octave, each probe) made the first dream of a 512x512 image take ~30 s
    against a 0.06 s loop (benchmarks/README.md).
    """
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = reproducible
        torch.backends.cudnn.benchmark = False


def choose_precision(name: str, device: torch.device) -> str:
    """The one place ``auto`` is resolved: bf16 on CUDA and on CPUs with AMX, fp32 elsewhere.

    bf16 was shown on a real-weights network (EfficientNet-Lite0, two photos) to
    give the same look and an objective gain within 3 % of fp32 (see
    benchmarks/README.md).  On a CPU it pays only where the matrix units do bf16
    in hardware (Intel AMX): on our CI machines' AVX512-BF16 without AMX it was
    40 % slower than fp32.  GPUs without bf16 get fp16, which passed the same check.
    """
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and _has_amx():
        return "bf16"
    return "fp32"


def _has_amx() -> bool:
    # torch.cpu._is_amx_tile_supported is private (torch >= 2.3); without it, assume no AMX.
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def free_memory(device: torch.device) -> int | None:
    """Bytes this process can still use on ``device`` (None when unknown).

    On CUDA this honours a cap set with ``torch.cuda.set_per_process_memory_fraction``:
    the card may have 140 GB free while this process may use only 8.
    """
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # torch >= 2.8
        if fraction is not None:
            index = device.index if device.index is not None else torch.cuda.current_device()
            capped = fraction(index) * total - torch.cuda.memory_allocated(device)
            free = min(free, max(0, capped))
        return int(free)
    if device.type == "cpu":
        return _free_ram()
    return None


def _free_ram() -> int | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget(device: torch.device) -> float | None:
    """The bytes a dream may plan to use on ``device``: a share of what is free now."""
    free = free_memory(device)
    return None if free is None else MEMORY_SHARE * free


def run_options(
    device: torch.device | str = "auto",
    precision: str = DEFAULT_PRECISION,
    tile_size: int | None = None,
    reproducible: bool = False,
    graphs: bool = True,
) -> RunOptions:
    """The one ``RunOptions`` of a job on ``device`` (a name is checked first): kernels chosen,
    precision resolved, memory measured."""
    chosen = device if isinstance(device, torch.device) else select_device(device)
    choose_kernels(chosen, reproducible)
    return RunOptions(
        precision=choose_precision(precision, chosen),
        tile_size=tile_size,
        memory=memory_budget(chosen),
        graphs=graphs,
    )
