#!/usr/bin/env bash
# What the next CUDA session should measure first, in one run of at most 9 minutes:
#
#   OUT=gpu-logs bash benchmarks/gpu_session.sh
#
# Device time is scarce (15 minutes a session, start-up included), so each part
# has its own time limit and a part that fails or runs out does not stop the
# next one.  The H200 session of 2026-11-26 measured every row issue 5 asked for
# (benchmarks/README.md); what is left is the way to the 40 ms loop: a static
# torch.compile per octave size, recorded as a CUDA graph (a dynamic compile did
# not finish one size in 150 s).  Parts, most wanted first:
#   gpu_check       the GPU paths are right (graphs = eager, bf16, same seed, 4K under 8 GiB)
#   compile_large   compile time and ms per step, compiled + graph, at 1024x768
#   compile_small   the same at the smallest octave, 373x280, where launches dominate
#   bench           the 1024x768 rows, as the baseline measured on the same machine
# Each part's output is also written to $OUT/<part>.txt.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-gpu-logs}
python=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

part() { # part SECONDS NAME ARGS...
    local limit=$1 name=$2
    shift 2
    echo "== $name (at most ${limit} s)"
    timeout "$limit" "$python" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
part 100 gpu_check benchmarks/gpu_check.py
part 150 compile_large benchmarks/compile_trial.py --device cuda --repeats 20
part 120 compile_small benchmarks/compile_trial.py --device cuda --height 280 --width 373 --repeats 20
part 130 bench benchmarks/bench.py --device cuda --only 1024x768
