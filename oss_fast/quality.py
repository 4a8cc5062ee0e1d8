"""The quality tables (`oss-fast quality`): on the bundled models with uniform and shifted grids,

* Euler: every mode and aggregation of the search against uniform and time-shifted steps;
* solvers (`--solvers`): for each multistep solver, the published Euler search's schedule (Euler-OSS)
  sampled with Euler and with the solver, uniform and shifted steps with the solver, and the
  solver-aware searches.

Every cell reports both PSNRs to the teacher (report.errors): of the MSE over the held-out noises,
and the mean of the per-noise PSNRs.
"""

from __future__ import annotations

import torch

from .api import search
from .grid import shifted_steps, uniform_steps
from .progress import progress
from .report import errors, markdown_table, teacher_samples
from .zoo import load_model, noises

METHODS = [  # (label, search options); None: a fixed schedule. Full searches unless refined.
    ("uniform", None),
    ("shifted(3)", None),
    ("teacher, joint", dict(mode="teacher", aggregate="joint")),
    ("exact, median", dict(mode="exact", aggregate="median", refine=False)),
    ("exact, joint", dict(mode="exact", aggregate="joint", refine=False)),
    ("exact free start, median", dict(mode="exact", aggregate="median", free_start=True, refine=False)),
    ("compat, joint", dict(mode="compat", aggregate="joint", refine=False)),
    ("compat, median (published)", dict(mode="compat", aggregate="median", refine=False)),
    ("compat, median, refined (the default)", dict()),
]
MULTISTEP = ("ab2", "dpmpp_2m", "unipc")
SOLVER_METHODS = [  # (label, what the schedule is): fixed schedules, Euler-OSS, or a solver-aware search
    ("uniform", "uniform"),
    ("shifted(3)", "shifted"),
    ("Euler-OSS schedule", "euler-oss"),
    ("search exact, joint_rms", dict(mode="exact", aggregate="joint_rms", refine=False)),
    ("search compat, joint_rms", dict(mode="compat", aggregate="joint_rms", refine=False)),
    ("search compat, joint", dict(mode="compat", aggregate="joint", refine=False)),
    ("search teacher, joint_rms", dict(mode="teacher", aggregate="joint_rms")),
]
GRIDS = [("uniform grid", 1.0), ("shifted grid (3)", 3.0)]


class Bench:
    """A bundled model with its search noises, held-out noises and the teacher's samples of those."""

    def __init__(self, model_name: str, shift: float, teacher_steps: int, search_samples: int, eval_samples: int):
        self.model = load_model(model_name, teacher_steps, shift)
        self.z, self.cond = noises(self.model, search_samples, seed=0)
        self.z_eval, self.cond_eval = noises(self.model, eval_samples, seed=1000)
        self.teacher = teacher_samples(self.model, self.z_eval, self.cond_eval)

    def search(self, K: int, **options) -> list[int]:
        return self.searched(K, **options).schedule

    def searched(self, K: int, **options):
        return search(self.model, self.z, self.cond, student_steps=K, progress=False, **options)

    def score(self, steps, solver: str = "euler") -> dict:
        return errors(self.model, self.z_eval, self.cond_eval, self.teacher, steps, solver=solver)


def _put(row: dict, K: int, result: dict) -> None:
    row[f"psnr K={K}"] = result["psnr"]
    row[f"mean psnr K={K}"] = result["mean_psnr"]


def quality_rows(bench: Bench, ks, bar=None) -> list[dict]:
    """The Euler table: one row per method, both PSNRs per K."""
    rows = {label: dict(method=label) for label, _ in METHODS}
    grid = bench.model.fm_steps
    for K in ks:
        for label, options in METHODS:
            if options is None:
                steps = (uniform_steps if label == "uniform" else shifted_steps)(grid, K)
                rows[label][f"rows K={K}"] = 0
            else:
                res = bench.searched(K, **options)
                steps = res.schedule
                # model rows per search noise, the teacher's included
                rows[label][f"rows K={K}"] = (res.stats.candidate_rows + res.stats.teacher_rows) // bench.z.shape[0]
            _put(rows[label], K, bench.score(steps))
            if bar is not None:
                bar.update()
    return list(rows.values())


def solver_rows(bench: Bench, ks, solvers=MULTISTEP, bar=None) -> list[dict]:
    """The solver table: Euler-OSS with Euler, then per solver one row per SOLVER_METHODS entry."""
    grid = bench.model.fm_steps
    rows = {("euler", "Euler-OSS schedule"): dict(solver="euler", method="Euler-OSS schedule")}
    rows.update({(solver, label): dict(solver=solver, method=label) for solver in solvers
                 for label, _ in SOLVER_METHODS})
    for K in ks:
        euler_oss = bench.search(K, mode="compat", aggregate="median", refine=False)  # the published search
        _put(rows[("euler", "Euler-OSS schedule")], K, bench.score(euler_oss))
        for solver in solvers:
            for label, what in SOLVER_METHODS:
                if what == "uniform":
                    steps = uniform_steps(grid, K)
                elif what == "shifted":
                    steps = shifted_steps(grid, K)
                elif what == "euler-oss":
                    steps = euler_oss
                else:
                    steps = bench.search(K, solver=solver, **what)
                _put(rows[(solver, label)], K, bench.score(steps, solver))
                if bar is not None:
                    bar.update()
    return list(rows.values())


def quality_table(models=("digits", "gaussian_mixture"), teacher_steps: int = 100, ks=(5, 10),
                  search_samples: int = 32, eval_samples: int = 64, show: bool = True,
                  solvers: bool = False) -> str:
    """Markdown: one table per model and grid (Euler modes, or with solvers=True the solver table);
    both PSNRs (dB) to the teacher per K."""
    measures = ("mean psnr", "psnr") if solvers else ("mean psnr", "psnr", "rows")
    columns = [f"{m} K={K}" for K in ks for m in measures]
    columns = (["solver", "method"] if solvers else ["method"]) + columns
    parts = [f"PSNR (dB) to the {teacher_steps}-step Euler teacher on {eval_samples} held-out noises (seed 1000): "
             f"'mean psnr' averages the per-noise PSNRs, 'psnr' is that of the MSE over all noises; searches on "
             f"{search_samples} noises (seed 0)" + ("." if solvers else f"; 'rows': model rows per search noise, the "
             f"teacher's included (the published search spends {teacher_steps} (K + 1)).")]
    per_grid = len(ks) * (len(MULTISTEP) * len(SOLVER_METHODS) if solvers else len(METHODS))
    with torch.no_grad(), progress(len(models) * len(GRIDS) * per_grid, "quality", enabled=show) as bar:
        for name in models:
            for grid_label, shift in GRIDS:
                bench = Bench(name, shift, teacher_steps, search_samples, eval_samples)
                rows = solver_rows(bench, ks, bar=bar) if solvers else quality_rows(bench, ks, bar)
                parts.append(f"**{name}, {grid_label}**\n\n" + markdown_table(rows, columns))
    return "\n\n".join(parts)
