#!/usr/bin/env bash
# The GPU comparison (issue 6) as one device command, run from the repo root on the lent machine:
#
#     device run: command="bash benchmarks/gpu_bench.sh", carry=[".whl"], timeout_s=600
#
# .whl/ must hold the wheels from `bash benchmarks/gpu_wheels.sh` (run here first). Results go to
# $OUT/gpu_<date>.md (+ .json, + the log); copy them to benchmarks/results/ afterwards. The whole
# run is budgeted to ~7.5 minutes (gpu_bench.py --budget 450); extra arguments go to gpu_bench.py.
set -uo pipefail
cd "$(dirname "$0")/.."
out_dir="${OUT:-benchmarks/results}"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "gpu_bench.sh: installing the carried wheels failed"; exit 1; }
    export PYTHONPATH=/tmp/site
else
    echo "gpu_bench.sh: no .whl/*.whl carried; the trl arm will fail unless TRL and datasets are installed"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"
python3 -c "import trl, datasets; print('trl', trl.__version__, 'datasets', datasets.__version__)" \
    || echo "gpu_bench.sh: TRL not importable; the trl arm will be reported as failed"
python3 benchmarks/gpu_bench.py --out "$out_dir/gpu_$(date +%F).md" "$@" 2>&1 | tee "$out_dir/gpu_bench.log"
