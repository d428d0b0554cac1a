#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install apmpo into it.
#
# torch==2.13.0 is installed first: on the reference machine that is the CPU build from
# local disk; a looser request could pull a multi-GB CUDA build. Settings:
#   APMPO_EXTRAS        extras of apmpo to install (default: "test")
#   APMPO_INTEGRATIONS  1 (default) also installs TRL and verl's CPU-importable part with
#                       the pins the integration tests were verified with; 0 skips them
#                       (their tests then skip, saying why)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH="torch==${APMPO_TORCH_VERSION:-2.13.0}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  "${PIP[@]}" "$TORCH"
fi
"${PIP[@]}" -e ".[${APMPO_EXTRAS:-test}]" "$TORCH"
if [ "${APMPO_INTEGRATIONS:-1}" = "1" ] && ! .venv/bin/python -c "import trl, verl, ray, hydra" >/dev/null 2>&1; then
  "${PIP[@]}" "trl==1.16.0" "$TORCH"
  "${PIP[@]}" --no-deps "verl==0.9.1"
  "${PIP[@]}" "$TORCH" "ray==2.60.0" "tensordict==0.10.0" "omegaconf==2.3.1" "hydra-core==1.3.8" \
    codetiming orjson peft "TransferQueue==0.1.11" torchdata fastapi uvicorn cachetools opentelemetry-api aiohttp
fi
