#!/usr/bin/env bash
# The GPU check: one prepared script for a CUDA machine, done within ~8 minutes. It prints
#   1. the CUDA-marked tests (pytest -m gpu);
#   2. `cnnlab demo --device cuda`;
#   3. a 4-job study sharing one GPU (examples/bn_and_depth.yaml's quick profile, on digits);
#   4. the `gpu` profile of examples/cifar10_fast.yaml over 5 seeds: mean test accuracy and
#      mean training seconds per run (targets on one H200: >= 94.0% in <= 5 s; moonshot < 2.6 s).
# Usage (from the repository root): bash benchmarks/gpu_check.sh [DATA_DIR]
# DATA_DIR holds cifar10-jpg.tar (default ../shared/data); without it step 4 is skipped and
# says so. It runs cnnlab from this checkout (PYTHONPATH), with the machine's own torch.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DATA_DIR=${1:-../shared/data}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

step "1. CUDA-marked tests"
timeout 120 $PY -m pytest -q -p no:cacheprovider -m gpu tests || echo "gpu tests: FAILED (exit $?)"

step "2. cnnlab demo --device cuda"
timeout 90 $PY -m cnnlab demo --device cuda --out "$OUT/demo" --quiet || echo "demo: FAILED (exit $?)"

step "3. a 4-job study sharing one GPU"
cat > "$OUT/study.yaml" <<YAML
name: gpu_share
base:
  data: {dataset: digits}
  model: {name: small_cnn}
  train: {epochs: 3, batch_size: 64, device: cuda}
grid: {optim.lr: [0.02, 0.05]}
seeds: 2
YAML
timeout 150 $PY -m cnnlab study "$OUT/study.yaml" --out "$OUT/studies" --jobs 4 || echo "study: FAILED (exit $?)"

step "4. examples/cifar10_fast.yaml --profile gpu over 5 seeds"
if [ ! -f "$DATA_DIR/cifar10-jpg.tar" ]; then
  echo "skipped: $DATA_DIR/cifar10-jpg.tar not found (pass the folder that holds it)"
  exit 0
fi
for seed in 0 1 2 3 4; do
  timeout 120 $PY -m cnnlab train examples/cifar10_fast.yaml --profile gpu --data-dir "$DATA_DIR" \
    --out "$OUT/fast" --name "seed$seed" --set "train.seed=$seed" --quiet --no-plots \
    || echo "seed $seed: FAILED (exit $?)"
done
$PY - "$OUT/fast" <<'PYEOF'
import json, statistics, sys
from pathlib import Path
results = [json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("seed*/v1/result.json"))]
done = [r for r in results if r.get("status") == "completed" and r.get("test_acc") is not None]
if not done:
    print("fast gpu profile: no completed run")
else:
    accs = [r["test_acc"] for r in done]
    print(f"fast gpu profile: {len(done)} run(s), test accuracy {100 * statistics.mean(accs):.2f}% mean"
          + (f" ± {100 * statistics.stdev(accs):.2f}" if len(accs) > 1 else "")
          + f", {statistics.mean(r['train_s'] for r in done):.2f} s of training per run (mean), "
          f"device {done[0].get('device')}")
PYEOF
