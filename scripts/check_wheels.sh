#!/usr/bin/env bash
# Builds the wheel with nvcc on PATH and without it, installs each into a fresh virtual
# environment and checks that build_info() tells them apart. Usage: bash scripts/check_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
no_nvcc_path=$(echo "$PATH" | tr ':' '\n' | while read -r d; do [ -x "$d/nvcc" ] || echo "$d"; done | paste -sd:)

check() {  # check <name> <PATH for the build> <expected built_with_cuda>
  local name=$1 path=$2 expected=$3
  PATH="$path" python3 -m pip wheel -q --no-deps --config-settings=build-dir="$work/build-$name" -w "$work/$name" . >"$work/$name.log" 2>&1 \
    || { cat "$work/$name.log"; exit 1; }
  python3 -m venv "$work/venv-$name"
  "$work/venv-$name/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0 "$work/$name"/oss_fast-*.whl
  (cd "$work" && "$work/venv-$name/bin/python" -c "
import oss_fast
info = oss_fast.build_info()
print('$name wheel:', info)
assert info['built_with_cuda'] is $expected, info
assert info['cuda_available'] is False or info['built_with_cuda']
")
}

if command -v nvcc >/dev/null; then
  check cuda "$PATH" True
else
  echo "nvcc not on PATH: skipping the CUDA wheel"
fi
check cpu "$no_nvcc_path" False
echo "wheels OK"
