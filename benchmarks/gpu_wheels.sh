#!/usr/bin/env bash
# Fetch, on a machine with PyPI access, the wheels the GPU image lacks for benchmarks/gpu_bench.py,
# into .whl/ at the repo root (ignored through .git/info/exclude, never committed).
#
# The lent GPU machines (H100/H200, Python 3.12, no network) have torch, accelerate, tokenizers,
# huggingface-hub, safetensors and pyarrow, but not TRL or datasets; transformers is carried too so
# that the GPU run uses the version the CPU results were taken with. About 15 MB in all.
#
#     bash benchmarks/gpu_wheels.sh          # then: bash benchmarks/gpu_bench.sh on the GPU machine,
#                                            # with .whl named in the device call's carry list
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qxF "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    trl==1.16.0 transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
ls -la .whl
