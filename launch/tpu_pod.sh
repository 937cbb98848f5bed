#!/usr/bin/env bash
# Trains on a Cloud TPU VM slice: creates the slice, copies this checkout to every worker,
# installs dvd-gan[tpu] there, starts the same training command on all workers at once
# (jax.distributed.initialize() finds the others by itself on TPU VMs), streams the logs,
# and optionally deletes the slice at the end. Data and workdir live on GCS.
#
#   launch/tpu_pod.sh --name=dvd-gan --zone=europe-west4-a --accelerator=v3-32 \
#       --config=configs/kinetics600.py:48x128 --workdir=gs://BUCKET/runs/k600_48x128 \
#       --data_dir=gs://BUCKET/tfds [--project=P] [--version=tpu-ubuntu2204-base] \
#       [--compilation_cache=gs://...] [--reuse] [--delete] [--dry_run] \
#       [-- --config.train.num_steps=300000 ...]
#
# --reuse: the slice exists already (skip creation). --delete: delete it when training ends.
# --compilation_cache: JAX's persistent compilation cache (default: jax_compilation_cache
# beside the workdir, shared by the runs there), so that a run restarted after a preemption
# reads its compiled step instead of compiling it again.
# --dry_run: print every command instead of running it.
set -euo pipefail

name="" zone="" accelerator="" config="" workdir="" data_dir="" project="" compilation_cache=""
version="tpu-ubuntu2204-base" reuse=0 delete=0 dry_run=0 extra=()
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-1}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --accelerator=*) accelerator="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --data_dir=*) data_dir="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --compilation_cache=*) compilation_cache="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --reuse) reuse=1 ;;
    --delete) delete=1 ;;
    --dry_run) dry_run=1 ;;
    -h|--help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "Unknown argument: $1" >&2; usage ;;
  esac
  shift
done
for required in name zone accelerator config workdir data_dir; do
  if [ -z "${!required}" ]; then echo "Missing --$required" >&2; usage; fi
done
case "$workdir" in gs://*) ;; *) echo "--workdir must be on GCS (gs://...): every worker writes there" >&2; exit 1 ;; esac
compilation_cache="${compilation_cache:-$(dirname "$workdir")/jax_compilation_cache}"

gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
[ -n "$project" ] && where+=(--project="$project")

run() {  # prints the command; runs it unless --dry_run
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [ "$dry_run" = 0 ]; then "$@"; fi
}

repo_dir=dvd-gan
archive=$(mktemp -u /tmp/dvd-gan-XXXXXX).tar.gz
train_command=(
  "cd $repo_dir &&"
  "JAX_COMPILATION_CACHE_DIR=$compilation_cache"
  ".venv/bin/python -m dvd_gan.main --jax_distributed"
  "--config=$config --workdir=$workdir --config.data.data_dir=$data_dir"
)
for arg in "${extra[@]}"; do train_command+=("$(printf '%q' "$arg")"); done

if [ "$reuse" = 0 ]; then
  run "${gcloud_tpu[@]}" create "$name" "${where[@]}" --accelerator-type="$accelerator" --version="$version"
fi
# This checkout, as committed (git archive), to every worker.
run git -C "$(dirname "$0")/.." archive --format=tar.gz --prefix="$repo_dir/" -o "$archive" HEAD
run "${gcloud_tpu[@]}" scp "$archive" "$name:dvd-gan.tar.gz" "${where[@]}" --worker=all
# TPU VM images ship Python 3.10; dvd-gan needs >= 3.11.
run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command \
  "rm -rf $repo_dir && tar xzf dvd-gan.tar.gz && sudo apt-get update -qq && sudo apt-get install -y -qq python3.11 python3.11-venv && cd $repo_dir && PYTHON=python3.11 DVD_GAN_EXTRAS=tpu bash -c 'source launch/venv.sh'"
# Same command on all workers; the ssh session streams every worker's output.
run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command "${train_command[*]}"
if [ "$delete" = 1 ]; then
  run "${gcloud_tpu[@]}" delete "$name" "${where[@]}" --quiet
fi
