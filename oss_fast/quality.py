"""The quality tables (`oss-fast quality`): on the bundled models with uniform and shifted grids,

* Euler: every mode and aggregation of the search against uniform and time-shifted steps;
* solvers (`--solvers`): for each multistep solver, the published Euler search's schedule (Euler-OSS)
  sampled with Euler and with the solver, uniform and shifted steps with the solver, and the
  solver-aware searches;
* transfer (`--transfer`): a schedule searched on a grid of one shift, carried to a grid of another
  (Schedule.for_shift: flow times snapped; Schedule.reshift: through un-shifted time, then snapped)
  against a fresh search on the target grid and the target grid's uniform steps.

Every cell reports both PSNRs to the teacher (report.errors): of the MSE over the held-out noises,
and the mean of the per-noise PSNRs.
"""

from __future__ import annotations

import torch

from .api import search
from .grid import shifted_steps, uniform_steps
from .progress import progress
from .report import errors, markdown_table, teacher_samples
from .schedule import Schedule
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


TRANSFER_SHIFTS = (1.0, 3.0, 6.0)


def transfer_rows(benches: dict, ks, bar=None) -> list[dict]:
    """Per target grid (shift b): the default search there, its uniform steps, and the default search
    of every other grid carried over by for_shift and by reshift; both PSNRs per K on b's teacher."""
    searched = {(a, K): Schedule.from_indices(bench.search(K), grid=bench.model.fm_steps)
                for a, bench in benches.items() for K in ks}
    rows = []
    for b, bench in benches.items():
        grid = bench.model.fm_steps
        ways = [("fresh search", None, lambda K: searched[(b, K)].indices),
                ("uniform steps", None, lambda K: uniform_steps(grid, K))]
        for a in benches:
            if a != b:
                ways.append(("for_shift (flow times)", a, lambda K, a=a: searched[(a, K)].for_shift(b).indices))
                ways.append(("reshift (un-shifted time)", a,
                             lambda K, a=a: searched[(a, K)].reshift(b).snap(grid.tolist()).indices))
        for label, a, steps_for in ways:
            row = {"to grid": f"shift {b:g}", "from grid": "" if a is None else f"shift {a:g}", "method": label}
            for K in ks:
                _put(row, K, bench.score(steps_for(K)))
            rows.append(row)
            if bar is not None:
                bar.update()
    return rows


def transfer_table(models=("digits", "gaussian_mixture"), teacher_steps: int = 100, ks=(5, 10),
                   search_samples: int = 32, eval_samples: int = 64, show: bool = True,
                   shifts=TRANSFER_SHIFTS) -> str:
    """Markdown: per model, schedules carried between grids of the given shifts (see transfer_rows)."""
    columns = ["to grid", "from grid", "method"] + [f"{m} K={K}" for K in ks for m in ("mean psnr", "psnr")]
    parts = [f"PSNR (dB) to the target grid's {teacher_steps}-step Euler teacher on {eval_samples} held-out noises "
             f"(seed 1000), 'mean psnr' the mean of per-noise PSNRs, 'psnr' that of the MSE; every search is the "
             f"default (compat, median, refined) on {search_samples} noises (seed 0)."]
    rows_per_model = len(shifts) * (2 + 2 * (len(shifts) - 1))
    with torch.no_grad(), progress(len(models) * rows_per_model, "transfer", enabled=show) as bar:
        for name in models:
            benches = {b: Bench(name, b, teacher_steps, search_samples, eval_samples) for b in shifts}
            parts.append(f"**{name}**\n\n" + markdown_table(transfer_rows(benches, ks, bar), columns))
    return "\n\n".join(parts)


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
