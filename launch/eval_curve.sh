#!/usr/bin/env bash
# Evaluates a finished run's checkpoints and draws its curves: FVD (I3D, the project's
# protocol), pixel diversity and motion, each against held-out clips, at the given steps
# (default: 0, the middle checkpoint and the last), then `python -m dvd_gan.plot_curves`.
#
#   ./launch/eval_curve.sh WORKDIR [STEP ...]
#   NUM_VIDEOS=256 BATCH_SIZE=16 OUTPUT=WORKDIR/curves.png ./launch/eval_curve.sh WORKDIR 0 600 1200
#
# Step 0 is the run's initial state, recreated from its config. Results go to
# WORKDIR/eval/step_<step>.json (and TensorBoard); the real clips' statistics are cached,
# so only the first evaluation pays for them.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
if [ $# -lt 1 ] || [ ! -f "$1/config.json" ]; then
  echo "usage: $0 WORKDIR [STEP ...]   (WORKDIR must be a dvd_gan.main workdir)" >&2
  exit 2
fi
WORKDIR="$1"; shift
NUM_VIDEOS="${NUM_VIDEOS:-256}"
OUTPUT="${OUTPUT:-$WORKDIR/curves.png}"
steps=("$@")
if [ ${#steps[@]} -eq 0 ]; then
  mapfile -t saved < <(ls -1 "$WORKDIR/checkpoints" | grep -E '^[0-9]+$' | sort -n)
  if [ ${#saved[@]} -eq 0 ]; then
    echo "No checkpoints in $WORKDIR/checkpoints." >&2
    exit 2
  fi
  mapfile -t steps < <(printf '%s\n' 0 "${saved[$(( ${#saved[@]} / 2 ))]}" "${saved[-1]}" | sort -nu)
fi
for step in "${steps[@]}"; do
  echo "== step $step: FVD, diversity and motion of $NUM_VIDEOS EMA videos"
  python -m dvd_gan.evaluate --workdir="$WORKDIR" --step="$step" \
    --metrics=fvd,diversity,motion --num_videos="$NUM_VIDEOS" --batch_size="${BATCH_SIZE:-16}"
done
python -m dvd_gan.plot_curves --workdir="$WORKDIR" --output="$OUTPUT"
