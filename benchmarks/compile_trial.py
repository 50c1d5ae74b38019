"""Is torch.compile worth it?  One dream step, eager against compiled, with and without a CUDA graph.

    python benchmarks/compile_trial.py [--height 768 --width 1024]
    python benchmarks/compile_trial.py --dynamic     # one compile for every octave size?

Times one fwd+bwd dream step (GoogLeNet up to inception_4c, bf16 autocast on
CUDA and fp32 on the CPU, random weights, the product's cuDNN settings) four
ways: eager, eager recorded as a CUDA graph, compiled (inductor, default mode),
and compiled then recorded; and prints the compile time.  By default the
compile is for one shape, which every new octave size pays again; with
``--dynamic`` it is compiled once with symbolic sizes and timed at each octave
size of the classic run (4 octaves x 1.4), so the first call at each size
shows whether it compiled again.  Graph rows need CUDA.  An experiment for
issue 5, not a product path.
"""

from __future__ import annotations

import argparse
import time

import torch
from profile_step import ms_per_call  # this folder is on sys.path when a script here runs

from dreamcli import models
from dreamcli.engine.devices import choose_kernels, select_device
from dreamcli.engine.steps import octave_sizes
from dreamcli.models.prepare import prepare_for_dreaming


def step_fn(trunk, device: torch.device):
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def run(image: torch.Tensor) -> torch.Tensor:
        image = image.detach().requires_grad_(True)
        with torch.autocast(device.type, dtype, enabled=dtype != torch.float32, cache_enabled=False):
            loss = trunk(image).float().pow(2).mean()
        (grad,) = torch.autograd.grad(loss, image)
        return grad

    return run


def graphed(fn, image):
    static_out = [None]

    def body():
        static_out[0] = fn(image)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def first_call_s(fn, image, device: torch.device) -> float:
    start = time.perf_counter()
    fn(image)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--dynamic", action="store_true", help="compile once for all octave sizes")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    device = select_device(args.device)
    choose_kernels(device, reproducible=False)
    net = prepare_for_dreaming(models.get().build(), device)
    trunk = net[: list(dict(net.named_children())).index("inception4c") + 1]
    eager = step_fn(trunk, device)
    compiled = step_fn(torch.compile(trunk, dynamic=args.dynamic), device)
    gpu = device.type == "cuda"
    sizes = octave_sizes(args.height, args.width, 4, 1.4) if args.dynamic else [(args.height, args.width)]
    print(f"{device.type}, torch {torch.__version__}, {'dynamic' if args.dynamic else 'static'} compile")
    print(f"ms per step (median of 3 runs of {args.repeats}); first call = compile time at that size")
    print("| size | first call s | eager | eager + graph | compiled | compiled + graph | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for height, width in sizes:
        image = torch.rand(1, 3, height, width, device=device)
        first = first_call_s(compiled, image, device)
        diff = float((compiled(image) - eager(image)).abs().max())
        times = [ms_per_call(lambda i=image: eager(i), device, args.repeats)]
        times.append(ms_per_call(graphed(eager, image), device, args.repeats) if gpu else None)
        times.append(ms_per_call(lambda i=image: compiled(i), device, args.repeats))
        times.append(ms_per_call(graphed(compiled, image), device, args.repeats) if gpu else None)
        cells = " | ".join("-" if t is None else f"{t:.2f}" for t in times)
        print(f"| {width}x{height} | {first:.1f} | {cells} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
