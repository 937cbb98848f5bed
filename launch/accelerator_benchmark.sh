#!/usr/bin/env bash
# The README's accelerator figures: the benchmark's JSON lines, in bfloat16 on the one
# accelerator JAX sees, each run under a time limit, into OUTDIR/NAME.json (and NAME.log).
#
#   ./launch/accelerator_benchmark.sh OUTDIR [NAME ...]     # default: all, in this order
#
#   12x64    the 64²x12 train step            (configs/kinetics600.py:12x64)
#   48x128   the paper's largest train step   (configs/kinetics600.py:48x128)
#   sample   two 48-frame 64² videos from G   (the paper: under 150 ms on a TPU core)
#   profile  the 64²x12 step under jax.profiler (op kinds in the JSON; trace in /tmp)
#
# PER_DEVICE_BATCH (default 8) sets the train steps' batch. Runs with the python3 on PATH
# with dvd-gan importable; it needs no data. Compiles are cached in JAX_COMPILATION_CACHE_DIR
# (default /tmp/dvd_gan_jax_cache), so a second run of a config skips most of its compile.
set -uo pipefail
out="${1:?usage: $0 OUTDIR [NAME ...]}"
shift
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(12x64 48x128 sample profile)
for name in "${names[@]}"; do # all checked before any runs
  case "$name" in
  12x64 | 48x128 | sample | profile) ;;
  *) echo "Unknown benchmark $name; use 12x64, 48x128, sample or profile." >&2 && exit 2 ;;
  esac
done
batch="${PER_DEVICE_BATCH:-8}"
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/dvd_gan_jax_cache}"
mkdir -p "$out"

run() { # NAME SECONDS BENCHMARK-ARGS...
  local name="$1" limit="$2"
  shift 2
  echo "== $name (at most $limit s)" >&2
  if timeout "$limit" python3 -m dvd_gan.benchmark "$@" --config.model.dtype=bfloat16 \
    >"$out/$name.json" 2>"$out/$name.log"; then
    tail -1 "$out/$name.json"
  else
    echo "   $name failed or ran out of time; the end of $out/$name.log:" >&2
    tail -5 "$out/$name.log" >&2
  fi
}

for name in "${names[@]}"; do
  case "$name" in
  12x64) run 12x64 240 --config=configs/kinetics600.py:12x64 --per_device_batch="$batch" --steps=5 ;;
  48x128) run 48x128 420 --config=configs/kinetics600.py:48x128 --per_device_batch="$batch" --steps=3 ;;
  sample) run sample 150 --config=configs/kinetics600.py:48x64 --sample --sample_videos=2 ;;
  profile)
    run profile 180 --config=configs/kinetics600.py:12x64 --per_device_batch="$batch" --steps=2 \
      --profile_dir=/tmp/dvd_gan_profile
    ;;
  esac
done
