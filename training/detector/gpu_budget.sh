#!/bin/bash
# Train the detector on a GPU machine lent for a fixed time: calibrate the step rate, then
# size the run to fill the time left, so the cosine schedule ends when the lease does.
#
#   BUDGET=535 BATCH=64 WORKERS=14 OUT=var/gpu-run bash training/detector/gpu_budget.sh [train flags]
#
# Needs, on that machine: Python with JAX (GPU), OpenCV, Pillow, h5py and Keras 3 (no
# TensorFlow); $BLOODCOUNT_DATA holding txl-pbc/train and $BLOODCOUNT_WEIGHTS the ImageNet
# MobileNetV2 file. Where nothing can be installed, copy those two into a git-ignored folder
# of the checkout and bring Keras as wheels (WHEELS=dir: pip-installed into /tmp/site first).
# Writes $OUT/run/model.weights.h5 and train_log.json; export here afterwards with
# `python -m training.detector.export --run $OUT/run`. Used for the H100 run in
# training/README.md (15550 steps x 64 crops in 449 s).
T0=$(date +%s)
END=$((T0 + ${BUDGET:-535}))
OUT=${OUT:-var/gpu-run}
W=${WORKERS:-14}
B=${BATCH:-64}
mkdir -p "$OUT"
# shellcheck source=training/detector/gpu_env.sh
source "$(dirname "$0")/gpu_env.sh"
TRAIN=(python3 -m training.detector.train --batch "$B" --workers "$W" --no-export)

# Calibration: the first 50-step window holds the compile; the second half gives the rate.
timeout 200 "${TRAIN[@]}" --steps "${CAL_STEPS:-300}" --out /tmp/gpu-calibration 2>&1 | tee "$OUT/calibration.log"
STEPS=$(python3 - "$END" <<'PY'
import json, sys, time
log = json.load(open("/tmp/gpu-calibration/train_log.json"))["log"]
half = log[len(log) // 2 - 1]
rate = (log[-1]["seconds"] - half["seconds"]) / (log[-1]["step"] - half["step"])
left = float(sys.argv[1]) - time.time() - log[0]["seconds"] - 40  # compile again, then save
print(max(50, int(left / rate * 0.93) // 50 * 50))
print(f"{rate * 1000:.1f} ms/step; {left:.0f} s left to train", file=sys.stderr)
PY
) || exit 4
echo "training $STEPS steps"
"${TRAIN[@]}" --steps "$STEPS" --out "$OUT/run" "$@" > "$OUT/train.log" 2>&1 &
PID=$!
while kill -0 $PID 2>/dev/null; do
  # The last saved weights (every 500 steps) survive a run that overstays the lease.
  [ "$(date +%s)" -ge $((END + 20)) ] && kill $PID && echo "stopped at the deadline"
  sleep 5
done
tail -3 "$OUT/train.log"
echo "total $(($(date +%s) - T0)) s"
