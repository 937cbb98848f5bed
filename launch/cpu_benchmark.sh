#!/usr/bin/env bash
# The small-model train-step figures of docs/benchmarks.md: one benchmark invocation per
# setting (median step time and the matmul reference of the same process), into
# OUTDIR/NAME.json (and NAME.log), then one table row per setting on stdout.
#
#   ./launch/cpu_benchmark.sh OUTDIR [NAME ...]     # default: all, in this order
#
#   smoke     configs/smoke.py (batch 8, 4x16², ch 4)
#   main      configs/moving_mnist.py, the main job (batch 16, 8x32²)
#   w8b2 w8b8 w16b2 w16b8
#             configs/kinetics600.py:12x64 at G and D width 8 or 16, batch 2 or 8
#
# It runs the code of the directory it is started in (python3 -m dvd_gan.benchmark with
# that directory's configs/), so the same script measures another checkout:
#   (cd OLD_CHECKOUT && /path/to/launch/cpu_benchmark.sh OUTDIR/before w8b2)
# Nothing else should run on the machine meanwhile: the rows compare wall-clock medians.
set -uo pipefail
out="${1:?usage: $0 OUTDIR [NAME ...]}"
shift
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(smoke main w8b2 w8b8 w16b2 w16b8)
for name in "${names[@]}"; do # all checked before any runs
  case "$name" in
  smoke | main | w8b2 | w8b8 | w16b2 | w16b8) ;;
  *) echo "Unknown setting $name; use smoke, main, w8b2, w8b8, w16b2 or w16b8." >&2 && exit 2 ;;
  esac
done
mkdir -p "$out"

run() { # NAME BENCHMARK-ARGS...
  local name="$1"
  shift
  echo "== $name" >&2
  if python3 -m dvd_gan.benchmark "$@" >"$out/$name.json" 2>"$out/$name.log"; then
    python3 - "$out/$name.json" "$name" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(
    f"| {sys.argv[2]} | {r['step_time_s'] * 1e3:.1f} ms | {r['flops_per_step'] / 1e9:.1f} G "
    f"| {r['flops_per_s'] / 1e9:.0f} GFLOP/s | {r['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s "
    f"| {r['mfu_vs_matmul']:.1%} |"
)
EOF
  else
    echo "   $name failed; the end of $out/$name.log:" >&2
    tail -5 "$out/$name.log" >&2
    return 1
  fi
}

k600() { # WIDTH BATCH STEPS
  run "w$1b$2" --config=configs/kinetics600.py:12x64 --config.model.ch="$1" \
    --config.model.d_ch="$1" --config.batch_size="$2" --steps="$3"
}

status=0
for name in "${names[@]}"; do
  case "$name" in
  smoke) run smoke --config=configs/smoke.py --steps=20 ;;
  main) run main --config=configs/moving_mnist.py --steps=10 ;;
  w8b2) k600 8 2 10 ;;
  w8b8) k600 8 8 5 ;;
  w16b2) k600 16 2 5 ;;
  w16b8) k600 16 8 3 ;;
  esac || status=1
done
exit $status
