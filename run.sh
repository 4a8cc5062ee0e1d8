#!/usr/bin/env bash
# Sets everything up on a fresh machine, then runs one job:
#   bash run.sh search [options]   search on the bundled default model and print the schedule
#   bash run.sh test [pytest args] run the test suite
# The virtual environment .venv reuses a torch that python3 can already import (a user's CUDA
# build); otherwise it installs the CPU build torch==2.13.0.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if "$python" -c "import torch" 2>/dev/null; then
    "$python" -m venv --system-site-packages .venv
  else
    "$python" -m venv .venv
  fi
fi
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e ".[test,triton,plots]"

job=${1:-}
shift || true
case "$job" in
  search) exec .venv/bin/oss-fast search "$@" ;;
  test)
    # k-diffusion's samplers are an oracle of the tests; its own dependencies (wandb, CLIP, ...) are not needed
    pip install -q --no-deps k-diffusion==0.1.1.post1
    exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: bash run.sh search|test [args]" >&2; exit 2 ;;
esac
