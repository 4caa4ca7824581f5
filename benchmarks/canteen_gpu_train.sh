#!/usr/bin/env bash
# Train the demo kitchen detector (yolo11n from scratch on the synthetic kitchen set) on a
# GPU machine in one go, then export ONNX, validate per class and measure batched FPS.
#
# Runs from the repository root with PYTHONPATH=. (only numpy, cv2, yaml, torch needed
# besides ultralytics). On the lent GPU box ultralytics is not installed: the wheels in
# .whl/ (ultralytics, ultralytics-thop, ultralytics-platform, polars, polars-runtime-32,
# onnxslim) are installed to /tmp/site first; elsewhere set SKIP_WHEELS=1.
#
# Every step has its own time limit, so a slow step cannot take the later ones with it.
# Settings (env): DEADLINE N_TRAIN N_VAL IMGSZ SEED TIME_H EPOCHS BATCH WORKERS DEVICE CACHE GEN_WORKERS
#                 TRAIN_LIMIT FPS_BATCHES FPS_PRECISIONS FPS_SECONDS PY WORK OUT SKIP_WHEELS
# Results in $OUT: kitchen-yolo11n.pt, kitchen-yolo11n.onnx, log.txt, run.tar.gz
# (results.csv, training plots, val_per_class.csv, fps.json, versions.json, args.yaml).
set -u
OUT=${OUT:-/tmp/canteen-model-out}
WORK=${WORK:-/tmp/kitchen-train}
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
N_TRAIN=${N_TRAIN:-8000}
N_VAL=${N_VAL:-800}
IMGSZ=${IMGSZ:-640}
SEED=${SEED:-0}
TIME_H=${TIME_H:-0.085}
EPOCHS=${EPOCHS:-200}
BATCH=${BATCH:-64}
WORKERS=${WORKERS:-12}
DEVICE=${DEVICE:-0}
CACHE=${CACHE:-ram}
GEN_WORKERS=${GEN_WORKERS:-16}
TRAIN_LIMIT=${TRAIN_LIMIT:-400}
DEADLINE=${DEADLINE:-545}   # seconds from the start: every step's limit is cut to fit
FPS_BATCHES=${FPS_BATCHES:-"1 8 32"}
FPS_PRECISIONS=${FPS_PRECISIONS:-"fp32 fp16"}
FPS_SECONDS=${FPS_SECONDS:-2}
NAME=kitchen-yolo11n

mkdir -p "$OUT" "$WORK/pack"
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - T0 ))s] $*"; }
# limit for a step: at most $1 s, and leave $2 s of the DEADLINE for the steps after it
limit() { local left=$(( DEADLINE - ($(date +%s) - T0) - $2 )); [ "$left" -lt "$1" ] && echo $(( left > 10 ? left : 10 )) || echo "$1"; }

if [ "${SKIP_WHEELS:-0}" != 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
  stamp "installing carried wheels"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 3
  export PYTHONPATH=$SITE:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export YOLO_OFFLINE=1 YOLO_CONFIG_DIR="$WORK/yolo" PYTHONUNBUFFERED=1 MPLBACKEND=Agg

stamp "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
$PY - <<'EOF' > "$WORK/pack/versions.json" || exit 4
import json
from workbench.canteen.train import environment
from workbench.canteen.yolo_env import ensure_yolo_env
ensure_yolo_env()
import ultralytics  # noqa: F401  (fails here, early, if the wheels are wrong)
print(json.dumps(environment(), indent=1))
EOF
cat "$WORK/pack/versions.json"

stamp "rendering the synthetic dataset ($N_TRAIN train + $N_VAL val at $IMGSZ)"
timeout "$(limit 150 330)" $PY -m workbench.canteen.train dataset --out "$WORK/data" --n-train "$N_TRAIN" --n-val "$N_VAL" \
  --imgsz "$IMGSZ" --seed "$SEED" --workers "$GEN_WORKERS" || exit 5
du -sh "$WORK/data"

stamp "training yolo11n.yaml from scratch (time cap ${TIME_H} h)"
timeout "$(limit "$TRAIN_LIMIT" 130)" $PY -m workbench.canteen.train train --data "$WORK/data/data.yaml" --model yolo11n.yaml \
  --epochs "$EPOCHS" --imgsz "$IMGSZ" --batch "$BATCH" --workers "$WORKERS" --device "$DEVICE" --cache "$CACHE" \
  --time-hours "$TIME_H" --out "$WORK/runs" --name "$NAME" --no-val
echo "train exit: $?"
RUN="$WORK/runs/$NAME"
W="$RUN/weights/best.pt"; [ -f "$W" ] || W="$RUN/weights/last.pt"
[ -f "$W" ] || { stamp "no weights"; exit 6; }
cp "$W" "$OUT/$NAME.pt"

stamp "export ONNX"
timeout "$(limit 60 100)" $PY -m workbench.canteen.train export "$OUT/$NAME.pt" --imgsz "$IMGSZ" --out "$OUT/$NAME.onnx"

stamp "validation per class"
timeout "$(limit 60 50)" $PY -m workbench.canteen.train val "$OUT/$NAME.pt" "$WORK/data/data.yaml" --imgsz "$IMGSZ" \
  --device "$DEVICE" --batch 32 --csv "$WORK/pack/val_per_class.csv" --save-dir "$WORK/val"

stamp "batched detection FPS"
timeout "$(limit 80 8)" $PY benchmarks/canteen_gpu_detect.py "$OUT/$NAME.pt" --imgsz "$IMGSZ" --device "$DEVICE" \
  --batches $FPS_BATCHES --precisions $FPS_PRECISIONS --seconds "$FPS_SECONDS" --json "$WORK/pack/fps.json"

stamp "packing"
cp "$RUN"/results.csv "$RUN"/args.yaml "$WORK/pack/" 2>/dev/null
cp "$RUN"/*.png "$RUN"/*.jpg "$WORK/pack/" 2>/dev/null
mkdir -p "$WORK/pack/val"; cp "$WORK"/val/*.png "$WORK"/val/*.jpg "$WORK/pack/val/" 2>/dev/null
tar -czf "$OUT/run.tar.gz" -C "$WORK/pack" .
ls -la "$OUT"
stamp "done"
