#!/usr/bin/env bash
# The test command: sets up .venv (see setup_env.sh), checks lint, formatting and types
# (ruff, mypy: configured in pyproject.toml), then runs the default test suite.
# Slow tests are skipped unless APMPO_SLOW=1. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check apmpo tests benchmarks examples
.venv/bin/ruff format --check apmpo
.venv/bin/mypy
MARK="not slow"
if [ "${APMPO_SLOW:-0}" = "1" ]; then MARK=""; fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec .venv/bin/python -m pytest -q ${MARK:+-m "$MARK"} "$@"
