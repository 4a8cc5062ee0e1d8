"""Solver-aware searches against the Euler search on the same inputs, in one process (DESIGN §3.5):
total time, time in model calls, cost-op time, the rest ("other": everything but the model) and
candidate rows per solver, and the ratios to Euler. The solvers take turns, repeat after repeat, so
that the machine's drift reaches them alike.
The target: the model rows of the Euler search (±2%) and at most 1.15x its time.

    python benchmarks/bench_solvers.py                      # cases a and b of bench_search.py, CPU
    python benchmarks/bench_solvers.py --cases xl --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_search import CASES, CallMeter, build, warm_up  # noqa: E402

from oss_fast.solvers import SOLVERS  # noqa: E402 (Euler first: the others are timed against it)


def run(case: str, device: str, modes, repeat: int):
    import oss_fast

    torch.set_grad_enabled(False)
    model, z, cond = build(case, device)
    spec = CASES[case]
    warm_up(model, z, cond, {1, z.shape[0], spec["N"], spec["max_batch"]})
    print(f"# {case}: {spec}; {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if device == 'cuda' else f'{torch.get_num_threads()} CPU threads'}")
    print("| mode | solver | total s | model s | costs s | other s | candidate rows | time / Euler's | "
          "other / Euler's | rows / Euler's |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode in modes:
        runs = {solver: [] for solver in SOLVERS}
        for _ in range(repeat):  # round robin, so that the machine's drift reaches every solver alike
            for solver in SOLVERS:
                meter = CallMeter(model)
                begin = time.perf_counter()
                res = oss_fast.search(meter, z, cond, student_steps=spec["K"], mode=mode, aggregate="joint",
                                      solver=solver, max_batch=spec["max_batch"], refine=False, progress=False)
                total = time.perf_counter() - begin
                runs[solver].append((total, meter.seconds, res.stats.seconds_costs, total - meter.seconds,
                                     res.stats.candidate_rows))
        euler = None
        for solver in SOLVERS:
            total, model_s, costs_s, other_s, rows = (statistics.median(r[k] for r in runs[solver]) for k in range(5))
            euler = euler or (total, other_s, rows)
            print(f"| {mode} | {solver} | {total:.2f} | {model_s:.2f} | {costs_s:.2f} | {other_s:.2f} | {rows:.0f} | "
                  f"{total / euler[0]:.2f} | {other_s / euler[1]:.2f} | {rows / euler[2]:.3f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["a", "b"], choices=list(CASES))
    parser.add_argument("--modes", nargs="+", default=["exact", "compat"], choices=["exact", "compat"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=3, help="searches per solver; the median is reported")
    args = parser.parse_args(argv)
    for case in args.cases:
        run(case, args.device, args.modes, args.repeat)


if __name__ == "__main__":
    main()
