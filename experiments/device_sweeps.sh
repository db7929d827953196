#!/usr/bin/env bash
# The README's "Beyond the paper" sweeps (issue 14), 3 seeds each, in one command on a
# GPU machine whose Python has JAX with its CUDA plugin:
#
#     OUT=runs/device_sweeps bash experiments/device_sweeps.sh [hidden overlap dp dpsgd]
#
# Each sweep runs its seeds as one vmapped batch (sweep.batched=True) with no checkpoints,
# then writes its summary (and, for the DP sweeps, the privacy-utility-attack figure) and
# packs its folder, without checkpoints, into $OUT/<name>.tar.gz. The same sweeps run on
# the CPU without the two overrides, one run after another. EXTRA adds config overrides
# to every sweep (a smoke test here: EXTRA="--config.fl.rounds=3 --config.sweep.seeds=(0,1)").
set -u -o pipefail
OUT=${OUT:-runs/device_sweeps}
PY=${PY:-python3}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
COMMON="--config.sweep.batched=True --config.checkpoint.every=0"

sweep() {  # name config [overrides...]
  local name=$1 config=$2
  shift 2
  local tic=$SECONDS
  # shellcheck disable=SC2086
  "$PY" experiments/sweep.py --config="configs/$config.py" --workdir="$OUT/$name" \
    $COMMON "$@" $EXTRA >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - tic)) s" | tee -a "$OUT/times.txt"
  if [ "$name" = dp ] || [ "$name" = dpsgd ]; then
    "$PY" experiments/privacy_figure.py --workdir="$OUT/$name" >>"$OUT/$name.log" 2>&1
  fi
  tar --exclude=checkpoints --exclude=batches -czf "$OUT/$name.tar.gz" -C "$OUT" "$name" "$name.log"
  rm -rf "${OUT:?}/$name" "$OUT/$name.log"
}

for what in "${@:-hidden overlap dp dpsgd}"; do
  for name in $what; do
    case $name in
      hidden) sweep hidden demo_hidden ;;
      overlap) sweep overlap demo_overlap ;;
      dp) sweep dp demo_dp ;;
      dpsgd)
        sweep dpsgd demo_dp --config.fl.clip_norm=0 --config.fl.dpsgd_clip=1 \
          "--config.sweep.axes=(('fl.dpsgd_noise_multiplier', (0.0, 0.5, 1.0, 2.0)),)" ;;
      *) echo "unknown sweep: $name (hidden, overlap, dp, dpsgd)" >&2; exit 2 ;;
    esac
  done
done
