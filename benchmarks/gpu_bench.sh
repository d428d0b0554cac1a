#!/usr/bin/env bash
# The GPU check in one command, run from the repo root on a lent machine (one H100/H200):
#
#     device run: command="bash benchmarks/gpu_bench.sh", carry=[".whl"], timeout_s=600
#
# 1. the `gpu` pytest marker (tests/gpu: shared-prompt vs plain training pass in bf16 with SDPA,
#    activation checkpointing, generate vs training log-probs, the fast sampling engine in fp32 and bf16
#    (greedy = generate, argmax, log-probs vs the training pass, seeded), 2 APMPO steps with the tiny text and
#    vision-language models), at most GPU_TESTS_S seconds (default 180);
# 2. the speed arms of benchmarks/gpu_bench.py (ours with the engine, ours with generate, TRL; bf16) in the
#    time left.
# The whole run stays under 8 minutes (GPU_TOTAL_S, default 470 s). Results and logs go to $OUT
# (set by the GPU runner; default benchmarks/results/gpu-local): gpu_tests.log, gpu_tests.xml,
# gpu_<date>.md/.json, gpu_bench.log, gpu_check.txt (the summary). Copy them to
# benchmarks/results/ afterwards.
#
# .whl/ must hold the wheels from `bash benchmarks/gpu_wheels.sh` (run here first: TRL, datasets,
# pytest, matplotlib, pillow, pydantic, ... that the GPU image lacks). Extra arguments go to gpu_bench.py;
# `--device cpu --shrink` checks the whole script on CPU (the gpu tests then run on CPU too,
# APMPO_GPU_TESTS_DEVICE=cpu), using .venv/bin/python when there is one.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
total_s=${GPU_TOTAL_S:-470}
tests_s=${GPU_TESTS_S:-180}
out_dir="${OUT:-benchmarks/results/gpu-local}"
mkdir -p "$out_dir"
if [ -n "${PYTHON:-}" ]; then py=$PYTHON; elif [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
device=cuda
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --device) device="${args[i + 1]:-cuda}" ;;
        --device=*) device="${args[i]#--device=}" ;;
    esac
done

if compgen -G ".whl/*.whl" > /dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "gpu_bench.sh: installing the carried wheels failed"; exit 1; }
    export PYTHONPATH=/tmp/site
else
    echo "gpu_bench.sh: no .whl/*.whl carried; the tests and the trl arm need pytest, matplotlib, pillow, TRL, datasets"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} APMPO_GPU_TESTS_DEVICE="$device"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$py" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"
    "$py" -c "import trl, datasets; print('trl', trl.__version__, 'datasets', datasets.__version__)" \
        || echo "gpu_bench.sh: TRL not importable; the trl arm will be reported as failed"
} 2>&1 | tee "$out_dir/gpu_env.txt"

# 1. the gpu marker (skips say why, -rs); a hung test cannot eat the speed arms' time
echo "[gpu-check] pytest -m gpu tests/gpu on $device (at most ${tests_s} s)"
timeout "$tests_s" "$py" -m pytest -m gpu tests/gpu -q -rs -p no:cacheprovider --durations=10 \
    --junitxml="$out_dir/gpu_tests.xml" 2>&1 | tee "$out_dir/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}
tests_seconds=$((SECONDS - start))

# 2. the speed arms, in the time left (gpu_bench.py skips the arms that would not fit)
budget=$((total_s - tests_seconds - 15))
if [ "$budget" -lt 60 ]; then
    echo "[gpu-check] skipping the speed arms: ${budget} s left" | tee "$out_dir/gpu_bench.log"
    bench_rc=1
else
    "$py" benchmarks/gpu_bench.py --out "$out_dir/gpu_$(date +%F).md" --budget "$budget" "$@" 2>&1 \
        | tee "$out_dir/gpu_bench.log"
    bench_rc=${PIPESTATUS[0]}
fi
summary="gpu tests: exit ${tests_rc} in ${tests_seconds} s ($(tail -n 1 "$out_dir/gpu_tests.log"))
speed arms: exit ${bench_rc}; whole check: $((SECONDS - start)) s of ${total_s}"
echo "$summary" | tee "$out_dir/gpu_check.txt"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
