"""Where the classic run's time goes: start-up, each octave's step, each operator.

    python benchmarks/profile_step.py --device cuda        # or cpu; bf16 on CUDA, fp32 on CPU
    python benchmarks/profile_step.py --height 2160 --width 3840 --top 20

Prints three parts (random weights; speed does not depend on them):

1. start-up: seconds to import torch and torchvision, to start the device, and
   to build and prepare GoogLeNet -- what the whole command adds to the loop;
2. per octave size of the classic run (inception_4c, 4 octaves x 1.4): ms per
   eager step, ms per replayed CUDA-graph step (CUDA only) and the kernels one
   step launches (on the CPU: the operators it calls); then their sum over the
   10 iterations against a measured dream loop, so the time outside the steps
   shows;
3. the operators of one full-size eager step, by time on the device.

An instrument for issue 5 (the 40 ms target), not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

SHIFT = (3, 4)  # any jitter: speed does not depend on it
STEP_SIZE = 1.5


def timed(what: str, fn):
    start = time.perf_counter()
    value = fn()
    print(f"  {what:<34} {time.perf_counter() - start:7.2f} s", flush=True)
    return value


def start_up(device_name: str):
    """Import, start the device and load the model, timing each part."""
    print("start-up:")
    timed("import torch", lambda: __import__("torch"))
    timed("import torchvision.models", lambda: __import__("torchvision.models"))
    import torch

    from dreamcli import models
    from dreamcli.engine.devices import select_device
    from dreamcli.models.prepare import prepare_for_dreaming

    device = select_device(device_name)
    timed(f"start {device.type}", lambda: torch.zeros(1, device=device).sum().item())
    net = timed("build GoogLeNet (random weights)", models.get().build)
    net = timed("prepare (fold BN, channels-last)", lambda: prepare_for_dreaming(net, device))
    return device, net


def ms_per_call(fn, device, repeats: int) -> float:
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync()
        samples.append(1000 * (time.perf_counter() - start) / repeats)
    return statistics.median(samples)


def activities(device) -> list:
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def eager_step(capture, image, dtype):
    """One step as ``policy.StepPolicy.step`` runs it untiled, to be called again and again."""
    import torch

    from dreamcli.engine.objectives import Activations
    from dreamcli.engine.steps import step

    def run() -> None:
        with torch.autocast(image.device.type, dtype, enabled=dtype != torch.float32):
            step(capture, image, Activations(["inception4c"]), STEP_SIZE, SHIFT)

    return run


def launches(fn, device) -> int:
    """Kernels (CUDA) or operators (CPU) one call of ``fn`` runs."""
    from torch.autograd import DeviceType
    from torch.profiler import profile

    with profile(activities=activities(device)) as prof:
        fn()
    if device.type == "cuda":
        return sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA)
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)


def per_octave(capture, device, dtype, height, width, repeats: int) -> float:
    """Print each octave's step times; return the graphed (or eager) sum over 10 iterations."""
    import torch

    from dreamcli.config import LayerSpec
    from dreamcli.engine import cuda_graphs as graphs
    from dreamcli.engine.objectives import Activations
    from dreamcli.engine.steps import octave_sizes

    goal = Activations([LayerSpec("inception4c")])
    shift = torch.tensor(SHIFT, device=device)
    total = 0.0
    print("\nper octave size (ms per step):")
    print(f"  size        eager   graphed   {'kernels' if device.type == 'cuda' else 'aten ops'}")
    for size in octave_sizes(height, width, 4, 1.4):
        image = torch.rand(1, 3, *size, device=device)
        eager = eager_step(capture, image, dtype)
        eager_ms = ms_per_call(eager, device, repeats)
        graphed_ms = None
        if graphs.supported(device):
            recorded = graphs.GraphedStep(graphs.StaticStep(capture, goal, STEP_SIZE, image.shape, dtype))
            recorded(image, shift)
            graphed_ms = ms_per_call(lambda r=recorded: r(r.static.image, shift), device, repeats)
        count = launches(eager, device)
        total += 10 * (graphed_ms if graphed_ms is not None else eager_ms)
        graphed_text = f"{graphed_ms:9.2f}" if graphed_ms is not None else "        -"
        print(f"  {size[1]:>4}x{size[0]:<5} {eager_ms:7.2f} {graphed_text}   {count:8d}", flush=True)
    return total


def dream_loop_ms(net, device, precision: str, height: int, width: int) -> float:
    import torch

    from dreamcli.config import Settings
    from dreamcli.engine.octaves import dream
    from dreamcli.run_options import RunOptions

    settings = Settings(layers=["inception4c"], octaves=4, octave_scale=1.4, iterations=10, seed=0)
    image = torch.rand(3, height, width, device=device)
    return ms_per_call(
        lambda: dream(net, image, settings=settings, options=RunOptions(precision=precision)), device, 1
    )


def operators(capture, device, dtype, height: int, width: int, top: int) -> None:
    import torch
    from torch.profiler import profile

    eager = eager_step(capture, torch.rand(1, 3, height, width, device=device), dtype)
    eager()
    with profile(activities=activities(device)) as prof:
        eager()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\noperators of one {width}x{height} eager step, by {key}:")
    print(prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=50))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16 (as the CLI)")
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=10, help="steps per timing sample")
    parser.add_argument("--top", type=int, default=15, help="operators to list")
    args = parser.parse_args()

    device, net = start_up(args.device)
    import torch

    from dreamcli.engine.capture import LayerCapture
    from dreamcli.engine.devices import DTYPES, choose_kernels, choose_precision

    choose_kernels(device, reproducible=False)
    precision = choose_precision(args.precision, device)
    dtype = DTYPES[precision]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{name}, torch {torch.__version__}, {precision}, {torch.get_num_threads()} CPU threads")
    with LayerCapture(net, ["inception4c"]) as capture:
        steps = per_octave(capture, device, dtype, args.height, args.width, args.repeats)
        loop = dream_loop_ms(net, device, precision, args.height, args.width)
        print(f"  10 iterations of each octave's step: {steps:.1f} ms; a measured dream loop: {loop:.1f} ms")
        operators(capture, device, dtype, args.height, args.width, args.top)


if __name__ == "__main__":
    main()
