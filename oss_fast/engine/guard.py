"""The validation guard of the multistep default (DESIGN §3.5).

A multistep schedule searched on a few noises can exploit them: judged on unseen noises its mean
PSNR rises while its tail (PSNR of the mean MSE, 10th-percentile PSNR) can fall far below the same
solver on a standard schedule. So before the default returns, its candidates -- the solver's
searched schedules and the standard ones (the Euler search's schedule, the grid's uniform and
time-shifted steps) -- are sampled with the solver from fresh noises drawn like z (standard normal,
each with the conditioning of a search noise in turn) and compared with the teacher from those
noises. Every model row of it is counted.

The judge: a candidate's shortfall is how far (dB) it falls below the best standard schedule on its
worst measure (mean PSNR, PSNR of the mean MSE, 10th-percentile PSNR) at the lower quartile of paired
bootstrap resamplings of the validation noises; the least shortfall is kept (ties: the largest sum of
the three measures on all validation noises). A searched schedule is kept, then, only where it is not
below the standard schedules on any of the three measures in three resamplings out of four: where a
few noises decide, the judge does not bet the tail on them.

`guarded` runs it all for an Engine (engine/search.py): the searches that give the candidates, then
the validation (`validation`: the fresh noises' teacher and candidates sampled, then `judge`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import dp
from ..grid import shifted_steps, uniform_steps
from ..metrics import peak, psnr_measures, psnr_summary, sample_errors
from ..ops import euler_rows
from ..solvers import Trajectory, get_solver
from .aggregation import schedule_of
from .levels import LevelSearch
from .refine import VelocityCache, refined
from .velocity import first_non_finite, overflow_error

MAX_CANDIDATES = 5  # Euler search, searched (joint), searched (joint_rms), uniform, time-shifted
SEED_OFFSET = 1_000_000  # fresh noises: seed + this, never the seeds the reports draw held-out noises with
RESAMPLES = 200
QUANTILE = 0.25


@dataclass
class Verdict:
    """One candidate on the validation noises: PSNRs (dB) to their teacher, and `shortfall`, what
    the judge minimises (dB below the best standard schedule on its worst measure, 0 when none)."""

    name: str
    steps: list
    mean_psnr: float
    psnr: float
    p10_psnr: float
    min_psnr: float
    shortfall: float = 0.0


@dataclass
class GuardReport:
    """What the guard did: the candidate kept, the fresh noises it judged on, every verdict (kept first)."""

    chosen: str
    noises: int
    verdicts: list = field(default_factory=list)

    def summary(self) -> str:
        first = self.verdicts[0]
        standards = [v for v in self.verdicts if not v.name.startswith("searched")]
        best = max(standards, key=lambda v: v.mean_psnr)
        lead = (f"; {first.mean_psnr - best.mean_psnr:+.2f} dB mean PSNR over {best.name}" if first is not best else "")
        return (f"kept {first.name} (on {self.noises} fresh noises: mean PSNR {first.mean_psnr:.2f}, PSNR of the mean "
                f"MSE {first.psnr:.2f}, 10th percentile {first.p10_psnr:.2f} dB{lead})")


def aggregate_of(name: str) -> str:
    """The aggregation behind a candidate's name: the searches' own, "median" for the Euler search,
    "fixed" for uniform and time-shifted steps."""
    first = name.split(" = ")[0]
    if first.startswith("searched ("):
        return first[len("searched ("):-1]
    return "median" if first == "Euler search" else "fixed"


def fresh_noises(shape, count: int, seed: int, dtype, device) -> torch.Tensor:
    """count standard-normal noises [count, *shape], seeded (on the CPU, so any device draws the same)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((count,) + tuple(shape), generator=gen, dtype=torch.float64).to(dtype).to(device)


def teacher_rollout(call, z: torch.Tensor, samples: torch.Tensor, s: torch.Tensor, float32: bool, bar=None):
    """The N-step Euler teacher's samples [V, D] from noises z [V, D]; call(x, grid, samples, where)
    evaluates the model on rows."""
    x = z
    for i in range(s.numel() - 1, 0, -1):
        grid = torch.full((z.shape[0],), i, dtype=torch.long, device=z.device)
        v = call(x, grid, samples, "in the validation teacher rollout")
        x = euler_rows(x, v, (s[i - 1] - s[i]).expand(z.shape[0]), float32)
        bad = first_non_finite(x)
        if bad is not None:  # every rank holds all of x: each raises alike
            raise overflow_error("the validation teacher's state", i - 1, bad, z.dtype, "fresh noise")
        if bar is not None:
            bar.update()
    return x


def sample_paths(call, z: torch.Tensor, samples: torch.Tensor, s: torch.Tensor, paths: list, solver,
                 float32: bool, bar=None) -> torch.Tensor:
    """Samples [P, V, D] of every path (K ascending grid indices each) from the noises z [V, D]
    with the solver: the paths advance together, one batch of model rows per step for all of them."""
    P, V = len(paths), z.shape[0]
    top_down = torch.tensor([[0] + list(p) for p in paths], dtype=torch.long, device=z.device).flip(1)  # [P, K + 1]
    top_down = top_down.repeat_interleave(V, dim=0)  # a row per (path, noise)
    rows = samples.repeat(P)
    trajectory = Trajectory(solver, z.repeat(P, 1), s[top_down[:, 0]], float32)
    for k in range(top_down.shape[1] - 1):
        v = call(trajectory.x, top_down[:, k], rows, "in the validation of candidate schedules")
        trajectory.step(v, s[top_down[:, k + 1]])
        if bar is not None:
            bar.update()
    return trajectory.x.reshape(P, V, -1)


def judge(names: list, paths: list, samples: torch.Tensor, teacher: torch.Tensor, standards, seed: int = 0) -> list:
    """Verdicts of the candidates (samples [P, V, D] against teacher [V, D]), the kept one first (see
    the module's docstring); `standards`: the names of the standard schedules (a merged name such as
    "uniform = Euler search" counts when one of its parts does)."""
    R2 = peak(teacher)
    errors = torch.stack([sample_errors(x, teacher) for x in samples])  # [P, V]
    V = errors.shape[1]
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, V, (RESAMPLES, V), generator=gen)
    resampled = psnr_measures(errors[:, picks].clamp_min(1e-300), R2)  # [P, RESAMPLES, 3], finite
    is_standard = [any(part in standards for part in name.split(" = ")) for name in names]
    best = resampled[torch.tensor(is_standard)].max(0).values  # [RESAMPLES, 3]
    low = torch.quantile(resampled - best, QUANTILE, dim=1)  # [P, 3]
    shortfall = (-low.min(1).values).clamp_min(0)
    verdicts = []
    for p, (name, path) in enumerate(zip(names, paths)):
        summary = psnr_summary(errors[p], R2)
        verdicts.append(Verdict(name, list(path), summary["mean_psnr"], summary["psnr"], summary["p10_psnr"],
                                summary["min_psnr"], float(shortfall[p]) + 0.0))  # + 0.0: no -0.0
    return sorted(verdicts, key=lambda v: (round(v.shortfall, 9), -(v.mean_psnr + v.psnr + v.p10_psnr)))


def guarded(engine, T: torch.Tensor) -> GuardReport:
    """The guard's report on the multistep default of an Engine (DESIGN §3.5), the kept candidate
    first: the candidates -- the Euler search's schedule (the refined median search, exactly what the
    Euler default returns), the solver's refined searches begun around it (joint and joint_rms, or
    the aggregation asked for, sharing one velocity cache), the grid's uniform and time-shifted (3)
    steps -- judged on fresh noises; the searches stop where the validation would no longer fit in
    the published search's rows N (K + 1) B, and the validation takes as many noises (at least B, at
    most 4 B) as those rows leave, unless opts.validation_noises says how many."""
    opts, B, K = engine.opts, engine.B, engine.K
    published = engine.N * (K + 1) * B
    per_noise = engine.N + MAX_CANDIDATES * K  # a validation noise's rows: its teacher, every candidate
    reserve = (opts.validation_noises or B) * per_noise
    paths, _ = refined(LevelSearch(engine, get_solver("euler"), "median"), T)
    euler_path = dp.median_steps(paths).tolist()
    found = {"Euler search": euler_path}
    cache = VelocityCache()
    for aggregate in (opts.aggregate,) if opts.aggregate_given else ("joint", "joint_rms"):
        paths, _ = refined(LevelSearch(engine, engine.solver, aggregate), T, start=euler_path, cache=cache,
                           limit=max(0, published - reserve))
        found[f"searched ({aggregate})"] = schedule_of(paths, aggregate)
    s = engine.s.cpu()
    found["uniform"] = uniform_steps(s, K)
    found["time-shifted (3)"] = shifted_steps(s, K)
    count = opts.validation_noises or min(4 * B, max(B, (published - engine.spent) // per_noise))
    verdicts = validation(engine, found, count, opts.seed + SEED_OFFSET)
    return GuardReport(chosen=verdicts[0].name, noises=count, verdicts=verdicts)


def validation(engine, found: dict, count: int, seed: int) -> list:
    """Verdicts of an Engine's distinct candidate schedules (name -> steps) on `count` fresh noises,
    noise v with the conditioning of search noise v % B; the kept one first."""
    names, paths = [], []
    for name, path in found.items():
        if path in paths:
            names[paths.index(path)] += f" = {name}"
        else:
            names.append(name)
            paths.append(path)
    before = engine.spent
    z = fresh_noises((engine.D,), count, seed, engine.z.dtype, engine.device)
    samples = torch.arange(count, device=engine.device) % engine.B
    float32 = engine.opts.float32
    with engine.progress_bar(engine.N + engine.K, f"validation ({count} fresh noises, {len(paths)} schedules)") as bar:
        teacher = teacher_rollout(engine.velocities, z, samples, engine.s, float32, bar)
        x = sample_paths(engine.velocities, z, samples, engine.s, paths, engine.solver, float32, bar)
    engine.stats.validation_rows = engine.spent - before
    return judge(names, paths, x, teacher, ("uniform", "time-shifted (3)", "Euler search"), seed)
