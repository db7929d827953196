#!/usr/bin/env bash
# The "Beyond the paper" sweeps of docs/results.md, 3 seeds each, in one command on a
# GPU machine whose Python has JAX with its CUDA plugin:
#
#     OUT=runs/device_sweeps bash experiments/device_sweeps.sh [hidden overlap dp dpsgd ascent]
#
# Each sweep runs its seeds as one vmapped batch (sweep.batched=True) with no checkpoints,
# then writes its summary (and, for the DP sweeps, the privacy-utility-attack figure) and
# packs its folder, without checkpoints, into $OUT/<name>.tar.gz. The same sweeps run on
# the CPU without the two overrides, one run after another. EXTRA adds config overrides
# to every sweep (a smoke test here: EXTRA="--config.fl.rounds=3 --config.sweep.seeds=(0,1)").
# `ascent` runs configs/demo_membership.py's honest run for seeds 0-2 and
# studies/ascent_probe.py on each from its round-60 checkpoint, the targets in one
# group and in 10 groups (ASCENT_SEEDS, ASCENT_GROUPS change which), into $OUT/ascent.log.
# Full-size Fashion-MNIST (FASHION_DIR = the folder of the four official IDX
# files, Debian's by default): `fashion_grid` runs configs/fashion_mnist.py's federation
# alone (no generator) at several local-step budgets of about the same compute, 3 seeds
# each; `fashion` is the k = 1, 2, 3, 5 sweep of configs/fashion_mnist.py, 3 seeds, one
# sweep (and archive) per k.
# `select_long` / `select_demo`: the prior and adversarial generator modes with
# gan.select last and own_mmd, 3 seeds, at configs/demo_long.py's budget / the demo's
# (SELECT_MODES changes the modes). `select_patience`: prior with gan.select=own_mmd and
# gan.select_patience in PATIENCES (0, 2, 4), seeds PATIENCE_SEEDS (10-12: chosen on these,
# reported on 0-2), at each budget in PATIENCE_BUDGETS (demo_long = 5x, demo_modes = demo).
# `frontier` / `fashion_frontier`: every membership attack of configs/demo_frontier.py /
# configs/fashion_frontier.py, 3 seeds, with LiRA (online and offline) on LIRA_SHADOWS (16)
# shadow federations; the colluding server watches the last 3 rounds (docs/frontier.md).
set -u -o pipefail
OUT=${OUT:-runs/device_sweeps}
PY=${PY:-python3}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
COMMON="--config.sweep.batched=True --config.checkpoint.every=0"
FASHION="--config.data.data_dir=${FASHION_DIR:-/usr/share/datasets/fashion-mnist}"

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

ascent() {
  local tic=$SECONDS seed groups
  for seed in ${ASCENT_SEEDS:-0 1 2}; do
    "$PY" experiments/run.py --config=configs/demo_membership.py --config.seed=$seed \
      --workdir="$OUT/ascent_seed$seed" >>"$OUT/ascent_runs.log" 2>&1
    for groups in ${ASCENT_GROUPS:-1 10}; do
      echo "seed $seed, groups $groups" >>"$OUT/ascent.log"
      "$PY" studies/ascent_probe.py --run="$OUT/ascent_seed$seed" --seed=$seed \
        --start=60 --gammas=0,1,3 --groups=$groups 2>>"$OUT/ascent_runs.log" |
        grep -v "^I1" >>"$OUT/ascent.log"
    done
    rm -rf "${OUT:?}/ascent_seed$seed"
  done
  echo "ascent: in $((SECONDS - tic)) s" | tee -a "$OUT/times.txt"
}

for what in "${@:-hidden overlap dp dpsgd ascent}"; do
  for name in $what; do
    case $name in
      hidden) sweep hidden demo_hidden ;;
      overlap) sweep overlap demo_overlap ;;
      dp) sweep dp demo_dp ;;
      dpsgd)
        sweep dpsgd demo_dp --config.fl.clip_norm=0 --config.fl.dpsgd_clip=1 \
          "--config.sweep.axes=(('fl.dpsgd_noise_multiplier', (0.0, 0.5, 1.0, 2.0)),)" ;;
      ascent) ascent ;;
      fashion_grid)
        for steps_rounds in ${FASHION_GRID:-20:600 50:300 100:150}; do
          sweep "fashion_steps${steps_rounds%:*}" fashion_mnist $FASHION \
            --config.fl.local_steps="${steps_rounds%:*}" --config.fl.rounds="${steps_rounds#*:}" \
            "--config.attack.attacks=('global_model', 'oracle')" --config.gan.trigger_accuracy=1.0 \
            "--config.sweep.seeds=(0, 1, 2)"
        done ;;
      select_long | select_demo)
        select_config=demo_long
        [ "$name" = select_demo ] && select_config=demo_modes
        sweep "$name" "$select_config" "--config.sweep.gan_modes=(${SELECT_MODES:-'prior', 'adversarial'})" \
          "--config.sweep.axes=(('gan.select', ('last', 'own_mmd')),)" \
          "--config.sweep.seeds=(0, 1, 2)" ;;
      select_patience)
        for budget in ${PATIENCE_BUDGETS:-demo_long demo_modes}; do
          seeds=${PATIENCE_SEEDS:-10, 11, 12}
          sweep "patience_${budget}_seeds${seeds//[^0-9]/_}" "$budget" "--config.sweep.gan_modes=('prior',)" \
            --config.gan.select=own_mmd "--config.sweep.seeds=($seeds)" \
            "--config.sweep.axes=(('gan.select_patience', (${PATIENCES:-0, 2, 4})),)"
        done ;;
      fashion)  # one sweep per k, each packed as it ends; `sweep.py` over their merged
        for k in ${FASHION_KS:-2 1 3 5}; do  # runs/ only summarises (every run is done)
          sweep "fashion_k$k" fashion_mnist $FASHION "--config.sweep.label_counts=($k,)" \
            "--config.sweep.seeds=(0, 1, 2)"
        done ;;
      frontier | fashion_frontier)
        frontier_extra=()
        [ "$name" = fashion_frontier ] && frontier_extra=("$FASHION"
          "--config.attack.attacks=('gan', 'global_model', 'loss_threshold', 'loss_calibrated', 'trajectory', 'gradient_ascent', 'lira', 'lira_offline', 'source_inference', 'fedmia')")
        sweep "$name" "${name/#frontier/demo_frontier}" "${frontier_extra[@]}" \
          --config.attack.lira_shadows="${LIRA_SHADOWS:-16}" "--config.sweep.label_counts=(2,)" \
          "--config.sweep.seeds=(0, 1, 2)" ;;
      *)
        echo "unknown sweep: $name (hidden overlap dp dpsgd ascent fashion_grid fashion select_long select_demo select_patience frontier fashion_frontier)" >&2
        exit 2 ;;
    esac
  done
done
