"""One search (DESIGN §3, §4): the Engine sets it up, rolls out the teacher, runs the mode the
options ask for -- the level DP of modes compat/exact (engine/levels.py), refined
(engine/refine.py), mode teacher (engine/teacher.py) or the guarded multistep default
(engine/guard.py) -- then checks the paths it returns and completes the stats. The modes take their
model rows (`velocities`) and costs (`jump_costs`) from the Engine, which shares them over the
ranks, and its solver, looked up once per search.
"""

from __future__ import annotations

import math
import resource
import time

import torch

from ..progress import progress
from ..ops import combo_costs, euler_costs, euler_rows, pick_backend
from ..solvers import get_solver
from .checkpoint import Checkpoint, validate_state
from .distributed import Comm
from .inputs import SampleInputs
from .memory import check_search_memory
from . import guard, refine
from .aggregation import schedule_of
from .levels import LevelSearch, LevelState
from .options import SearchOptions
from .runner import ModelRunner, synchronize
from .selection import CostSelection
from .stats import SearchStats
from .teacher import teacher_paths
from .velocity import first_non_finite, overflow_error


class Engine:
    """One search with its options, noises and inputs. With a process group (Comm) the model calls
    are shared by the ranks; with a Checkpoint the state is saved after the teacher and after each
    level, and resumed from."""

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
        self.solver = get_solver(opts.solver)
        self.level_search = LevelSearch(self, self.solver, opts.aggregate)  # the options' own level DP

    # ------------------------------------------------------------------ model rows and costs
    def velocities(self, x: torch.Tensor, grid: torch.Tensor, samples: torch.Tensor, where: str) -> torch.Tensor:
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

    def jump_costs(self, x, v, targets, row_sample, row_grid, sel, bound=None, history=None, coef=None):
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

    def progress_bar(self, total: int, desc: str, initial: int = 0):
        return progress(total, desc, enabled=self.opts.progress and self.comm.rank == 0, initial=initial)

    def save_checkpoint(self, **state):
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
        with self.progress_bar(N, "teacher") as bar:
            for i in range(N, 0, -1):
                grid = torch.full((b,), i, dtype=torch.long, device=self.device)
                v = self.runner(x.reshape((-1,) + self.shape), grid, samples).reshape(b, self.D)
                self._check_finite(v, grid, samples, "in the teacher rollout")
                if keep_velocities:
                    if V is None:  # zeros: no step leaves grid index 0, and a checkpoint checks V is finite
                        V = torch.zeros((self.J, b, self.D), dtype=v.dtype, device=self.device)
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

    # ------------------------------------------------------------------ the modes
    def refined(self, T: torch.Tensor):
        """(paths, costs) of the options' refined search (engine/refine.py), within opts.max_rows."""
        return refine.refined(self.level_search, T, limit=self.opts.max_rows)

    def single(self, T, V, resumed: LevelState | None):
        """(paths, costs, schedule) of the options' mode (compat/exact from the `resumed` levels)."""
        opts = self.opts
        if opts.mode == "teacher":
            paths, costs = teacher_paths(self, T, V)
        elif opts.validate and resumed is None:
            self.guard_report = guard.guarded(self, T)
            schedule = self.guard_report.verdicts[0].steps
            return torch.tensor([schedule]), torch.full((1,), math.nan, dtype=torch.float64), schedule
        elif opts.refine and resumed is None:
            paths, costs = self.refined(T)
        else:
            levels = resumed if resumed is not None else self.level_search.initial_state()
            paths, costs = self.level_search.run(T, levels)
        return paths, costs, schedule_of(paths, opts.aggregate)

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
                           G=self.level_search.groups, dtype=self.z.dtype, H=self.solver.history)
            T, V = saved["T"], saved.get("V")
            self.spent = self.N * self.B  # row budgets count the teacher's rows, spent before the checkpoint
            self.stats.resumed_from = "the teacher rollout" if saved["phase"] == "teacher" else f"level {saved['level'] - 1}"
        else:
            T, V = self.teacher(keep_velocities=opts.mode == "teacher")
            self.save_checkpoint(phase="teacher", T=T, **({} if V is None else dict(V=V)))
        teacher_rows = self.runner.rows
        resumed = LevelState.from_checkpoint(saved) if saved is not None and saved["phase"] == "levels" else None
        paths, costs, schedule = self.single(T, V, resumed)
        self._finish_stats(begin, teacher_rows)
        paths = paths.tolist()
        for path in paths + ([schedule] if schedule is not None else []):
            self._check_path(path)
        aggregate = opts.aggregate if self.guard_report is None else guard.aggregate_of(self.guard_report.chosen)
        return paths, costs.tolist(), schedule, opts.mode, aggregate, self.stats

    def _check_path(self, path: list[int]) -> None:
        """A path handed to the user is K grid indices in [1, N], ascending (the drop-ins' compat
        with K >= N repeats indices, as the published code does)."""
        ascending = all(b > a for a, b in zip(path, path[1:]))
        non_decreasing = all(b >= a for a, b in zip(path, path[1:]))
        opts = self.opts
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
