#!/usr/bin/env bash
# Reproduce the shipped lab_statnet.hk_synth weights (harmonykit/weights/lab_statnet_hk_synth.safetensors)
# and its measured quality. CPU only, one thread; about 5 minutes of data preparation and under one
# minute of training on a loaded 2-core machine. Needs apt-get (Debian bookworm) for the photos of
# lomiri-wallpapers-16.04 (sha256-checked against benchmarks/shipped/sources.json).
#
#   bash benchmarks/shipped/reproduce.sh WORKDIR
set -euo pipefail
WORK=${1:?usage: reproduce.sh WORKDIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-python}
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$WORK"
# 1. synthetic composites (seed 0: 4000 train from 12 photos; seed 1: 600 val from 5 held-out photos), 96 x 96
$PY "$ROOT/benchmarks/shipped/prepare_data.py" --out "$WORK/data" --deb-dir "$WORK/deb" --n-train 4000 --n-val 600 --size 96 --seed 0
# 2. training: 3000 AdamW steps, batch 64, lr 2e-3 cosine, weight decay 1e-4, seed 0, one thread;
#    the weights of the best validation step are written (fp16)
$PY "$ROOT/benchmarks/shipped/train_lab_statnet.py" --data "$WORK/data" --out "$WORK/run" --steps 3000 --batch 64 \
    --lr 2e-3 --wd 1e-4 --eval-every 250 --seed 0 --threads 1 --pixels 512
# 3. quality on real / rendered test triplets (HARMONYKIT_REAL_DATA), paired bootstrap 95 % intervals
if [ -n "${HARMONYKIT_REAL_DATA:-}" ]; then
  $PY "$ROOT/benchmarks/shipped/evaluate_shipped.py" --checkpoint "reproduced=lab_statnet:$WORK/run/lab_statnet.safetensors" \
      --model lab_statnet.hk_synth --original --json "$WORK/results.json"
fi
cmp "$WORK/run/lab_statnet.safetensors" "$ROOT/harmonykit/weights/lab_statnet_hk_synth.safetensors" \
  && echo "identical to the shipped weights" || echo "differs from the shipped weights (other torch / BLAS?)"
