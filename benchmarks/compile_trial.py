"""Is torch.compile worth it on the GPU?  One step, eager against compiled, both graph-recorded.

    python benchmarks/compile_trial.py [--height 768 --width 1024]

Times one fwd+bwd dream step (GoogLeNet up to inception_4c, bf16 autocast,
random weights) four ways: eager, eager recorded as a CUDA graph, compiled
(inductor, default mode), and compiled then recorded; and prints the compile
time, which every new octave size pays again.  An experiment for issue 5, not
a product path.
"""

from __future__ import annotations

import argparse
import time

import torch

from dreamcli.model import googlenet_trunk, prepare_for_dreaming


def step_fn(trunk):
    def run(image: torch.Tensor) -> torch.Tensor:
        image = image.detach().requires_grad_(True)
        with torch.autocast("cuda", torch.bfloat16, cache_enabled=False):
            loss = trunk(image).float().pow(2).mean()
        (grad,) = torch.autograd.grad(loss, image)
        return grad

    return run


def per_call_ms(fn, repeats: int = 50) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeats


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    net = prepare_for_dreaming(googlenet_trunk(), torch.device("cuda"))
    trunk = net[: list(dict(net.named_children())).index("inception4c") + 1]
    image = torch.rand(1, 3, args.height, args.width, device="cuda")
    eager = step_fn(trunk)
    print(f"{args.width}x{args.height}, one step, bf16, ms per step (mean of 50):")
    print(f"  eager            {per_call_ms(lambda: eager(image)):.2f}")
    print(f"  eager + graph    {per_call_ms(graphed(eager, image)):.2f}")
    compiled = step_fn(torch.compile(trunk))
    start = time.perf_counter()
    compiled(image)
    torch.cuda.synchronize()
    print(f"  compile time     {time.perf_counter() - start:.1f} s (first call, this size)", flush=True)
    print(f"  compiled         {per_call_ms(lambda: compiled(image)):.2f}")
    print(f"  compiled + graph {per_call_ms(graphed(compiled, image)):.2f}")


if __name__ == "__main__":
    main()
