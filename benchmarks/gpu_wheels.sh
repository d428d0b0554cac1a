#!/usr/bin/env bash
# Fetch, on a machine with PyPI access, the wheels the GPU image lacks for benchmarks/gpu_bench.sh,
# into .whl/ at the repo root (ignored through .gitignore, never committed).
#
# The lent GPU machines (H100/H200, Python 3.12, no network) have torch, accelerate, tokenizers,
# huggingface-hub, safetensors and pyarrow, but not TRL or datasets (the trl arm), pytest (the gpu
# marker), matplotlib and pillow (the tiny vision-language run draws its geometry diagrams), or
# pydantic and its own dependencies (apmpo's settings);
# transformers is carried too so that the GPU run uses the version the CPU results were taken with.
# About 40 MB in all; the versions are those of the CPU .venv.
#
#     bash benchmarks/gpu_wheels.sh          # then: bash benchmarks/gpu_bench.sh on the GPU machine,
#                                            # with .whl named in the device call's carry list
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    trl==1.16.0 transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
    pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pygments==2.21.0 \
    pillow==13.0.0 matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 kiwisolver==1.5.1 \
    pyparsing==3.3.3 python-dateutil==4.0.0 six==1.17.0 \
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
ls -la .whl
