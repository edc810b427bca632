#!/bin/bash
# Several detector runs at once on one lent GPU: each its own process and batch workers,
# all under one deadline, each run's folder tarred into $OUT (the device tool brings back
# at most 8 files, so at most 8 runs).
#
#   WHEELS=.gpu/whl WORKERS=1 DEADLINE=520 OUT=$OUT bash training/detector/gpu_parallel.sh \
#       'cand11 --seed 11 --source-weight txl-bccd=2 ...' 'ctl11 --seed 11 ...' ...
#
# Each argument is a run: its name, then its train flags. A name starting with "ctl" runs
# at nice 5, so a control never takes CPU from a candidate's batch workers. Needs what
# gpu_budget.sh needs ($BLOODCOUNT_DATA, $BLOODCOUNT_WEIGHTS, Keras as wheels where it is
# missing). A run still going at the deadline is stopped and its tar says so (STOPPED):
# its last saved weights are not a finished run and are not to be used as one.
T0=$(date +%s)
END=$((T0 + ${DEADLINE:-520}))
OUT=${OUT:-var/gpu-parallel}
mkdir -p "$OUT"
RUNS=$(mktemp -d)  # fresh: a folder left by an earlier call must not mix in
# shellcheck source=training/detector/gpu_env.sh
source "$(dirname "$0")/gpu_env.sh"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
declare -A PIDS
for run in "$@"; do
  read -r name flags <<< "$run"
  niceness=0
  [[ $name == ctl* ]] && niceness=5
  mkdir -p "$RUNS/$name"
  # shellcheck disable=SC2086  # the flags are words on purpose
  nice -n $niceness python3 -m training.detector.train --workers "${WORKERS:-1}" --no-export \
    --out "$RUNS/$name" $flags > "$RUNS/$name/train.log" 2>&1 &
  PIDS[$name]=$!
done
while :; do
  alive=0
  for name in "${!PIDS[@]}"; do kill -0 "${PIDS[$name]}" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  if [ "$(date +%s)" -ge "$END" ]; then
    for name in "${!PIDS[@]}"; do
      kill -0 "${PIDS[$name]}" 2>/dev/null && kill "${PIDS[$name]}" && touch "$RUNS/$name/STOPPED"
    done
    echo "deadline: stopped what was still running"
    break
  fi
  sleep 5
done
sleep 2
for name in "${!PIDS[@]}"; do
  echo "== $name: $(tail -1 "$RUNS/$name/train.log")"
  tar -cf "$OUT/$name.tar" -C "$RUNS" "$name"
done
echo "total $(($(date +%s) - T0)) s"
