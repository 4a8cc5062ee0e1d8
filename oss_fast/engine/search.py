"""The level loop of DESIGN §3–§4.

Per level: gather the candidate states that need a model call (every grid index at level 0, then
only the states the previous level changed) → model on rows of all samples at once in fixed-size
chunks → fused cost op over (candidate, target) pairs → per-target min/argmin and the DP update in
csrc → gather-axpy of the winning states. Nothing of size N x N x D is materialised.

With refinement (DESIGN §3.6, engine/refine.py) the same level loop runs as passes: one on a
coarse sub-grid, then passes restricted to a band around the last path, which take the model
outputs of states met before from a cache.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import time
from dataclasses import dataclass

import torch

from .. import dp
from ..grid import shifted_steps, uniform_steps
from ..progress import progress
from ..ops import combo_costs, euler_costs, euler_rows, step_rows
from ..ops import pick_backend
from ..solvers import get_solver
from .checkpoint import Checkpoint, validate_state
from .distributed import Comm
from .inputs import SampleInputs
from .memory import check_search_memory
from . import guard, pairs
from .options import JOINT, SearchOptions
from .refine import Restriction, RowBudgetSpent, VelocityCache, band, coarse, default_stride
from .runner import ModelRunner, synchronize
from .velocity import first_non_finite, overflow_error
from .selection import CostSelection
from .stats import SearchStats


def mean_over_samples(per_sample: torch.Tensor) -> torch.Tensor:
    """Mean over dimension 0, summed in sample order as the reference sums (bitwise equal)."""
    total = per_sample[0].clone()
    for b in range(1, per_sample.shape[0]):
        total += per_sample[b]
    return total / per_sample.shape[0]


def joint_cost(per_sample: torch.Tensor, aggregate: str) -> torch.Tensor:
    """The cost a joint decision minimises, over dimension 0 (the samples), in sample order as the
    reference sums (bitwise equal): the mean ("joint"), or the square of the mean root ("joint_rms":
    for the squared norm, the mean RMS error), which one badly served noise steers less."""
    if aggregate == "joint":
        return mean_over_samples(per_sample)
    root = mean_over_samples(per_sample.clamp_min(0).sqrt())  # Gram-form costs can round below 0
    return root * root


# what a checkpoint of the levels holds beside the teacher trajectory
LEVEL_KEYS = ("level", "best", "from_", "live", "state", "hist", "hist_times", "depth")


@dataclass
class History:
    """What a multistep solver remembers at the rows of a level: vectors [R, H, D] (float64), the
    times of the two previous steps [R, 2] and the steps taken so far (capped at 2) [R]."""

    vectors: torch.Tensor
    times: torch.Tensor
    depth: torch.Tensor


@dataclass
class LevelRows:
    """The model rows of one level: row r evaluates the state of sample `sample[r]` at grid index
    `grid[r]`; `group`/`cand` list the live (DP group, grid index) candidates, in row order for
    per-sample groups (joint: each candidate once, evaluated by every sample)."""

    sample: torch.Tensor
    grid: torch.Tensor
    group: torch.Tensor
    cand: torch.Tensor

    def __len__(self) -> int:
        return self.grid.numel()


class Engine:
    """One search. With a process group (Comm) the model calls are shared by the ranks; with a
    Checkpoint the state is saved after the teacher and after each level, and resumed from."""

    def __init__(self, model, z: torch.Tensor, inputs: SampleInputs, opts: SearchOptions, comm: Comm | None = None,
                 checkpoint: Checkpoint | None = None, resume: bool = False):
        # before anything of the search's size is allocated (the selection's indices included)
        check_search_memory(opts, z.shape[0], tuple(z.shape[1:]), z.element_size(), z.device)
        self.model = model
        self.opts = opts
        self.device = z.device
        self.B = z.shape[0]
        self.shape = tuple(z.shape[1:])
        self.D = math.prod(self.shape)
        self.z = z.reshape(self.B, self.D)
        self.N = opts.teacher_steps
        self.J = self.N + 1
        self.K = opts.student_steps
        self.s = torch.as_tensor(model.fm_steps).detach().double()[: self.J].to(self.device).contiguous()
        self.runner = ModelRunner(model, inputs, opts.chunk, self.device)
        self.comm = comm or Comm()
        self.checkpoint = checkpoint
        self.resume = resume
        self.stats = SearchStats(chunk=opts.chunk, samples=self.B, world_size=self.comm.size)
        self.spent = 0  # model rows evaluated so far by all ranks together, the teacher's included
        self.guard_report = None  # the validation guard's report, when it ran
        self.selection = CostSelection(self.shape, opts, self.device)

    # ------------------------------------------------------------------ helpers
    def _call(self, x: torch.Tensor, grid: torch.Tensor, samples: torch.Tensor, where: str) -> torch.Tensor:
        """Velocities [R, D] of all R rows: this rank evaluates its shard, the ranks share them."""
        R = x.shape[0]
        self.spent += R
        mine = self.comm.shard(R)
        v = self.runner(x[mine].reshape((-1,) + self.shape), grid[mine], samples[mine])
        v = v.reshape(v.shape[0], self.D)
        self._check_finite(v, grid[mine], samples[mine], where)
        return self.comm.gather_rows(v, R)

    def _first_non_finite(self, rows, grid, samples):
        """(grid index, sample) of the first row holding NaN/inf on any rank, or None: the same on
        every rank (rows with their grid indices and samples)."""
        bad = first_non_finite(rows)
        return self.comm.first_report(None if bad is None else (int(grid[bad]), int(samples[bad])))

    def _check_finite(self, v, grid, samples, where: str):
        """Raises on every rank if any rank's velocities hold NaN/inf."""
        report = self._first_non_finite(v, grid, samples)
        if report is not None:
            raise FloatingPointError(f"the model returned NaN or inf {where} at grid index {report[0]} "
                                     f"(sample {report[1]})")

    def _check_states(self, x, grid, samples, what: str):
        """Raises on every rank if any rank's states (finite velocities stepped on) left their dtype's range."""
        report = self._first_non_finite(x, grid, samples)
        if report is not None:
            raise overflow_error(what, report[0], report[1], self.z.dtype)

    def _costs(self, x, v, targets, row_sample, row_grid, sel, bound=None, history=None, coef=None):
        """Costs [R, J'] of all rows -- Euler jumps, or with a multistep solver's history and per-pair
        coefficients coef [R, J', 2 + H] its jumps: this rank computes its shard's, the ranks share them."""
        begin = time.perf_counter()
        R = x.shape[0]
        mine = self.comm.shard(R)
        x, v = x[mine], v[mine]
        if sel is not None:
            x, v = x[:, sel], v[:, sel]
        self.stats.cost_backend = pick_backend(x, v, targets, self.opts.norm)
        if history is None:
            costs = euler_costs(x, v, targets, row_sample[mine], row_grid[mine], self.s, norm=self.opts.norm,
                                float32=self.opts.float32, backend=self.stats.cost_backend, bound=bound)
        else:
            h = history.vectors[mine]
            costs = combo_costs(x, v, h if sel is None else h[:, :, sel], coef[mine], targets, row_sample[mine],
                                row_grid[mine], norm=self.opts.norm, backend=self.stats.cost_backend, bound=bound)
        costs = self.comm.gather_rows(costs, R)
        synchronize(self.device)
        self.stats.seconds_costs += time.perf_counter() - begin
        return costs

    def _bar(self, total: int, desc: str, initial: int = 0):
        return progress(total, desc, enabled=self.opts.progress and self.comm.rank == 0, initial=initial)

    def _save(self, **state):
        if self.checkpoint is not None:
            self.checkpoint.save(**state)

    # ------------------------------------------------------------------ teacher
    def teacher(self, keep_velocities: bool):
        """T [J, B, D] (and V [J, B, D] when asked): T[N] = z, T[i-1] = T[i] + v(T[i], i) ds.
        The ranks roll out disjoint samples and share the trajectories at the end."""
        begin = time.perf_counter()
        N = self.N
        mine = self.comm.shard(self.B)
        samples = torch.arange(self.B, device=self.device)[mine]
        b = samples.numel()
        T = torch.empty((self.J, b, self.D), dtype=self.z.dtype, device=self.device)
        V = None
        T[N] = self.z[mine]
        x = self.z[mine]
        with self._bar(N, "teacher") as bar:
            for i in range(N, 0, -1):
                grid = torch.full((b,), i, dtype=torch.long, device=self.device)
                v = self.runner(x.reshape((-1,) + self.shape), grid, samples).reshape(b, self.D)
                self._check_finite(v, grid, samples, "in the teacher rollout")
                if keep_velocities:
                    if V is None:
                        V = torch.empty((self.J, b, self.D), dtype=v.dtype, device=self.device)
                    V[i] = v
                x = euler_rows(x, v, (self.s[i - 1] - self.s[i]).expand(b), self.opts.float32)
                self._check_states(x, grid - 1, samples, "the teacher's state")
                T[i - 1] = x
                bar.update()
        self.spent += N * self.B
        T = self.comm.gather_rows(T.transpose(0, 1), self.B).transpose(0, 1).contiguous()
        if V is not None:
            V = self.comm.gather_rows(V.transpose(0, 1), self.B).transpose(0, 1).contiguous()
        self.stats.teacher_calls = self.runner.calls
        self.stats.seconds_teacher = time.perf_counter() - begin
        return T, V

    def groups(self, opts: SearchOptions) -> int:
        """How many DPs a search runs: one for a joint aggregation, else one per sample."""
        return 1 if opts.aggregate in JOINT else self.B

    # ------------------------------------------------------------------ modes compat / exact
    def initial_levels_state(self, opts: SearchOptions, restriction: Restriction | None = None) -> dict:
        """best, from, the candidates to evaluate (live) and the states, before level 0; with a
        restriction (refinement passes) only its starts are live and each state's chain of grid
        indices is kept (trace, steps: what the velocity cache knows a state by)."""
        B, J, K, N = self.B, self.J, self.K, self.N
        G = self.groups(opts)
        dev = self.device
        live = torch.zeros((G, J), dtype=torch.bool, device=dev)
        if opts.mode == "compat" or opts.free_start:
            state = self.z[:, None, :].expand(B, J, self.D).clone()
            # compat: every grid index holds the noise; exact: an entry that cannot finish in K steps is dropped
            live[:, 1 if opts.mode == "compat" else K:] = True
        else:
            state = torch.zeros((B, J, self.D), dtype=self.z.dtype, device=dev)  # finite: checkpoints check it
            state[:, N] = self.z
            live[:, N] = True
        saved = dict(level=0, best=torch.full((G, J), math.inf, dtype=torch.float64, device=dev),
                     from_=torch.full((G, K + 1, J), N, dtype=torch.int64, device=dev), live=live, state=state)
        if restriction is not None:
            live &= restriction.starts
            saved["trace"] = torch.full((B, J, K + 1), -1, dtype=torch.int64, device=dev)
            saved["trace"][:, :, 0] = torch.arange(J, device=dev)
            saved["steps"] = torch.zeros((B, J), dtype=torch.int64, device=dev)
        H = get_solver(opts.solver).history
        if H:  # a multistep solver's memory of each state (none yet: depth 0)
            saved.update(hist=torch.zeros((B, J, H, self.D), dtype=torch.float64, device=dev),
                         hist_times=torch.ones((B, J, 2), dtype=torch.float64, device=dev),
                         depth=torch.zeros((B, J), dtype=torch.int64, device=dev))
        return saved

    def level_rows(self, live: torch.Tensor, joint: bool) -> LevelRows:
        """The rows that evaluate the live candidates (joint: every sample evaluates each one)."""
        group, cand = live.nonzero(as_tuple=True)
        if not joint:
            return LevelRows(sample=group, grid=cand, group=group, cand=cand)
        samples = torch.arange(self.B, device=self.device)
        return LevelRows(sample=samples.repeat_interleave(len(cand)), grid=cand.repeat(self.B), group=group, cand=cand)

    def evaluate(self, saved: dict, rows: LevelRows, level: int, cache: VelocityCache | None = None):
        """(x, v) [R, D]: the rows' states and their velocities (from the cache where it has them)."""
        x = saved["state"][rows.sample, rows.grid]
        before = self.runner.seconds
        if cache is None:
            v = self._call(x, rows.grid, rows.sample, f"at level {level}")
        else:
            at = (rows.sample, rows.grid)
            keys = cache.keys(rows.sample, saved["trace"][at], saved["steps"][at])
            found = cache.lookup(keys)
            miss = [r for r, f in enumerate(found) if f is None]
            cache.spend(len(miss))
            if miss:
                m = torch.tensor(miss, dtype=torch.int64, device=self.device)
                fresh = self._call(x[m], rows.grid[m], rows.sample[m], f"at level {level}")
                for r, f in zip(miss, fresh):
                    found[r] = f
            v = torch.stack(found) if found else torch.empty_like(x)
            cache.store(keys, v)
        self.stats.seconds_candidates += self.runner.seconds - before
        return x, v

    def grouped_costs(self, costs: torch.Tensor, rows: LevelRows, G: int, aggregate: str):
        """The DP's input: costs [G, M, J] of each group's M candidates (padded with +inf) and their
        grid indices cand [G, M] (-1 = padding), from row costs [R, J'] (J' <= J targets)."""
        J, Jt = self.J, costs.shape[1]
        dev = self.device
        if aggregate in JOINT:  # a candidate's cost is joint_cost over the samples
            mean = joint_cost(costs.reshape(self.B, -1, Jt), aggregate)
            grouped = torch.full((1, mean.shape[0], J), math.inf, dtype=torch.float64, device=dev)
            grouped[0, :, :Jt] = mean
            return grouped, rows.cand[None].contiguous()
        counts = torch.bincount(rows.group, minlength=G)
        M = int(counts.max()) if len(rows) else 0
        pos = torch.arange(len(rows), device=dev) - (torch.cumsum(counts, 0) - counts)[rows.group]
        grouped = torch.full((G, M, J), math.inf, dtype=torch.float64, device=dev)
        cand = torch.full((G, M), -1, dtype=torch.int64, device=dev)
        grouped[rows.group, pos, :Jt] = costs
        cand[rows.group, pos] = rows.cand
        return grouped, cand

    def history_of(self, saved: dict, rows: LevelRows) -> History | None:
        """The multistep history of the rows' states (None for Euler)."""
        if "hist" not in saved:
            return None
        at = (rows.sample, rows.grid)
        return History(saved["hist"][at], saved["hist_times"][at], saved["depth"][at])

    def jump_coefficients(self, solver, history: History, rows: LevelRows, targets: int) -> torch.Tensor:
        """coef [R, targets, 2 + H]: the first row of the solver's step matrix for every jump of every
        row to grid indices 0..targets-1."""
        M = solver.matrix(self.s[rows.grid][:, None], self.s[None, :targets], history.times[:, 0, None],
                          history.times[:, 1, None], history.depth[:, None])
        return M[:, :, 0, :].contiguous()

    def advance(self, saved: dict, improved, from_k, rows: LevelRows, x, v, joint: bool, opts: SearchOptions,
                history: History | None = None) -> None:
        """Gather-axpy: each improved target j takes its winner's state one jump on (Euler, or the
        solver's step, which also gives the state's new history)."""
        state = saved["state"]
        win_g, win_j = improved.nonzero(as_tuple=True)
        win_i = from_k[win_g, win_j]
        if joint:  # the winner is shared: every sample moves its own state
            n = win_j.numel()
            win_b = torch.arange(self.B, device=self.device).repeat_interleave(n)
            win_j, win_i = win_j.repeat(self.B), win_i.repeat(self.B)
        else:
            win_b = win_g
        row_of = torch.full((self.B, self.J), -1, dtype=torch.int64, device=self.device)
        row_of[rows.sample, rows.grid] = torch.arange(len(rows), device=self.device)
        r = row_of[win_b, win_i]
        if "trace" in saved:  # the winner's chain, then the new index
            chains, steps = saved["trace"][win_b, win_i], saved["steps"][win_b, win_i] + 1
            chains[torch.arange(len(steps), device=self.device), steps] = win_j
            saved["trace"][win_b, win_j], saved["steps"][win_b, win_j] = chains, steps
        if history is None:
            state[win_b, win_j] = euler_rows(x[r], v[r], self.s[win_j] - self.s[win_i], self.opts.float32)
            return
        solver = get_solver(opts.solver)
        times, depth = history.times[r], history.depth[r]
        M = solver.matrix(self.s[win_i], self.s[win_j], times[:, 0], times[:, 1], depth).to(self.device)
        # x, v and history.vectors are this level's copies of the rows: the winners' rows step straight
        # into the states they win
        step_rows(M, x, v, history.vectors, src=r, dst=win_b * self.J + win_j, out_x=state.view(-1, self.D),
                  out_h=saved["hist"].view(-1, solver.history, self.D))
        s_prev, s_prev2, depth = solver.carried_times(self.s[win_i], times[:, 0], depth)
        saved["hist_times"][win_b, win_j] = torch.stack([s_prev, s_prev2], 1)
        saved["depth"][win_b, win_j] = depth

    def next_live(self, improved: torch.Tensor, level: int, mode: str) -> torch.Tensor:
        """The candidates of the next level: the states this level changed that can still be used
        (compat: not grid index 0; exact: a state at j after level+1 jumps needs j >= K-level-1)."""
        live = improved.clone()
        live[:, : 1 if mode == "compat" else max(1, self.K - level - 1)] = False
        return live

    def levels(self, T: torch.Tensor, saved: dict, opts: SearchOptions, restriction: Restriction | None = None,
               cache: VelocityCache | None = None, desc: str = "levels"):
        """(paths [G, K], costs [G]) of the DP of modes compat/exact (G = 1 for joint, else B), from
        the level state `saved` (initial_levels_state(), or a checkpoint's); costs: what the DP
        recorded for reaching grid index 0 (exact: the traced path's cost). A refinement pass
        (restriction, cache) lands only where allowed and is not checkpointed."""
        K, J = self.K, self.J
        joint = opts.aggregate in JOINT
        best, from_, live = saved["best"], saved["from_"], saved["live"]
        G = best.shape[0]
        solver = get_solver(opts.solver)
        fixed_targets = None if opts.random_channels else self.selection.targets(T, self.selection.at(0))
        with self._bar(K, desc, initial=saved["level"]) as bar:
            for k in range(saved["level"], K):
                sel = self.selection.at(k)
                targets = fixed_targets if fixed_targets is not None else self.selection.targets(T, sel)
                rows = self.level_rows(live, joint)
                self.stats.rows_per_level.append(len(rows))
                x, v = self.evaluate(saved, rows, k, cache)
                Jt = 1 if k == K - 1 else J  # the trace-back reads only target 0 of the last level
                # compat, one sample per group: a cost not below the running best cannot improve it
                bound = best[:, :Jt].contiguous() if opts.mode == "compat" and not joint else None
                history = self.history_of(saved, rows)
                coef = None if history is None else self.jump_coefficients(solver, history, rows, Jt)
                costs = self._costs(x, v, targets[:Jt], rows.sample, rows.grid, sel, bound, history, coef)

                begin = time.perf_counter()
                grouped, cand = self.grouped_costs(costs, rows, G, opts.aggregate)
                if restriction is not None:
                    grouped.masked_fill_(~restriction.targets[:, k, None, :], math.inf)
                improved = dp.level_update(opts.mode, best, from_, k, grouped, cand)
                self.advance(saved, improved, from_[:, k], rows, x, v, joint, opts, history)
                live = self.next_live(improved, k, opts.mode)
                synchronize(self.device)
                self.stats.seconds_dp += time.perf_counter() - begin
                saved.update(level=k + 1, live=live)
                if restriction is None:
                    self._save(phase="levels", T=T, **{key: saved[key] for key in LEVEL_KEYS if key in saved})
                bar.update()
                bar.set_postfix(candidates=len(rows))
        begin = time.perf_counter()
        paths = dp.traceback(from_)
        self.stats.seconds_dp += time.perf_counter() - begin
        return paths, best[:, 0]

    def refined(self, T: torch.Tensor, opts: SearchOptions, start: list | None = None,
                cache: VelocityCache | None = None, limit: int | None = None):
        """(paths, costs) of modes compat/exact by refinement (DESIGN §3.6): a pass on every
        stride-th grid index -- or, given a `start` path (K grid indices), none: the bands begin
        around it -- then passes restricted to a band around the last pass's paths until they stop
        changing (at most opts.refine_rounds), states met before taken from the cache (which
        searches of one solver may share). Band passes stop where they would take the model rows
        spent so far, teacher and other searches included, past `limit` (default opts.max_rows, else
        half the published search's N (K + 1) per sample); the last completed pass stands (the
        start path if none completed)."""
        G = self.groups(opts)
        stride = default_stride(self.N, self.K, opts.stride)
        if stride == 1 and start is None:  # too few grid indices to coarsen: the full search
            return self.levels(T, self.initial_levels_state(opts), opts)
        width = opts.band if opts.band is not None else stride
        self.stats.refine_stride, self.stats.refine_band = stride, width
        if limit is None:
            limit = opts.max_rows if opts.max_rows is not None else self.N * (self.K + 1) * self.B // 2
        cache = VelocityCache() if cache is None else cache
        result = None  # the last completed pass's (paths, costs)
        if start is None:
            restriction = coarse(G, self.K, self.N, stride, self.device)
            desc = f"coarse pass (every {stride}th index)"
        else:
            result = (torch.tensor([start] * G, dtype=torch.int64, device=self.device),
                      torch.full((G,), math.inf, dtype=torch.float64, device=self.device))
            restriction = band(result[0], self.N, width)
            desc = f"band pass 1 (±{width} indices)"
            cache.allowance = max(0, limit - self.spent)
        hits = cache.hits
        for round_ in range(opts.refine_rounds + 1):
            before = self.spent
            try:
                found = self.levels(T, self.initial_levels_state(opts, restriction), opts, restriction, cache, desc)
            except RowBudgetSpent:
                self.stats.refine_stopped_by_budget = True
                break
            finally:
                self.stats.rows_per_pass.append(self.spent - before)
            stable = result is not None and torch.equal(found[0], result[0])
            result = found
            if stable:
                break
            restriction = band(result[0], self.N, width)
            desc = f"band pass {round_ + 1 + (start is not None)} (±{width} indices)"
            if cache.allowance is None:  # the band passes share what the teacher and the coarse pass left
                cache.allowance = max(0, limit - self.spent)
        self.stats.velocity_cache_hits += cache.hits - hits
        return result

    # ------------------------------------------------------------------ mode teacher
    def teacher_paths(self, T: torch.Tensor, V: torch.Tensor, opts: SearchOptions):
        """(paths [G, K], objective values [G]): K-jump shortest paths over the teacher's own jump
        costs (DESIGN §3.3); for a multistep solver over pair states (engine/pairs.py)."""
        B, J, N = self.B, self.J, self.N
        solver = get_solver(opts.solver)
        if solver.history:
            return self.teacher_pair_paths(T, V, opts, solver)
        sel = self.selection.at(0)
        targets = self.selection.targets(T, sel)
        C = torch.full((B, J, J), math.inf, dtype=torch.float64, device=self.device)
        grid_all = torch.arange(1, N + 1, device=self.device)
        for b in range(B):
            for start in range(0, N, opts.chunk):
                grid = grid_all[start:start + opts.chunk]
                samples = torch.full_like(grid, b)
                C[b, grid] = self._costs(T[grid, b], V[grid, b], targets, samples, grid, sel)
        begin = time.perf_counter()
        if opts.aggregate in JOINT:
            C = joint_cost(C, opts.aggregate)[None]
        paths, value = dp.kstep_path(C.contiguous(), self.K, opts.objective)
        self.stats.seconds_dp += time.perf_counter() - begin
        return paths, value

    def teacher_pair_paths(self, T, V, opts: SearchOptions, solver):
        begin = time.perf_counter()
        sel = self.selection.at(0)
        T, V = (T, V) if sel is None else (T[:, :, sel], V[:, :, sel])
        V = V.clone()
        V[0] = 0  # the teacher has no velocity at grid index 0; no jump reads it
        C = pairs.pair_costs(pairs.gram(T, V), self.s, solver, T.shape[2])
        self.stats.seconds_costs += time.perf_counter() - begin
        begin = time.perf_counter()
        groups = [joint_cost(C, opts.aggregate)] if opts.aggregate in JOINT else list(C)
        found = [pairs.pair_path(c, self.K, opts.objective) for c in groups]
        self.stats.seconds_dp += time.perf_counter() - begin
        paths = torch.tensor([sorted(p) for p, _ in found], dtype=torch.int64)
        return paths, torch.tensor([v for _, v in found], dtype=torch.float64)

    # ------------------------------------------------------------------ the guarded multistep default
    def guarded(self, T: torch.Tensor, opts: SearchOptions):
        """(path [1, K], schedule) of the multistep default (DESIGN §3.5, engine/guard.py): the
        candidates -- the Euler search's schedule (the refined median search, exactly what the Euler
        default returns), the solver's refined searches begun around it (joint and joint_rms, or the
        aggregation asked for, sharing one velocity cache), the grid's uniform and time-shifted (3)
        steps -- judged on fresh noises; the searches stop where the validation would no longer fit
        in the published search's rows N (K + 1) B, and the validation takes as many noises (at least
        B, at most 4 B) as those rows leave, unless opts.validation_noises says how many."""
        published = self.N * (self.K + 1) * self.B
        per_noise = self.N + guard.MAX_CANDIDATES * self.K  # a validation noise's rows: its teacher, every candidate
        reserve = (opts.validation_noises or self.B) * per_noise
        paths, _ = self.refined(T, dataclasses.replace(opts, solver="euler", aggregate="median", max_rows=None))
        euler_path = dp.median_steps(paths).tolist()
        found = {"Euler search": euler_path}
        cache = VelocityCache()
        for aggregate in (opts.aggregate,) if opts.aggregate_given else ("joint", "joint_rms"):
            paths, _ = self.refined(T, dataclasses.replace(opts, aggregate=aggregate), start=euler_path, cache=cache,
                                    limit=max(0, published - reserve))
            found[f"searched ({aggregate})"] = self.aggregated(paths, aggregate)
        s = self.s.cpu()
        found["uniform"] = uniform_steps(s, self.K)
        found["time-shifted (3)"] = shifted_steps(s, self.K)
        count = opts.validation_noises or min(4 * self.B, max(self.B, (published - self.spent) // per_noise))
        verdicts = self.validation(found, count, opts.seed + guard.SEED_OFFSET)
        self.guard_report = guard.GuardReport(chosen=verdicts[0].name, noises=count, verdicts=verdicts)
        return torch.tensor([verdicts[0].steps]), verdicts[0].steps

    def validation(self, found: dict, count: int, seed: int) -> list:
        """Verdicts (engine/guard.py) of the distinct candidate schedules on `count` fresh noises,
        noise v with the conditioning of search noise v % B; the kept one first."""
        names, paths = [], []
        for name, path in found.items():
            if path in paths:
                names[paths.index(path)] += f" = {name}"
            else:
                names.append(name)
                paths.append(path)
        before = self.spent
        z = guard.fresh_noises((self.D,), count, seed, self.z.dtype, self.device)
        samples = torch.arange(count, device=self.device) % self.B
        with self._bar(self.N + self.K, f"validation ({count} fresh noises, {len(paths)} schedules)") as bar:
            teacher = guard.teacher_rollout(self._call, z, samples, self.s, self.opts.float32, bar)
            x = guard.sample_paths(self._call, z, samples, self.s, paths, self.opts.solver, self.opts.float32, bar)
        self.stats.validation_rows = self.spent - before
        return guard.judge(names, paths, x, teacher, ("uniform", "time-shifted (3)", "Euler search"), seed)

    # ------------------------------------------------------------------ all of it
    @staticmethod
    def aggregated(paths: torch.Tensor, aggregate: str):
        """The one schedule of paths [G, K] (median rule or joint), None for per_sample."""
        if aggregate == "median":
            return dp.median_steps(paths).tolist()
        if aggregate in JOINT:
            return paths[0].tolist()
        return None

    def single(self, T, V, saved: dict | None, opts: SearchOptions):
        """(paths, costs, schedule) of one mode (compat/exact from `saved` levels when resuming)."""
        if opts.mode == "teacher":
            paths, costs = self.teacher_paths(T, V, opts)
        elif opts.validate and saved is None:
            paths, schedule = self.guarded(T, opts)
            return paths, torch.full((1,), math.nan, dtype=torch.float64), schedule
        elif opts.refine and saved is None:
            paths, costs = self.refined(T, opts)
        else:
            paths, costs = self.levels(T, saved if saved is not None else self.initial_levels_state(opts), opts)
        return paths, costs, self.aggregated(paths, opts.aggregate)

    def run(self):
        """Returns (paths [G, K] as lists, their recorded costs [G], schedule or None, mode, aggregate,
        stats)."""
        begin = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        opts = self.opts
        saved = self.checkpoint.load(self.device) if self.checkpoint is not None and self.resume else None
        if saved is not None:
            validate_state(saved, f"checkpoint {self.checkpoint.path}", B=self.B, J=self.J, D=self.D, K=self.K,
                           G=self.groups(opts), dtype=self.z.dtype,
                           H=get_solver(opts.solver).history)
            T, V = saved["T"], saved.get("V")
            self.spent = self.N * self.B  # row budgets count the teacher's rows, spent before the checkpoint
            self.stats.resumed_from = "the teacher rollout" if saved["phase"] == "teacher" else f"level {saved['level'] - 1}"
        else:
            T, V = self.teacher(keep_velocities=opts.mode == "teacher")
            self._save(phase="teacher", T=T, **({} if V is None else dict(V=V)))
        teacher_rows = self.runner.rows
        levels_saved = saved if saved is not None and saved["phase"] == "levels" else None
        paths, costs, schedule = self.single(T, V, levels_saved, opts)
        self._finish_stats(begin, teacher_rows)
        paths = paths.tolist()
        for path in paths + ([schedule] if schedule is not None else []):
            self._check_path(path, opts)
        aggregate = opts.aggregate if self.guard_report is None else guard.aggregate_of(self.guard_report.chosen)
        return paths, costs.tolist(), schedule, opts.mode, aggregate, self.stats

    def _check_path(self, path: list[int], opts: SearchOptions) -> None:
        """A path handed to the user is K grid indices in [1, N], ascending (the drop-ins' compat
        with K >= N repeats indices, as the published code does)."""
        ascending = all(b > a for a, b in zip(path, path[1:]))
        non_decreasing = all(b >= a for a, b in zip(path, path[1:]))
        if len(path) != self.K or not non_decreasing or not all(1 <= i <= self.N for i in path):
            raise RuntimeError(f"oss_fast produced an invalid path {path} (mode {opts.mode}, K={self.K}, "
                               f"N={self.N}); this is a bug: please report it with the inputs")
        if not ascending and not opts.published:
            # compat's trace-back reads one row per level; a chain that reaches the noise in fewer
            # than K jumps repeats N (the published search returns that)
            raise ValueError(f"mode {opts.mode!r} found a path with repeated grid indices {path}: the best "
                             f"chain has fewer than {self.K} distinct steps; use mode='exact' for exactly "
                             f"{self.K} steps")

    def _finish_stats(self, begin: float, teacher_rows: int) -> None:
        st = self.stats
        st.candidate_calls = self.runner.calls - st.teacher_calls
        st.teacher_rows = teacher_rows
        st.candidate_rows = self.runner.rows - teacher_rows
        st.published_rows = self.N * (self.K + 1) * self.B
        st.padded_rows = self.runner.padded_rows
        st.model_seconds = self.runner.seconds
        st.oom_backoffs = self.runner.oom_backoffs
        st.chunk = self.runner.chunk
        st.seconds_total = time.perf_counter() - begin
        if self.device.type == "cuda":
            st.peak_memory_bytes = torch.cuda.max_memory_allocated(self.device)
            st.memory_scope = "CUDA allocator peak"
        else:
            st.peak_memory_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            st.memory_scope = "process max RSS"
