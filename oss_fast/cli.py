"""The `oss-fast` command."""

from __future__ import annotations

import argparse
import json
import sys


def _search(args) -> int:
    from . import search
    from .zoo import GaussianMixtureFlow

    model = GaussianMixtureFlow(teacher_steps=args.teacher_steps, shift=args.shift, seed=args.model_seed)
    z = model.noise(args.samples, seed=args.seed)
    res = search(model, z, student_steps=args.student_steps, mode=args.mode, aggregate=args.aggregate,
                 max_batch=args.max_batch, progress=not args.no_progress)
    print(f"model: {model.name}; teacher steps {args.teacher_steps}, student steps {args.student_steps}, "
          f"mode {args.mode}, aggregate {args.aggregate}, {args.samples} sample(s)")
    schedule = res.schedule if res.schedule is not None else res.steps[0]
    if args.aggregate == "per_sample":
        for b, steps in enumerate(res.steps):
            print(f"sample {b}: {steps}")
    sigmas = [round(float(model.fm_steps[i]), 6) for i in reversed(schedule)] + [0.0]
    print("schedule (grid indices):", schedule)
    print("sigmas:", json.dumps(sigmas))
    print("stats:", res.stats.summary())
    return 0


def _info(args) -> int:
    from . import build_info

    print(json.dumps(build_info(), indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="oss-fast", description="Optimal Stepsize Search for flow/diffusion samplers")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("search", help="search a schedule on the bundled Gaussian-mixture model")
    s.add_argument("--teacher-steps", type=int, default=200, help="N, the teacher's grid (default 200)")
    s.add_argument("--student-steps", type=int, default=10, help="K, the student's steps (default 10)")
    s.add_argument("--mode", choices=["exact", "compat", "teacher"], default="exact")
    s.add_argument("--aggregate", choices=["median", "joint", "per_sample"], default="median")
    s.add_argument("--samples", type=int, default=4, help="noises searched on (default 4)")
    s.add_argument("--shift", type=float, default=1.0, help="grid shift a: s' = a s / (1 + (a - 1) s)")
    s.add_argument("--seed", type=int, default=0, help="seed of the noises searched on")
    s.add_argument("--model-seed", type=int, default=0)
    s.add_argument("--max-batch", type=int, default=None, help="rows per model call (default 32)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(run=_search)
    i = sub.add_parser("info", help="how oss_fast was built and what it can use here")
    i.set_defaults(run=_info)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as err:
        print(f"oss-fast: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
