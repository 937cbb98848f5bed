#!/usr/bin/env bash
# The test command: creates or reuses .venv, installs dvd-gan with its test extra, checks
# lint and formatting with ruff, and runs the whole test suite in a pytest-xdist worker per
# core. `--quick` runs the quick tier (leaves out the tests marked slow); other arguments
# go to pytest (e.g. ./launch/test.sh -k models -x).
set -euo pipefail
DVD_GAN_EXTRAS=test
source "$(dirname "$0")/venv.sh"
args=()
for arg in "$@"; do
  if [ "$arg" = "--quick" ]; then args+=(-m "not slow"); else args+=("$arg"); fi
done
echo "== ruff check"; ruff check .
echo "== ruff format --check"; ruff format --check .
# loadfile: a test file's tests share its module fixtures (compiled steps, trained models),
# so they run in one worker.
echo "== pytest"; python -m pytest tests --numprocesses=auto --dist=loadfile ${args[@]+"${args[@]}"}
