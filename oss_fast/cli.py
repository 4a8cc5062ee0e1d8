"""The `oss-fast` command."""

from __future__ import annotations

import argparse
import json
import sys
import time


def _search(args) -> int:
    from . import reference
    from .zoo import GaussianMixtureFlow

    model = GaussianMixtureFlow(teacher_steps=args.teacher_steps, shift=args.shift, seed=args.model_seed)
    z = model.noise(args.samples, seed=args.seed)
    start = time.perf_counter()
    steps = reference.search(model, z, student_steps=args.student_steps, mode=args.mode, aggregate="median")
    elapsed = time.perf_counter() - start
    print(f"model: {model.name}, teacher steps {args.teacher_steps}, student steps {args.student_steps}, "
          f"mode {args.mode}, {args.samples} sample(s), {elapsed:.1f} s")
    sigmas = [round(float(model.fm_steps[i]), 6) for i in reversed(steps)] + [0.0]
    print("schedule (grid indices):", steps)
    print("sigmas:", json.dumps(sigmas))
    return 0


def _info(args) -> int:
    from . import build_info

    print(json.dumps(build_info(), indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="oss-fast", description="Optimal Stepsize Search for flow/diffusion samplers")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("search", help="search a schedule on the bundled Gaussian-mixture model")
    s.add_argument("--teacher-steps", type=int, default=200)
    s.add_argument("--student-steps", type=int, default=10)
    s.add_argument("--mode", choices=["compat", "exact", "teacher"], default="compat")
    s.add_argument("--samples", type=int, default=1)
    s.add_argument("--shift", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0, help="seed of the noises searched on")
    s.add_argument("--model-seed", type=int, default=0)
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
