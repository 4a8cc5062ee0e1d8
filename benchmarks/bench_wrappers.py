"""Each model wrapper on its tiny test config (tests/test_models.py): a compat search eager and
with compile=True, timed after one warm-up search each, in one run on this machine.

    python benchmarks/bench_wrappers.py [--teacher-steps 50] [--student-steps 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import oss_fast  # noqa: E402
from test_models import CASES, make_case  # noqa: E402


def timed_search(wrapper, z, cond, kwargs, K):
    begin = time.perf_counter()
    res = oss_fast.search(wrapper, z, cond, student_steps=K, mode="compat", aggregate="per_sample",
                          model_kwargs=kwargs, max_batch=16, progress=False)
    return time.perf_counter() - begin, res


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-steps", type=int, default=50)
    parser.add_argument("--student-steps", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    args = parser.parse_args(argv)
    print(f"# {os.cpu_count()} cores, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; "
          f"compat search N={args.teacher_steps} K={args.student_steps} B=2, max_batch 16")
    print(f"{'wrapper':15} {'eager s':>9} {'compiled s':>11} {'speed-up':>9} {'compile s':>10} {'same steps':>11}")
    for name in args.cases:
        times = {}
        steps = {}
        for compiled in (False, True):
            torch._dynamo.reset()
            wrapper, z, cond, kwargs = make_case(name, N=args.teacher_steps, compile=compiled)
            warm, _ = timed_search(wrapper, z, cond, kwargs, args.student_steps)
            seconds, res = timed_search(wrapper, z, cond, kwargs, args.student_steps)
            times[compiled] = (warm, seconds)
            steps[compiled] = res.steps
        eager, comp = times[False][1], times[True][1]
        print(f"{name:15} {eager:9.3f} {comp:11.3f} {eager / comp:8.2f}x {times[True][0] - comp:10.1f} "
              f"{str(steps[False] == steps[True]):>11}")


if __name__ == "__main__":
    main()
