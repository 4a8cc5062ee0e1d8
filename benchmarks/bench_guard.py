"""What the guard of the multistep default costs (DESIGN §3.5): on the bundled learned models, the
Euler default, the refined multistep search without the guard (validate=False) and the guarded
default, each on the same 16 noises in one process, taking turns: seconds, model rows against the
published search's N (K + 1) B, rows of the guard's validation, and each time against the Euler
default's.

    OMP_NUM_THREADS=1 python benchmarks/bench_guard.py [--models digits patches] [--ks 5 10] [--repeat 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import oss_fast
from oss_fast.zoo import load_model, noises

RUNS = {  # label: search options
    "Euler default": dict(),
    "unipc, no guard": dict(solver="unipc", validate=False),
    "unipc, guarded (default)": dict(solver="unipc"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["digits", "patches"])
    parser.add_argument("--ks", nargs="+", type=int, default=[5, 10])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; {args.samples} search noises, 100-step grid, median of "
          f"{args.repeat} turns")
    print("| model | K | search | seconds | time / Euler's | model rows / published | validation rows |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        model = load_model(name, 100, 1.0)
        z, cond = noises(model, args.samples, 0)
        for K in args.ks:
            seconds = {label: [] for label in RUNS}
            results = {}
            for _ in range(args.repeat):
                for label, options in RUNS.items():
                    begin = time.perf_counter()
                    results[label] = oss_fast.search(model, z, cond, student_steps=K, progress=False, **options)
                    seconds[label].append(time.perf_counter() - begin)
            euler = statistics.median(seconds["Euler default"])
            for label, res in results.items():
                st = res.stats
                t = statistics.median(seconds[label])
                print(f"| {name} | {K} | {label} | {t:.1f} | {t / euler:.2f} | "
                      f"{(st.teacher_rows + st.candidate_rows) / st.published_rows:.2f} | {st.validation_rows} |")


if __name__ == "__main__":
    main()
