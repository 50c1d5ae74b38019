#!/usr/bin/env bash
# Everything issue 5 still wants from a CUDA GPU, in one run of at most 9 minutes:
#
#   OUT=gpu-logs bash benchmarks/gpu_session.sh
#
# Device time is scarce (15 minutes a session, start-up included), so each part
# has its own time limit and a part that fails or runs out does not stop the
# next one.  Parts, most wanted first:
#   gpu_check   the GPU paths are right (graphs = eager, bf16, same seed, 4K under 8 GiB)
#   profile     where the 1024x768 loop's time goes: per octave, graphed, kernels per step
#   bench       the missing table rows: 4K, 8K under an 8 GiB cap, 16/64 x 512x512
#   compile     torch.compile with dynamic shapes: one compile for all octave sizes?
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
part 70 profile benchmarks/profile_step.py --device cuda
part 210 bench benchmarks/bench.py --device cuda --only 3840 --only 7680 --only "x 512"
part 150 compile benchmarks/compile_trial.py --device cuda --dynamic --repeats 20
