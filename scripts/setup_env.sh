#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install apmpo into it.
# torch==2.13.0 is installed first: on the reference machine that is the CPU build from
# local disk; a looser request could pull a multi-GB CUDA build. Extras to install are
# taken from $APMPO_EXTRAS (default: "test").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==${APMPO_TORCH_VERSION:-2.13.0}"
fi
EXTRAS=${APMPO_EXTRAS:-test}
.venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
