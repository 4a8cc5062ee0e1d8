"""The level DP of modes compat and exact (DESIGN §3.1, §3.2, §4): its state between levels
(`LevelState`, what a checkpoint holds) and the loop over the levels (`LevelSearch`).

Per level: gather the candidate states that need a model call (every grid index at level 0, then
only the states the previous level changed) → model on rows of all samples at once in fixed-size
chunks → fused cost op over (candidate, target) pairs → per-target min/argmin and the DP update in
csrc → gather-axpy of the winning states. Nothing of size N x N x D is materialised.

A refinement pass (engine/refine.py) runs the same loop restricted to some grid indices, taking
the model outputs of states met before from a cache.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .. import dp
from ..ops import euler_rows, step_rows
from ..solvers import Solver
from .aggregation import group_count, joint_cost
from .options import JOINT
from .refine import Restriction, VelocityCache
from .runner import synchronize


@dataclass
class History:
    """What a multistep solver remembers of states (of a level state's [B, J], or of a level's rows
    [R]): vectors [..., H, D] (float64), the times of the two previous steps [..., 2] and the steps
    taken so far (capped at 2) [...]."""

    vectors: torch.Tensor
    times: torch.Tensor
    depth: torch.Tensor

    def at(self, sample: torch.Tensor, grid: torch.Tensor) -> History:
        """The history of the states of the given samples at the given grid indices."""
        return History(self.vectors[sample, grid], self.times[sample, grid], self.depth[sample, grid])


@dataclass
class LevelState:
    """The DP before level `level`: best costs [G, J], predecessors from_ [G, K + 1, J], the
    candidates the level evaluates (live [G, J]) and the states [B, J, D]; in a refinement pass each
    state's chain of grid indices (trace [B, J, K + 1], steps [B, J]: what the velocity cache knows
    a state by); with a multistep solver, the states' history."""

    level: int
    best: torch.Tensor
    from_: torch.Tensor
    live: torch.Tensor
    state: torch.Tensor
    trace: torch.Tensor | None = None
    steps: torch.Tensor | None = None
    history: History | None = None

    def to_checkpoint(self) -> dict:
        """The entries a checkpoint of the levels holds beside the teacher trajectory (a refinement
        pass's chains are never saved)."""
        saved = dict(level=self.level, best=self.best, from_=self.from_, live=self.live, state=self.state)
        if self.history is not None:
            saved.update(hist=self.history.vectors, hist_times=self.history.times, depth=self.history.depth)
        return saved

    @classmethod
    def from_checkpoint(cls, saved: dict) -> LevelState:
        """The level state of a checkpoint's entries (checked by checkpoint.validate_state)."""
        history = History(saved["hist"], saved["hist_times"], saved["depth"]) if "hist" in saved else None
        return cls(saved["level"], saved["best"], saved["from_"], saved["live"], saved["state"], history=history)


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


class LevelSearch:
    """The level DP of one search of an Engine (engine/search.py) with a solver and an aggregation
    (the guarded default runs several: engine/guard.py); the engine's options give the rest. Its
    model rows and costs go through the engine, which shares them over the ranks."""

    def __init__(self, engine, solver: Solver, aggregate: str):
        self.engine = engine
        self.solver = solver
        self.aggregate = aggregate
        self.joint = aggregate in JOINT
        self.groups = group_count(aggregate, engine.B)

    def initial_state(self, restriction: Restriction | None = None) -> LevelState:
        """best, from, the candidates to evaluate (live) and the states, before level 0; with a
        restriction (refinement passes) only its starts are live and each state's chain of grid
        indices is kept."""
        e = self.engine
        B, J, K, N, G = e.B, e.J, e.K, e.N, self.groups
        dev = e.device
        live = torch.zeros((G, J), dtype=torch.bool, device=dev)
        if e.opts.mode == "compat" or e.opts.free_start:
            state = e.z[:, None, :].expand(B, J, e.D).clone()
            # compat: every grid index holds the noise; exact: an entry that cannot finish in K steps is dropped
            live[:, 1 if e.opts.mode == "compat" else K:] = True
        else:
            state = torch.zeros((B, J, e.D), dtype=e.z.dtype, device=dev)  # finite: checkpoints check it
            state[:, N] = e.z
            live[:, N] = True
        levels = LevelState(level=0, best=torch.full((G, J), math.inf, dtype=torch.float64, device=dev),
                            from_=torch.full((G, K + 1, J), N, dtype=torch.int64, device=dev), live=live,
                            state=state)
        if restriction is not None:
            live &= restriction.starts
            levels.trace = torch.full((B, J, K + 1), -1, dtype=torch.int64, device=dev)
            levels.trace[:, :, 0] = torch.arange(J, device=dev)
            levels.steps = torch.zeros((B, J), dtype=torch.int64, device=dev)
        H = self.solver.history
        if H:  # a multistep solver's memory of each state (none yet: depth 0)
            levels.history = History(vectors=torch.zeros((B, J, H, e.D), dtype=torch.float64, device=dev),
                                     times=torch.ones((B, J, 2), dtype=torch.float64, device=dev),
                                     depth=torch.zeros((B, J), dtype=torch.int64, device=dev))
        return levels

    def level_rows(self, live: torch.Tensor) -> LevelRows:
        """The rows that evaluate the live candidates (joint: every sample evaluates each one)."""
        group, cand = live.nonzero(as_tuple=True)
        if not self.joint:
            return LevelRows(sample=group, grid=cand, group=group, cand=cand)
        B = self.engine.B
        samples = torch.arange(B, device=self.engine.device)
        return LevelRows(sample=samples.repeat_interleave(len(cand)), grid=cand.repeat(B), group=group, cand=cand)

    def evaluate(self, levels: LevelState, rows: LevelRows, cache: VelocityCache | None = None):
        """(x, v) [R, D]: the rows' states and their velocities (from the cache where it has them)."""
        e = self.engine
        x = levels.state[rows.sample, rows.grid]
        where = f"at level {levels.level}"
        before = e.runner.seconds
        if cache is None:
            v = e.velocities(x, rows.grid, rows.sample, where)
        else:
            at = (rows.sample, rows.grid)
            keys = cache.keys(rows.sample, levels.trace[at], levels.steps[at])
            found = cache.lookup(keys)
            miss = [r for r, f in enumerate(found) if f is None]
            cache.spend(len(miss))
            if miss:
                m = torch.tensor(miss, dtype=torch.int64, device=e.device)
                fresh = e.velocities(x[m], rows.grid[m], rows.sample[m], where)
                for r, f in zip(miss, fresh):
                    found[r] = f
            v = torch.stack(found) if found else torch.empty_like(x)
            cache.store(keys, v)
        e.stats.seconds_candidates += e.runner.seconds - before
        return x, v

    def grouped_costs(self, costs: torch.Tensor, rows: LevelRows):
        """The DP's input: costs [G, M, J] of each group's M candidates (padded with +inf) and their
        grid indices cand [G, M] (-1 = padding), from row costs [R, J'] (J' <= J targets)."""
        G, J, Jt = self.groups, self.engine.J, costs.shape[1]
        dev = self.engine.device
        if self.joint:  # a candidate's cost is joint_cost over the samples
            mean = joint_cost(costs.reshape(self.engine.B, -1, Jt), self.aggregate)
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

    def jump_coefficients(self, history: History, rows: LevelRows, targets: int) -> torch.Tensor:
        """coef [R, targets, 2 + H]: the first row of the solver's step matrix for every jump of every
        row to grid indices 0..targets-1."""
        s = self.engine.s
        M = self.solver.matrix(s[rows.grid][:, None], s[None, :targets], history.times[:, 0, None],
                               history.times[:, 1, None], history.depth[:, None])
        return M[:, :, 0, :].contiguous()

    def advance(self, levels: LevelState, improved, from_k, rows: LevelRows, x, v,
                history: History | None = None) -> None:
        """Gather-axpy: each improved target j takes its winner's state one jump on (Euler, or the
        solver's step, which also gives the state's new history)."""
        e = self.engine
        B, J, s = e.B, e.J, e.s
        win_g, win_j = improved.nonzero(as_tuple=True)
        win_i = from_k[win_g, win_j]
        if self.joint:  # the winner is shared: every sample moves its own state
            n = win_j.numel()
            win_b = torch.arange(B, device=e.device).repeat_interleave(n)
            win_j, win_i = win_j.repeat(B), win_i.repeat(B)
        else:
            win_b = win_g
        row_of = torch.full((B, J), -1, dtype=torch.int64, device=e.device)
        row_of[rows.sample, rows.grid] = torch.arange(len(rows), device=e.device)
        r = row_of[win_b, win_i]
        if levels.trace is not None:  # the winner's chain, then the new index
            chains, steps = levels.trace[win_b, win_i], levels.steps[win_b, win_i] + 1
            chains[torch.arange(len(steps), device=e.device), steps] = win_j
            levels.trace[win_b, win_j], levels.steps[win_b, win_j] = chains, steps
        if history is None:
            levels.state[win_b, win_j] = euler_rows(x[r], v[r], s[win_j] - s[win_i], e.opts.float32)
            return
        solver = self.solver
        times, depth = history.times[r], history.depth[r]
        M = solver.matrix(s[win_i], s[win_j], times[:, 0], times[:, 1], depth).to(e.device)
        # x, v and history.vectors are this level's copies of the rows: the winners' rows step straight
        # into the states they win
        step_rows(M, x, v, history.vectors, src=r, dst=win_b * J + win_j, out_x=levels.state.view(-1, e.D),
                  out_h=levels.history.vectors.view(-1, solver.history, e.D))
        s_prev, s_prev2, depth = solver.carried_times(s[win_i], times[:, 0], depth)
        levels.history.times[win_b, win_j] = torch.stack([s_prev, s_prev2], 1)
        levels.history.depth[win_b, win_j] = depth

    def next_live(self, improved: torch.Tensor, level: int) -> torch.Tensor:
        """The candidates of the next level: the states this level changed that can still be used
        (compat: not grid index 0; exact: a state at j after level+1 jumps needs j >= K-level-1)."""
        live = improved.clone()
        live[:, : 1 if self.engine.opts.mode == "compat" else max(1, self.engine.K - level - 1)] = False
        return live

    def run(self, T: torch.Tensor, levels: LevelState, restriction: Restriction | None = None,
            cache: VelocityCache | None = None, desc: str = "levels"):
        """(paths [G, K], costs [G]) of the DP of modes compat/exact (G = 1 for joint, else B), from
        `levels` (initial_state(), or a checkpoint's); costs: what the DP recorded for reaching grid
        index 0 (exact: the traced path's cost). A refinement pass (restriction, cache) lands only
        where allowed and is not checkpointed."""
        e = self.engine
        K, J, mode = e.K, e.J, e.opts.mode
        best, from_ = levels.best, levels.from_
        selection = e.selection
        fixed_targets = None if e.opts.random_channels else selection.targets(T, selection.at(0))
        with e.progress_bar(K, desc, initial=levels.level) as bar:
            for k in range(levels.level, K):
                sel = selection.at(k)
                targets = fixed_targets if fixed_targets is not None else selection.targets(T, sel)
                rows = self.level_rows(levels.live)
                e.stats.rows_per_level.append(len(rows))
                x, v = self.evaluate(levels, rows, cache)
                Jt = 1 if k == K - 1 else J  # the trace-back reads only target 0 of the last level
                # compat, one sample per group: a cost not below the running best cannot improve it
                bound = best[:, :Jt].contiguous() if mode == "compat" and not self.joint else None
                history = None if levels.history is None else levels.history.at(rows.sample, rows.grid)
                coef = None if history is None else self.jump_coefficients(history, rows, Jt)
                costs = e.jump_costs(x, v, targets[:Jt], rows.sample, rows.grid, sel, bound, history, coef)

                begin = time.perf_counter()
                grouped, cand = self.grouped_costs(costs, rows)
                if restriction is not None:
                    grouped.masked_fill_(~restriction.targets[:, k, None, :], math.inf)
                improved = dp.level_update(mode, best, from_, k, grouped, cand)
                self.advance(levels, improved, from_[:, k], rows, x, v, history)
                levels.live = self.next_live(improved, k)
                synchronize(e.device)
                e.stats.seconds_dp += time.perf_counter() - begin
                levels.level = k + 1
                if restriction is None:
                    e.save_checkpoint(phase="levels", T=T, **levels.to_checkpoint())
                bar.update()
                bar.set_postfix(candidates=len(rows))
        begin = time.perf_counter()
        paths = dp.traceback(from_)
        e.stats.seconds_dp += time.perf_counter() - begin
        return paths, best[:, 0]
