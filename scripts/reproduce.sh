#!/usr/bin/env bash
# The paper's comparison at CPU scale (docs/REPRODUCTION.md): GDC, GDC++, REINFORCE, KL-control
# and f-DPG (JS) on tilt-mini, for a pointwise task (every sample mentions "house") and a
# distributional one (50% female), 3 seeds each, the same 2,560 training samples per run; then
# `tilt compare` writes the table (mean ± std over seeds) and the plots against samples seen.
#
# Usage: scripts/reproduce.sh [RUNS]      (default RUNS: runs/reproduce; about 75 min on 2 cores)
# Environment:
#   SEEDS    seeds to run (default "1 2 3")
#   CONFIGS  config files to run (default: every configs/reproduce/*.toml)
#   TILT     a prebuilt `tilt` binary (default: cargo builds the release one)
#   REPORT   where the table and plots go (default: RUNS/report)
# A run whose directory already has its final evaluation is skipped, and an interrupted one is
# resumed from its checkpoint, so the script can be stopped and started again.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/reproduce}
seeds=${SEEDS:-1 2 3}
report=${REPORT:-$runs/report}
if [[ -z ${TILT:-} ]]; then
  cargo build --release --locked -p tilt-trainer
  TILT=target/release/tilt
fi
configs=${CONFIGS:-$(ls configs/reproduce/*.toml)}

# Seeds outermost: a stopped script leaves every method with the same seeds done.
for seed in $seeds; do
  for config in $configs; do
    name=$(basename "$config" .toml)
    dir=$runs/$name/seed-$seed
    if [[ -f $dir/final/config.json ]]; then
      echo "== $name seed $seed: done already ($dir)"
      continue
    fi
    echo "== $name seed $seed -> $dir ($(date -u +%H:%M:%S))"
    if [[ -d $dir/checkpoints ]] && ls "$dir"/checkpoints/* > /dev/null 2>&1; then
      "$TILT" train --config "$config" --seed "$seed" --output-dir "$dir" --resume "$dir"
    else
      "$TILT" train --config "$config" --seed "$seed" --output-dir "$dir" --overwrite
    fi
  done
done

"$TILT" compare "$runs" --output "$report"
