"""One short script for a session that has a CUDA GPU: check the GPU paths, then time them.

    python benchmarks/gpu_check.py && python benchmarks/bench.py --device cuda

Checks (random weights; prints one line each, exits 1 on the first failure):
the CUDA dream matches the CPU one in fp32; the CUDA-graph steps match eager
steps and were really recorded and replayed; bf16 autocast dreams upward; the
same seed gives the same picture twice on CUDA; a 4K image under an 8 GiB cap
is tiled rather than running out of memory.
"""

from __future__ import annotations

import sys
import time

import torch

from dreamcli import models
from dreamcli.config import LayerSpec, Settings
from dreamcli.engine.capture import LayerCapture
from dreamcli.engine.devices import choose_kernels, memory_budget
from dreamcli.engine.objectives import objective
from dreamcli.engine.octaves import dream
from dreamcli.engine.step_policy import remembered
from dreamcli.events import Note
from dreamcli.models.prepare import prepare_for_dreaming
from dreamcli.run_options import RunOptions


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)
    if not ok:
        sys.exit(1)


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("no CUDA device here")
    gpu = torch.device("cuda")
    print(torch.cuda.get_device_name(gpu), torch.__version__)
    cpu_net = prepare_for_dreaming(models.get().build(), torch.device("cpu"))
    gpu_net = prepare_for_dreaming(models.get().build(), gpu)
    image = torch.rand(3, 256, 320, generator=torch.Generator().manual_seed(0))
    settings = Settings(layers=["inception4c"], octaves=2, iterations=3, seed=0)

    choose_kernels(gpu, reproducible=True)
    on_cpu = dream(cpu_net, image, settings=settings)
    notes = []
    on_gpu = dream(gpu_net, image, settings=settings, report=notes.append)
    diff = float((on_cpu - on_gpu).abs().mean())
    check("fp32 CUDA (graphs) matches CPU", diff < 0.01, f"(mean |diff| {diff:.4f})")
    messages = [n.message for n in notes if isinstance(n, Note)]
    check("no notes", not messages, str(messages))
    cache = remembered(gpu_net, ["inception4c"], "graphs")
    recorded = [entry.replay is not None and not entry.failed for entry in cache.entries.values()]
    check("each octave recorded", recorded == [True, True], str([e.failed for e in cache.entries.values()]))
    eager = dream(gpu_net, image, settings=settings, options=RunOptions(graphs=False))
    diff = float((eager - on_gpu).abs().max())
    check("graph replays match eager steps", diff < 1e-4, f"(max |diff| {diff:.2e})")
    again = dream(gpu_net, image, settings=settings)
    check("a second graphed dream replays to the same picture", torch.equal(again, on_gpu))

    # Random weights and a noise image rise only a little in six steps (2.84 -> 3.07 on the
    # CPU in fp32), so bf16 is held to fp32's gain, not to a fixed factor.
    spec = [LayerSpec("inception4c")]
    bf16 = dream(gpu_net, image, settings=settings, options=RunOptions(precision="bf16"))
    with LayerCapture(gpu_net, ["inception4c"]) as capture:
        before, fp32_after, after = (
            float(objective(capture(x[None].to(gpu)), spec)) for x in (image, on_gpu, bf16)
        )
    gain, fp32_gain = after - before, fp32_after - before
    check(
        "bf16 dreams upward like fp32",
        gain > 0 and abs(gain - fp32_gain) < 0.05 * fp32_gain,
        f"(gain {gain:.4f} against fp32 {fp32_gain:.4f})",
    )

    again = [dream(gpu_net, image, settings=settings, options=RunOptions(graphs=False)) for _ in range(2)]
    check("same seed, same picture on CUDA", torch.equal(again[0], again[1]))
    choose_kernels(gpu, reproducible=False)

    total = torch.cuda.get_device_properties(gpu).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 8 * 2**30 / total), torch.cuda.current_device())
    big = torch.rand(3, 2160, 3840, generator=torch.Generator().manual_seed(1))
    notes = []
    start = time.perf_counter()
    out = dream(
        gpu_net,
        big,
        settings=Settings(layers=["inception4c"], octaves=4, iterations=2, seed=0),
        report=notes.append,
        options=RunOptions(memory=memory_budget(gpu), precision="bf16"),  # as the CLI: the cap is honoured
    )
    torch.cuda.synchronize(gpu)
    check(
        "4K under an 8 GiB cap",
        out.shape == big.shape,
        f"({time.perf_counter() - start:.2f} s, peak {torch.cuda.max_memory_allocated(gpu) / 2**30:.2f} GiB; "
        f"notes: {sorted({n.message for n in notes if isinstance(n, Note)})})",
    )


if __name__ == "__main__":
    main()
