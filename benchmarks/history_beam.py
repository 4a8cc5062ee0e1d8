"""Experiment: does keeping the best few histories per grid index help a multistep search?

The solver-aware search keeps, at each (level, grid index), the state of the cheapest predecessor
and its history; a costlier predecessor could give better later steps. This runs mode exact / joint
as a beam that keeps the `width` cheapest states per grid index (width 1 is the search itself; its
model rows grow with the width) and prints held-out quality (mean PSNR, PSNR of the mean MSE) and
model rows per width. The result is recorded in benchmarks/README.md.

    python benchmarks/history_beam.py --model digits --solvers dpmpp_2m unipc --widths 1 2 4 8
"""

from __future__ import annotations

import argparse
import math

import torch

import oss_fast
from oss_fast.ops import combine, combo_costs, round_to
from oss_fast.report import teacher_samples
from oss_fast.solvers import SOLVERS, get_solver
from oss_fast.zoo import load_model, noises


@torch.no_grad()
def beam_search(model, z, cond, K: int, solver_name: str, width: int):
    """(path, model rows) of an exact/joint search keeping `width` states per grid index."""
    solver = get_solver(solver_name)
    H, s = solver.history, model.fm_steps.double()
    N, B, D = len(s) - 1, z.shape[0], z[0].numel()
    T = torch.empty(N + 1, B, D)
    x = T[N] = z.reshape(B, D)
    for i in range(N, 0, -1):  # the Euler teacher
        x = x + model(x.reshape(z.shape), torch.full((B,), i), cond, {}).reshape(B, D) * float(s[i - 1] - s[i])
        T[i - 1] = x
    beam = [dict(j=N, x=z.reshape(B, D), h=torch.zeros(B, H, D, dtype=torch.float64),
                 times=torch.ones(2, dtype=torch.float64), depth=0, parent=None)]
    rows = 0
    for level in range(K):
        cands = [c for c in beam if c["j"] >= K - level]
        R = len(cands)
        grid = torch.tensor([c["j"] for c in cands])
        X = torch.stack([c["x"] for c in cands])
        V = model(X.reshape(R * B, *z.shape[1:]), grid.repeat_interleave(B),
                  None if cond is None else cond.repeat(R), {}).reshape(R, B, D)
        rows += R * B
        Hs = torch.stack([c["h"] for c in cands])
        times = torch.stack([c["times"] for c in cands])
        depth = torch.tensor([c["depth"] for c in cands])
        Jt = 1 if level == K - 1 else N + 1
        M = solver.matrix(s[grid][:, None], s[None, :Jt], times[:, 0, None], times[:, 1, None], depth[:, None])
        costs = combo_costs(X.reshape(R * B, D), V.reshape(R * B, D), Hs.reshape(R * B, H, D),
                            M[:, :, 0].repeat_interleave(B, 0).contiguous(), T[:Jt].contiguous(),
                            torch.arange(B).repeat(R), grid.repeat_interleave(B)).reshape(R, B, Jt).mean(1)
        beam = []
        for j in range(Jt):
            finite = torch.isfinite(costs[:, j]).nonzero()[:, 0]
            for r in finite[torch.argsort(costs[finite, j])[:width]].tolist():
                c, Mj = cands[r], M[r, j]
                vectors = [c["x"], V[r]] + [c["h"][:, k] for k in range(H)]
                beam.append(dict(j=j, x=round_to(combine(Mj[0].expand(B, -1), vectors), torch.float32),
                                 h=torch.stack([combine(Mj[1 + k].expand(B, -1), vectors) for k in range(H)], 1),
                                 times=torch.stack([s[c["j"]], c["times"][0]]), depth=min(c["depth"] + 1, 2),
                                 parent=c, cost=float(costs[r, j])))
    state, path = min((c for c in beam if c["j"] == 0), key=lambda c: c["cost"]), []
    while state["parent"] is not None:
        state = state["parent"]
        path.append(state["j"])
    return path, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="digits")
    parser.add_argument("--shift", type=float, default=1.0)
    parser.add_argument("--solvers", nargs="+", default=["dpmpp_2m", "unipc"],
                        choices=[name for name, solver in SOLVERS.items() if solver.history])
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    args = parser.parse_args()
    model = load_model(args.model, 100, args.shift)
    z, cond = noises(model, 32, 0)
    z_eval, cond_eval = noises(model, 64, 1000)
    teacher = teacher_samples(model, z_eval, cond_eval)
    peak = float(teacher.max() - teacher.min()) ** 2
    print("| K | solver | width | mean psnr | psnr | model rows |\n| --- | --- | --- | --- | --- | --- |")
    for K in args.ks:
        for solver in args.solvers:
            for width in args.widths:
                path, rows = beam_search(model, z, cond, K, solver, width)
                x = oss_fast.sample(model, z_eval, path, cond_eval, solver=solver)
                mse = ((x.double() - teacher.double()) ** 2).flatten(1).mean(1)
                print(f"| {K} | {solver} | {width} | {float((10 * torch.log10(peak / mse)).mean()):.2f} | "
                      f"{10 * math.log10(peak / float(mse.mean())):.2f} | {rows} |", flush=True)


if __name__ == "__main__":
    main()
