"""The same searches timed in two checkouts of oss_fast (say, before and after a reshape), taking
turns, each run in a fresh process that imports the checkout's package (its compiled module must be
in place: copy `_C*.so` into the checkout's oss_fast/), with the checkout's `.venv/bin/python` where
it has one (an editable install's import hook would otherwise win over PYTHONPATH); prints per search the median seconds of
each checkout, their ratio, and whether the two returned the same steps.

    OMP_NUM_THREADS=1 python benchmarks/bench_checkouts.py BEFORE AFTER [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

import torch

SEARCHES = {  # label: (bundled model, search options)
    "digits, Euler default (K=10)": ("digits", dict(student_steps=10)),
    "digits, unipc guarded default (K=5)": ("digits", dict(student_steps=5, solver="unipc")),
    "mixture, full search exact/joint (K=10)": ("gaussian_mixture", dict(student_steps=10, mode="exact",
                                                                           aggregate="joint", refine=False)),
    "mixture, mode teacher dpmpp_2m (K=10)": ("gaussian_mixture", dict(student_steps=10, mode="teacher",
                                                                         solver="dpmpp_2m")),
}

# run in the checkout: one search, its seconds and steps as JSON on the last line
ONE_SEARCH = """
import json, sys, time
import oss_fast
from oss_fast.zoo import load_model, noises
name, options = sys.argv[1], json.loads(sys.argv[2])
model = load_model(name, teacher_steps=100)
z, cond = noises(model, 16, 0)
begin = time.perf_counter()
result = oss_fast.search(model, z, cond, progress=False, **options)
print(json.dumps([time.perf_counter() - begin, result.steps, oss_fast.__file__]))
"""


def timed(checkout: str, name: str, options: dict):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
    python = os.path.join(checkout, ".venv", "bin", "python")
    out = subprocess.run([python if os.path.exists(python) else sys.executable, "-c", ONE_SEARCH, name, json.dumps(options)], env=env, cwd=checkout,
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    seconds, steps, where = json.loads(out)
    if not where.startswith(os.path.abspath(checkout)):
        raise SystemExit(f"{checkout}: the search ran {where}, not this checkout's oss_fast")
    return seconds, steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"# machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; 16 noises, N = 100")
    print("| search | before s | after s | after / before | same steps |")
    print("| --- | --- | --- | --- | --- |")
    for label, (name, options) in SEARCHES.items():
        seconds = {args.before: [], args.after: []}
        steps = {}
        for _ in range(args.repeat):
            for checkout in (args.before, args.after):
                s, steps[checkout] = timed(checkout, name, options)
                seconds[checkout].append(s)
        before, after = (statistics.median(seconds[c]) for c in (args.before, args.after))
        same = "yes" if steps[args.before] == steps[args.after] else "NO"
        print(f"| {label} | {before:.2f} | {after:.2f} | {after / before:.2f} | {same} |", flush=True)


if __name__ == "__main__":
    main()
