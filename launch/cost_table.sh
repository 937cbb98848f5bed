#!/usr/bin/env bash
# The README's cost table: compiles the train step of every paper config ahead of time for
# TPU slices (no TPU needed; libtpu from the `tpu` extra) at one example per core, bf16,
# with and without rematerialisation, one JSON file per compile, then prints the table.
#
#   ./launch/cost_table.sh OUTDIR [CONFIG ...]        # default: every paper config
#   TOPOLOGIES="v3:2x2 v5e:2x2" REMATS="none full" ./launch/cost_table.sh OUTDIR
#
# Each compile is long and needs many GB of host memory; docs/benchmarks.md has the
# figures, and the compiles a 24 GB host could not finish.
# Files already in OUTDIR are kept, so an interrupted run picks up where it stopped.
# Per-core memory does not depend on the slice size (the state is replicated and the batch
# per core is fixed), so the smallest slice of each generation stands for all of them.
set -euo pipefail
DVD_GAN_EXTRAS="${DVD_GAN_EXTRAS:-tpu}"
source "$(dirname "$0")/venv.sh"
out="${1:?usage: $0 OUTDIR [CONFIG ...]}"
shift
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=(configs/kinetics600.py:12x64 configs/kinetics600.py:12x128
    configs/kinetics600.py:12x256 configs/kinetics600.py:48x64
    configs/kinetics600.py:48x128 configs/kinetics600_fp.py configs/ucf101.py configs/bair_fp.py)
fi
mkdir -p "$out"
# libtpu lets one process at a time load it unless told otherwise; these compiles touch no
# TPU, so several cost_table.sh runs may share a host that has the memory for them.
export ALLOW_MULTIPLE_LIBTPU_LOAD=1
for config in "${configs[@]}"; do
  for topology in ${TOPOLOGIES:-v3:2x2 v5e:2x2}; do
    for remat in ${REMATS:-none full}; do
      name="$(basename "${config/:/_}" .py)_${topology/:/_}_${remat}"
      name="${name/.py/}"
      if [ -s "$out/$name.json" ]; then continue; fi
      echo "== $config on $topology, remat=$remat" >&2
      python -m dvd_gan.benchmark --config="$config" --topology="$topology" \
        --per_device_batch=1 --config.model.dtype=bfloat16 --config.model.remat="$remat" \
        2>"$out/$name.log" >"$out/$name.tmp" || {
        echo "   failed, see $out/$name.log" >&2
        continue
      }
      mv "$out/$name.tmp" "$out/$name.json"
    done
  done
done
python -m dvd_gan.cost_table "$out"/*.json
