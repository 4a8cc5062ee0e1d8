"""The quality tables (`oss-fast quality`): on the bundled models with uniform and shifted grids,

* Euler: every mode and aggregation of the search against uniform and time-shifted steps;
* solvers (`--solvers`): for each multistep solver, the standard schedules sampled with it (uniform
  and time-shifted steps, the Euler search's schedule -- the Euler default's -- and the published
  Euler search's), the default (the guarded search) and the searches it is built from, then a summary
  of the default against the best standard schedule on each measure;
* transfer (`--transfer`): a schedule searched on a grid of one shift, carried to a grid of another
  (Schedule.for_shift: flow times snapped; Schedule.reshift: through un-shifted time, then snapped)
  against a fresh search on the target grid and the target grid's uniform steps.

Every cell reports the PSNRs to the teacher on held-out noises (oss_fast.metrics): the mean of the
per-noise PSNRs, the PSNR of the mean MSE, and the 10th percentile and minimum of the per-noise PSNRs.
"""

from __future__ import annotations

import torch

from .api import search
from .grid import shifted_steps, uniform_steps
from .progress import progress
from .report import errors, markdown_table, teacher_samples
from .schedule import Schedule
from .solvers import SOLVERS
from .zoo import BUNDLED, load_model, noises

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
MULTISTEP = tuple(name for name, solver in SOLVERS.items() if solver.history)  # every solver but Euler
STANDARDS = ("uniform", "shifted(3)", "Euler search's schedule")  # what the default must not fall below
SOLVER_METHODS = [  # (label, what the schedule is): fixed schedules, Euler searches' schedules, or a search
    ("uniform", "uniform"),
    ("shifted(3)", "shifted"),
    ("Euler search's schedule", dict(solver="euler")),  # the Euler default: refined compat/median
    ("Euler-OSS (published) schedule", dict(solver="euler", mode="compat", aggregate="median", refine=False)),
    ("the default (guarded)", dict()),
    ("refined joint_rms, no guard", dict(aggregate="joint_rms", validate=False)),
    ("full compat joint", dict(mode="compat", aggregate="joint", refine=False)),
]
MEASURES = (("mean psnr", "mean_psnr"), ("psnr", "psnr"), ("p10 psnr", "p10_psnr"), ("min psnr", "min_psnr"))
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
    for column, key in MEASURES:
        row[f"{column} K={K}"] = result[key]


def quality_rows(bench: Bench, ks, bar=None) -> list[dict]:
    """The Euler table: one row per method, every measure and the model rows per K."""
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


def _rows_per_noise(res, B: int) -> int:
    """Model rows per search noise, the teacher's and the validation's included."""
    return (res.stats.candidate_rows + res.stats.teacher_rows) // B


def solver_rows(bench: Bench, ks, solvers=MULTISTEP, bar=None) -> tuple[list, list]:
    """(table, summary). table: per solver one row per SOLVER_METHODS entry (the Euler searches' schedules
    are searched once per K and sampled with each solver), each measure and the model rows per K.
    summary: per solver and K, the default's lead over the best standard schedule on each measure
    (negative: below it), the candidate its guard kept and its rows against the published search's."""
    grid = bench.model.fm_steps
    B, N = bench.z.shape[0], len(grid) - 1
    rows = {("euler", label): dict(solver="euler", method=label) for label, _ in SOLVER_METHODS[2:4]}
    rows.update({(solver, label): dict(solver=solver, method=label) for solver in solvers
                 for label, _ in SOLVER_METHODS})
    summary = []
    for K in ks:
        euler = {label: bench.searched(K, **what) for label, what in SOLVER_METHODS[2:4]}
        for label, res in euler.items():  # the Euler searches' schedules sampled with Euler itself
            _put(rows[("euler", label)], K, bench.score(res.schedule))
            rows[("euler", label)][f"rows K={K}"] = _rows_per_noise(res, B)
        published_with_euler = rows[("euler", "Euler-OSS (published) schedule")][f"mean psnr K={K}"]
        for solver in solvers:
            scores = {}
            for label, what in SOLVER_METHODS:
                row = rows[(solver, label)]
                if what == "uniform":
                    steps, spent = uniform_steps(grid, K), 0
                elif what == "shifted":
                    steps, spent = shifted_steps(grid, K), 0
                else:
                    res = euler[label] if label in euler else bench.searched(K, solver=solver, **what)
                    steps, spent = res.schedule, _rows_per_noise(res, B)
                    if label == "the default (guarded)":
                        kept = res.guard.chosen if res.guard is not None else "(no guard)"
                scores[label] = bench.score(steps, solver)
                _put(row, K, scores[label])
                row[f"rows K={K}"] = spent
                if bar is not None:
                    bar.update()
            default = scores["the default (guarded)"]
            entry = dict(solver=solver, K=K, kept=kept,
                         **{"rows / published": rows[(solver, "the default (guarded)")][f"rows K={K}"] / (N * (K + 1))})
            for column, key in MEASURES[:3]:
                entry[f"{column} lead"] = default[key] - max(scores[label][key] for label in STANDARDS)
            entry["within 0.3 dB"] = "yes" if min(entry[f"{c} lead"] for c, _ in MEASURES[:3]) >= -0.3 else "no"
            entry["mean psnr over Euler-OSS with Euler"] = default["mean_psnr"] - published_with_euler
            summary.append(entry)
    return [rows[key] for key in rows], summary


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


SOLVER_SUMMARY_COLUMNS = ["solver", "K", "kept", "mean psnr lead", "psnr lead", "p10 psnr lead", "within 0.3 dB",
                          "rows / published", "mean psnr over Euler-OSS with Euler"]


def quality_table(models=BUNDLED, teacher_steps: int = 100, ks=(5, 10), search_samples: int | None = None,
                  eval_samples: int = 64, show: bool = True, solvers: bool = False) -> str:
    """Markdown: one table per model and grid (Euler modes, or with solvers=True the solver table and
    its summary); each measure (dB) to the teacher per K. Search noises: 32 (Euler), 16 (solvers)."""
    search_samples = search_samples or (16 if solvers else 32)
    columns = [f"{m} K={K}" for K in ks for m in [c for c, _ in MEASURES] + ["rows"]]
    columns = (["solver", "method"] if solvers else ["method"]) + columns
    parts = [f"PSNR (dB) to the {teacher_steps}-step Euler teacher on {eval_samples} held-out noises (seed 1000): "
             f"'mean psnr' averages the per-noise PSNRs, 'psnr' is that of the MSE over all noises, 'p10 psnr' and "
             f"'min psnr' are the 10th percentile and the minimum of the per-noise PSNRs; searches on {search_samples} "
             f"noises (seed 0); 'rows': model rows per search noise, the teacher's (and the guard's validation) "
             f"included (the published search spends {teacher_steps} (K + 1))."]
    if solvers:
        parts.append(f"Summary rows: the default's lead (dB) over the best of {', '.join(STANDARDS)} sampled with the "
                     "same solver, on each measure (negative: below it); 'kept': the candidate its guard kept.")
    per_grid = len(ks) * (len(MULTISTEP) * len(SOLVER_METHODS) if solvers else len(METHODS))
    with torch.no_grad(), progress(len(models) * len(GRIDS) * per_grid, "quality", enabled=show) as bar:
        for name in models:
            for grid_label, shift in GRIDS:
                bench = Bench(name, shift, teacher_steps, search_samples, eval_samples)
                if solvers:
                    rows, summary = solver_rows(bench, ks, bar=bar)
                    parts.append(f"**{name}, {grid_label}**\n\n" + markdown_table(rows, columns) + "\n\n"
                                 + markdown_table(summary, SOLVER_SUMMARY_COLUMNS))
                else:
                    parts.append(f"**{name}, {grid_label}**\n\n" + markdown_table(quality_rows(bench, ks, bar), columns))
    return "\n\n".join(parts)
