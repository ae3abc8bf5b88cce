#!/usr/bin/env bash
# CUDA verification of the training paths (docs/training.md, "Checking a GPU machine").
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on a machine with a GPU
#
# Environment: PYTHON (default: python), HARMONYKIT_PARITY_DIR (the charmnet_step parity
# fixtures; default ../shared/parity/public), ITERS (training run length, default 300),
# QUICK=1 (fewer iterations everywhere). Exits 3 at once when no CUDA device is visible.
# GPU_CHECK_DEVICE=cpu: a dry run of every step on the CPU (narrow model, a few iterations,
# no compile, gloo), so the script itself is tested without a GPU (tests/benchmarks/test_gpu_check_dry_run.py).
# Steps (each prints PASS / FAIL; the script exits non-zero when any failed):
#   1. the CharmNet step-parity test on CUDA, TF32 off (tests/train/test_train_step_parity.py)
#   2. `harmonykit train` of the tiny recipe at full CharmNet width, ITERS iterations,
#      bf16 + channels_last + torch.compile, with checkpoints; losses must stay finite
#   3. kornia batch augmentation on CUDA vs CPU (benchmarks/gpu_check.py kornia)
#   4. a 2-process torchrun run on one GPU: NCCL + SyncBatchNorm, or gloo (CUDA tensors, no
#      SyncBatchNorm) when NCCL refuses two ranks on one GPU (NCCL reports a duplicate GPU)
#   5. throughput: idih256 training images/s at 256², CharmNet ms per iteration at 64 + 64
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HARMONYKIT_DISABLE_PROGRESS=1
export HARMONYKIT_PARITY_DIR=${HARMONYKIT_PARITY_DIR:-$PWD/../shared/parity/public}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
ITERS=${ITERS:-300}
if [ "${QUICK:-0}" = 1 ]; then ITERS=30; TP_ITERS=5; else TP_ITERS=20; fi
# what the full-width run and the throughput step use; the CPU dry run shrinks everything
WIDTH=(--set model.ch=64 --set model.max_channels=512 --set discriminator.width=64 --set style_heads.width=64)
COMPILE=true; BATCH=8; DDP_ITERS=20; TP_ARGS=(--iters "$TP_ITERS")
if [ "$DEVICE" = cpu ]; then
  ITERS=3; COMPILE=false; BATCH=2; DDP_ITERS=2; WIDTH=()
  TP_ARGS=(--iters 1 --warmup 0 --idih-batch 2 --charmnet-batch 2 --configs eager,bf16_cl)
  echo "gpu_check: dry run on the CPU (GPU_CHECK_DEVICE=cpu): the script's steps, not GPU numbers"
elif [ "$DEVICE" != cuda ]; then
  echo "gpu_check: GPU_CHECK_DEVICE=$DEVICE; expected cuda or cpu" >&2; exit 2
fi
OUT=${OUT:-$(mktemp -d -t hk_gpu_check.XXXX)}
mkdir -p "$OUT"

if [ "$DEVICE" = cuda ]; then $PY benchmarks/gpu_check.py preflight || exit 3; fi

declare -a RESULTS=()
FAILED=0
step() {  # step NAME COMMAND...
  local name=$1; shift
  echo; echo "=== $name"
  local t0=$SECONDS
  if "$@"; then RESULTS+=("PASS  $name ($((SECONDS - t0)) s)"); else RESULTS+=("FAIL  $name ($((SECONDS - t0)) s)"); FAILED=1; fi
}

# 1. step parity on CUDA (the test switches TF32 off itself)
if [ -f "$HARMONYKIT_PARITY_DIR/charmnet_step.losses.json" ]; then
  step "step parity on $DEVICE (TF32 off)" env HARMONYKIT_TEST_DEVICE=$DEVICE CUBLAS_WORKSPACE_CONFIG=:4096:8 \
    $PY -m pytest -q -p no:cacheprovider tests/train/test_train_step_parity.py
else
  RESULTS+=("SKIP  step parity: no fixtures at HARMONYKIT_PARITY_DIR=$HARMONYKIT_PARITY_DIR"); FAILED=1
fi

# 2. a full-width CharmNet run, bf16 + channels_last + compile, checkpoint + finite losses
train_run() {
  $PY -m harmonykit train tiny --output-dir "$OUT" --name compiled \
    --set train.device="$DEVICE" --set train.precision=bf16 --set train.channels_last=true --set train.compile=$COMPILE \
    "${WIDTH[@]}" \
    --set train.batch_size=$BATCH --set train.iterations="$ITERS" --set data.synthetic.length=512 \
    --set deterministic=false --set checkpoint.interval=100 --set log.interval=10 || return 1
  $PY - "$OUT/compiled" <<'PYEOF'
import json, math, sys
from pathlib import Path
run = Path(sys.argv[1])
rows = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines() if '"train"' in l]
bad = [(r["iteration"], k, v) for r in rows for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)]
assert (run / "last.pth").is_file(), "no last.pth"
assert not bad, f"non-finite values: {bad[:5]}"
print(f"compiled bf16 run: {rows[-1]['iteration']} iterations, G_total {rows[0]['G_total']:.4g} -> {rows[-1]['G_total']:.4g}, "
      f"{rows[-1]['images_per_s']:.0f} images/s (batch B + B, synthetic data made in the main process)")
PYEOF
}
step "tiny recipe, $ITERS iterations, bf16 + channels_last + compile=$COMPILE" train_run

# 3. kornia augmentation on CUDA
step "kornia augmentation on $DEVICE" $PY benchmarks/gpu_check.py kornia --device "$DEVICE"

# 4. two processes on one GPU
ddp_run() {
  local backend=$1
  HARMONYKIT_DIST_BACKEND=$backend $PY -m torch.distributed.run --standalone --nproc_per_node 2 -m harmonykit train tiny \
    --output-dir "$OUT" --name "ddp_$backend" --set train.device="$DEVICE" --set train.iterations=$DDP_ITERS \
    --set checkpoint.interval=0 --set train.sync_bn=$([ "$backend" = nccl ] && echo true || echo false) \
    > "$OUT/ddp_$backend.log" 2>&1
  local rc=$?
  tail -n 3 "$OUT/ddp_$backend.log"
  return $rc
}
ddp() {
  if ddp_run nccl; then echo "NCCL: 2 ranks on one GPU OK"; return 0; fi
  echo "NCCL refused 2 ranks on one GPU (see $OUT/ddp_nccl.log); trying gloo with CUDA tensors"
  ddp_run gloo
}
if [ "$DEVICE" = cpu ]; then
  step "torchrun 2 processes on the CPU, gloo" ddp_run gloo
elif [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  step "torchrun 2 processes, 2 GPUs, NCCL" ddp_run nccl
else
  step "torchrun 2 processes on one GPU" ddp
fi

# 5. throughput
step "throughput" $PY benchmarks/gpu_check.py throughput --device "$DEVICE" "${TP_ARGS[@]}"

echo; echo "=== summary (run folder $OUT)"
printf '%s\n' "${RESULTS[@]}"
exit $FAILED
