# Sourced by the launch scripts: creates or reuses .venv and installs dvd-gan into it with
# the extras named in DVD_GAN_EXTRAS, pinned by constraints.txt (the versions CI tested).
# The install is skipped when setup.py, constraints.txt and the extras have not changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "dvd-gan needs Python >= 3.11; $PYTHON is $("$PYTHON" --version 2>&1). Set PYTHON=..." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=".venv/.dvd_gan_installed"
want="$(cat setup.py constraints.txt | sha256sum | cut -c1-16)-${DVD_GAN_EXTRAS:-}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing dvd-gan${DVD_GAN_EXTRAS:+[$DVD_GAN_EXTRAS]} into .venv (a few minutes the first time)"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -c constraints.txt -e ".${DVD_GAN_EXTRAS:+[$DVD_GAN_EXTRAS]}"
  echo "$want" > "$stamp"
fi
# Quiet, CPU-safe defaults; each can be overridden from the environment.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
