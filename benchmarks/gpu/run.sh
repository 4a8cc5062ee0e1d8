#!/usr/bin/env bash
# One script for a lent GPU (under 8 minutes): build with CUDA, run the tests (the `cuda` ones too), measure the
# cost kernel against its roofline, and time the search against the published-style baselines on
# a DiT-XL/2-sized model. Without a GPU it runs its CPU-safe parts (build, CPU roofline, a short
# search benchmark). Logs go to $OUT (or benchmarks/gpu/out).
#   bash benchmarks/gpu/run.sh
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/gpu/out}
mkdir -p "$OUT"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
failed=0

step() {  # step <name> <command...>: run, log to $OUT/<name>.log, keep going on failure
  local name=$1
  shift
  echo "=== $name: $*"
  local begin=$SECONDS
  "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - begin)) s"
  [ "$rc" -eq 0 ] || failed=1
}

step build "$python" -m pip install -q --no-build-isolation --no-deps -e .
step info "$python" -c "import oss_fast, json; print(json.dumps(oss_fast.build_info()))"
if "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  step tests "$python" -m pytest tests -q -p no:cacheprovider -x
  step roofline "$python" benchmarks/gpu/cost_roofline.py --device cuda
  step roofline_bf16 "$python" benchmarks/gpu/cost_roofline.py --device cuda --dtype bfloat16 --sizes 65536 2097152
  step search_xl "$python" benchmarks/bench_search.py --cases xl --device cuda
else
  echo "no GPU here: running the CPU-safe parts only"
  step roofline "$python" benchmarks/gpu/cost_roofline.py --device cpu --sizes 4096
  step search_b "$python" benchmarks/bench_search.py --cases b --methods oss_fast search_OSS_batch-style --device cpu
fi
exit $failed
