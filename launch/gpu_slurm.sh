#!/usr/bin/env bash
# Trains on a SLURM GPU cluster: writes an sbatch script that runs one process per node
# (each driving all of its node's GPUs), with jax.distributed.initialize() reading SLURM's
# environment, and submits it. Run it from a checkout on a shared filesystem; the workdir
# and data_dir must be visible from every node (shared filesystem or gs://).
#
#   launch/gpu_slurm.sh --nodes=4 --gpus_per_node=8 --config=configs/kinetics600.py:48x128 \
#       --workdir=/shared/runs/k600 --data_dir=/shared/tfds [--partition=gpu] \
#       [--time=72:00:00] [--account=A] [--dry_run] [-- --config.model.dtype=bfloat16 ...]
#
# --dry_run prints the sbatch script and the submit command instead of submitting.
# Set up the environment once on a login node: DVD_GAN_EXTRAS= source launch/venv.sh, then
# pip install -U "jax[cuda12]" in .venv for GPUs.
set -euo pipefail

nodes="" gpus_per_node="" config="" workdir="" data_dir="" partition="" time_limit="72:00:00"
account="" job_name="dvd-gan" dry_run=0 extra=()
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-1}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes=*) nodes="${1#*=}" ;;
    --gpus_per_node=*) gpus_per_node="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --data_dir=*) data_dir="${1#*=}" ;;
    --partition=*) partition="${1#*=}" ;;
    --time=*) time_limit="${1#*=}" ;;
    --account=*) account="${1#*=}" ;;
    --job_name=*) job_name="${1#*=}" ;;
    --dry_run) dry_run=1 ;;
    -h|--help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "Unknown argument: $1" >&2; usage ;;
  esac
  shift
done
for required in nodes gpus_per_node config workdir data_dir; do
  if [ -z "${!required}" ]; then echo "Missing --$required" >&2; usage; fi
done

repo=$(cd "$(dirname "$0")/.." && pwd)
extra_args=""
for arg in "${extra[@]}"; do extra_args+=" $(printf '%q' "$arg")"; done
script=$(cat <<SBATCH
#!/usr/bin/env bash
#SBATCH --job-name=$job_name
#SBATCH --nodes=$nodes
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=$gpus_per_node
#SBATCH --time=$time_limit
#SBATCH --output=$workdir/slurm-%j.out
#SBATCH --signal=TERM@300
${partition:+#SBATCH --partition=$partition}
${account:+#SBATCH --account=$account}
set -euo pipefail
cd $repo
# Preemption: SLURM sends SIGTERM first; dvd_gan.main saves a checkpoint and exits, and a
# requeued job resumes from it.
srun --kill-on-bad-exit=1 .venv/bin/python -m dvd_gan.main --jax_distributed \\
  --config=$config --workdir=$workdir --config.data.data_dir=$data_dir$extra_args
SBATCH
)
if [ "$dry_run" = 1 ]; then
  printf '%s\n' "$script"
  echo "+ mkdir -p $workdir && sbatch <script above>"
  exit 0
fi
mkdir -p "$workdir"
file="$workdir/dvd_gan.sbatch"
printf '%s\n' "$script" > "$file"
echo "+ sbatch $file"
sbatch "$file"
