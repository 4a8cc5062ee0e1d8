"""The level loop of DESIGN §3–§4.

Per level: gather the candidate states that need a model call (every grid index at level 0, then
only the states the previous level changed) → model on rows of all samples at once in fixed-size
chunks → fused cost op over (candidate, target) pairs → per-target min/argmin and the DP update in
csrc → gather-axpy of the winning states. Nothing of size N x N x D is materialised.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field, replace

import torch
from tqdm.auto import tqdm

from .. import dp
from ..ops import euler_costs, euler_rows
from ..ops.euler_cost import pick_backend
from .checkpoint import Checkpoint
from .distributed import Comm
from .inputs import SampleInputs
from .runner import ModelRunner, first_non_finite, synchronize


@dataclass
class SearchOptions:
    """Validated options of one search (see oss_fast.search for their meaning)."""

    student_steps: int
    teacher_steps: int
    mode: str = "exact"
    aggregate: str = "median"
    norm: float = 2
    channels: object = "all"
    frames: object = "all"
    random_channels: bool = False
    seed: int = 0
    float32: bool = True
    chunk: int = 32
    free_start: bool = False
    objective: str = "sum"
    progress: bool = True


@dataclass
class SearchStats:
    """What a search cost. Seconds are wall-clock; model seconds are spent inside model calls."""

    teacher_calls: int = 0
    candidate_calls: int = 0
    candidate_rows: int = 0
    padded_rows: int = 0
    rows_per_level: list = field(default_factory=list)
    seconds_teacher: float = 0.0
    seconds_candidates: float = 0.0
    seconds_costs: float = 0.0
    seconds_dp: float = 0.0
    seconds_total: float = 0.0
    model_seconds: float = 0.0
    peak_memory_bytes: int = 0
    memory_scope: str = ""
    cost_backend: str = ""
    chunk: int = 0
    samples: int = 0
    oom_backoffs: int = 0
    resumed_from: str = ""
    world_size: int = 1
    auto_candidates: dict = field(default_factory=dict)  # mode "auto": "mode/aggregate" -> search-noise MSE

    @property
    def candidate_rows_per_sample(self) -> float:
        return self.candidate_rows / max(self.samples, 1)

    def summary(self) -> str:
        extra = "".join([f"; {self.world_size} ranks (this rank's calls)" if self.world_size > 1 else "",
                         f"; {self.oom_backoffs} out-of-memory back-offs to chunk {self.chunk}" if self.oom_backoffs else "",
                         f"; resumed after {self.resumed_from}" if self.resumed_from else ""])
        return (f"{self.teacher_calls} teacher + {self.candidate_calls} candidate model calls "
                f"({self.candidate_rows} rows, {self.padded_rows} padding); "
                f"{self.seconds_total:.2f} s total = teacher {self.seconds_teacher:.2f} + candidates "
                f"{self.seconds_candidates:.2f} + costs {self.seconds_costs:.2f} + DP {self.seconds_dp:.2f}; "
                f"model calls {self.model_seconds:.2f} s; peak memory {self.peak_memory_bytes / 2**20:.0f} MiB "
                f"({self.memory_scope}){extra}")


def mean_over_samples(per_sample: torch.Tensor) -> torch.Tensor:
    """Mean over dimension 0, summed in sample order as the reference sums (bitwise equal)."""
    total = per_sample[0].clone()
    for b in range(1, per_sample.shape[0]):
        total += per_sample[b]
    return total / per_sample.shape[0]


def channel_indices(channels, num_channels: int, level: int, random_channels: bool, seed: int):
    """Channels the cost compares at a level: None (all), the first n, or a random n per level."""
    if channels == "all":
        return None
    n = int(channels)
    if random_channels:
        import numpy as np

        rng = np.random.default_rng([seed, level])
        return sorted(rng.choice(num_channels, size=n, replace=False).tolist())
    return list(range(n))


def frame_indices(frames, num_frames: int):
    """Frames the cost compares: None (all) or n at linspace(0, F-1, n) truncated (published rule)."""
    if frames == "all":
        return None
    return torch.linspace(0, num_frames - 1, int(frames), dtype=torch.long).tolist()


# mode "auto": the combinations it searches (sharing one teacher rollout) and chooses among. Each
# candidate's schedule is scored on validation noises -- fresh standard-normal noises with the
# search samples' conditioning, not the noises it was searched on (a schedule fits those) -- by
# the MSE of Euler along it to the teacher's samples. compat/median is the published search.
AUTO_CANDIDATES = (("compat", "median"), ("exact", "joint"), ("teacher", "joint"))


class Engine:
    """One search. With a process group (Comm) the model calls are shared by the ranks; with a
    Checkpoint the state is saved after the teacher and after each level, and resumed from."""

    def __init__(self, model, z: torch.Tensor, inputs: SampleInputs, opts: SearchOptions, comm: Comm | None = None,
                 checkpoint: Checkpoint | None = None, resume: bool = False):
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
        self.s = torch.as_tensor(model.fm_steps).detach().double()[: self.J].to(self.device)
        self.runner = ModelRunner(model, inputs, opts.chunk, self.device)
        self.comm = comm or Comm()
        self.checkpoint = checkpoint
        self.resume = resume
        self.stats = SearchStats(chunk=opts.chunk, samples=self.B, world_size=self.comm.size)
        self.frames = frame_indices(opts.frames, self.shape[1]) if len(self.shape) >= 2 else None

    # ------------------------------------------------------------------ helpers
    def _call(self, x: torch.Tensor, grid: torch.Tensor, samples: torch.Tensor, where: str) -> torch.Tensor:
        """Velocities [R, D] of all R rows: this rank evaluates its shard, the ranks share them."""
        R = x.shape[0]
        mine = self.comm.shard(R)
        v = self.runner(x[mine].reshape((-1,) + self.shape), grid[mine], samples[mine])
        v = v.reshape(v.shape[0], self.D)
        self._check_finite(v, grid[mine], samples[mine], where)
        return self.comm.gather_rows(v, R)

    def _check_finite(self, v, grid, samples, where: str):
        """Raises on every rank if any rank's rows (v with their grid indices and samples) hold NaN/inf."""
        bad = first_non_finite(v)
        report = self.comm.first_report(None if bad is None else (int(grid[bad]), int(samples[bad])))
        if report is not None:
            raise FloatingPointError(f"the model returned NaN or inf {where} at grid index {report[0]} "
                                     f"(sample {report[1]})")

    def _selection(self, level: int):
        """Flat indices of the latent elements the cost compares at a level, or None for all."""
        chans = channel_indices(self.opts.channels, self.shape[0], level, self.opts.random_channels, self.opts.seed)
        if chans is None and self.frames is None:
            return None
        idx = torch.arange(self.D).reshape(self.shape)
        if chans is not None:
            idx = idx[chans]
        if self.frames is not None:
            idx = idx[:, self.frames]
        return idx.reshape(-1).to(self.device)

    def _costs(self, x, v, targets, row_sample, row_grid, sel, bound=None):
        """Costs [R, J'] of all rows: this rank computes its shard's, the ranks share them."""
        begin = time.perf_counter()
        R = x.shape[0]
        mine = self.comm.shard(R)
        x, v = x[mine], v[mine]
        if sel is not None:
            x, v = x[:, sel], v[:, sel]
        self.stats.cost_backend = pick_backend(x, v, targets, self.opts.norm)
        costs = euler_costs(x, v, targets, row_sample[mine], row_grid[mine], self.s, norm=self.opts.norm,
                            float32=self.opts.float32, backend=self.stats.cost_backend, bound=bound)
        costs = self.comm.gather_rows(costs, R)
        synchronize(self.device)
        self.stats.seconds_costs += time.perf_counter() - begin
        return costs

    def _bar(self, total: int, desc: str, initial: int = 0):
        return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True,
                    disable=not self.opts.progress or self.comm.rank != 0)

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
                T[i - 1] = x
                bar.update()
        T = self.comm.gather_rows(T.transpose(0, 1), self.B).transpose(0, 1).contiguous()
        if V is not None:
            V = self.comm.gather_rows(V.transpose(0, 1), self.B).transpose(0, 1).contiguous()
        self.stats.teacher_calls = self.runner.calls
        self.stats.seconds_teacher = time.perf_counter() - begin
        return T, V

    # ------------------------------------------------------------------ modes compat / exact
    def initial_levels_state(self) -> dict:
        """best, from, the candidates to evaluate (live) and the states, before level 0."""
        o, B, J, K, N = self.opts, self.B, self.J, self.K, self.N
        G = 1 if o.aggregate == "joint" else B
        dev = self.device
        live = torch.zeros((G, J), dtype=torch.bool, device=dev)
        if o.mode == "compat" or o.free_start:
            state = self.z[:, None, :].expand(B, J, self.D).clone()
            # compat: every grid index holds the noise; exact: an entry that cannot finish in K steps is dropped
            live[:, 1 if o.mode == "compat" else K:] = True
        else:
            state = torch.empty((B, J, self.D), dtype=self.z.dtype, device=dev)
            state[:, N] = self.z
            live[:, N] = True
        return dict(level=0, best=torch.full((G, J), math.inf, dtype=torch.float64, device=dev),
                    from_=torch.full((G, K + 1, J), N, dtype=torch.int64, device=dev), live=live, state=state)

    def levels(self, T: torch.Tensor, saved: dict) -> torch.Tensor:
        """Paths [G, K] of the DP of modes compat/exact (G = 1 for joint, else B), from the level
        state `saved` (initial_levels_state(), or a checkpoint's)."""
        o, B, J, K = self.opts, self.B, self.J, self.K
        joint = o.aggregate == "joint"
        G = 1 if joint else B
        dev = self.device
        best, from_, live, state = saved["best"], saved["from_"], saved["live"], saved["state"]
        static_sel = None if o.random_channels else self._selection(0)
        static_targets = T if static_sel is None else T[:, :, static_sel].contiguous()
        with self._bar(K, "levels", initial=saved["level"]) as bar:
            for k in range(saved["level"], K):
                sel, targets = static_sel, static_targets
                if o.random_channels:
                    sel = self._selection(k)
                    targets = T if sel is None else T[:, :, sel].contiguous()
                g_idx, i_idx = live.nonzero(as_tuple=True)
                if joint:  # every sample evaluates the shared candidates
                    row_sample = torch.arange(B, device=dev).repeat_interleave(len(i_idx))
                    row_grid = i_idx.repeat(B)
                else:
                    row_sample, row_grid = g_idx, i_idx
                R = row_grid.numel()
                self.stats.rows_per_level.append(R)
                x = state[row_sample, row_grid]
                calls_before = self.runner.seconds
                v = self._call(x, row_grid, row_sample, f"at level {k}")
                self.stats.seconds_candidates += self.runner.seconds - calls_before
                # the trace-back reads only target 0 of the last level
                Jt = 1 if k == K - 1 else J
                # compat, one sample per group: a cost not below the running best cannot improve it
                bound = best[:, :Jt].contiguous() if o.mode == "compat" and not joint else None
                costs = self._costs(x, v, targets[:Jt], row_sample, row_grid, sel, bound)

                begin = time.perf_counter()
                if joint:
                    mean = mean_over_samples(costs.reshape(B, -1, Jt))
                    group_costs = torch.full((1, mean.shape[0], J), math.inf, dtype=torch.float64, device=dev)
                    group_costs[0, :, :Jt] = mean
                    group_cand = i_idx[None]
                else:
                    counts = live.sum(dim=1)
                    M = int(counts.max()) if R else 0
                    starts = torch.cumsum(counts, 0) - counts
                    pos = torch.arange(R, device=dev) - starts[g_idx]
                    group_costs = torch.full((G, M, J), math.inf, dtype=torch.float64, device=dev)
                    group_cand = torch.full((G, M), -1, dtype=torch.int64, device=dev)
                    group_costs[g_idx, pos, :Jt] = costs
                    group_cand[g_idx, pos] = i_idx
                improved = dp.level_update(o.mode, best, from_, k, costs=group_costs.contiguous(), cand=group_cand)

                # gather-axpy: each improved target takes its winner's state one Euler jump on
                win_g, win_j = improved.nonzero(as_tuple=True)
                win_i = from_[win_g, k, win_j]
                if joint:
                    n = win_j.numel()
                    win_b = torch.arange(B, device=dev).repeat_interleave(n)
                    win_j, win_i = win_j.repeat(B), win_i.repeat(B)
                else:
                    win_b = win_g
                row_of = torch.full((B, J), -1, dtype=torch.int64, device=dev)
                row_of[row_sample, row_grid] = torch.arange(R, device=dev)
                rows = row_of[win_b, win_i]
                state[win_b, win_j] = euler_rows(x[rows], v[rows], self.s[win_j] - self.s[win_i], o.float32)

                live = improved.clone()
                # exact: a state at j after k+1 jumps needs j >= K-k-1 to finish in K jumps
                live[:, : 1 if o.mode == "compat" else max(1, K - k - 1)] = False
                synchronize(dev)
                self.stats.seconds_dp += time.perf_counter() - begin
                self._save(phase="levels", T=T, level=k + 1, best=best, from_=from_, live=live, state=state)
                bar.update()
                bar.set_postfix(rows=R)
        begin = time.perf_counter()
        paths = dp.traceback(from_)
        self.stats.seconds_dp += time.perf_counter() - begin
        return paths

    # ------------------------------------------------------------------ mode teacher
    def teacher_paths(self, T: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """Paths [G, K]: K-jump shortest paths over the teacher's own jump costs (DESIGN §3.3)."""
        B, J, N = self.B, self.J, self.N
        sel = self._selection(0)
        targets = T if sel is None else T[:, :, sel].contiguous()
        C = torch.full((B, J, J), math.inf, dtype=torch.float64, device=self.device)
        grid_all = torch.arange(1, N + 1, device=self.device)
        for b in range(B):
            for start in range(0, N, self.opts.chunk):
                grid = grid_all[start:start + self.opts.chunk]
                samples = torch.full_like(grid, b)
                C[b, grid] = self._costs(T[grid, b], V[grid, b], targets, samples, grid, sel)
        begin = time.perf_counter()
        if self.opts.aggregate == "joint":
            C = mean_over_samples(C)[None]
        paths, _ = dp.kstep_path(C.contiguous(), self.K, self.opts.objective)
        self.stats.seconds_dp += time.perf_counter() - begin
        return paths

    # ------------------------------------------------------------------ all of it
    def aggregated(self, paths: torch.Tensor):
        if self.opts.aggregate == "median":
            return dp.median_steps(paths).tolist()
        if self.opts.aggregate == "joint":
            return paths[0].tolist()
        return None

    def euler_along(self, z: torch.Tensor, steps: list[int]) -> torch.Tensor:
        """Euler from z [B, D] along [0] + steps, last index first (rows shared by the ranks)."""
        samples = torch.arange(self.B, device=self.device)
        path = [0] + list(steps)
        x = z
        for n in range(len(path) - 1, 0, -1):
            i, j = path[n], path[n - 1]
            grid = torch.full((self.B,), i, dtype=torch.long, device=self.device)
            v = self._call(x, grid, samples, "while scoring the candidates of mode auto")
            x = euler_rows(x, v, (self.s[j] - self.s[i]).expand(self.B), self.opts.float32)
        return x

    def auto(self, T: torch.Tensor, V: torch.Tensor):
        """Mode auto: each of AUTO_CANDIDATES on the same teacher rollout; the schedule with the
        lowest validation error wins (the first listed on a tie). Returns (paths, schedule)."""
        base = self.opts
        gen = torch.Generator().manual_seed(base.seed + 1)
        z_val = torch.randn(self.z.shape, generator=gen, dtype=torch.float64).to(self.device, self.z.dtype)
        teacher_val = self.euler_along(z_val, list(range(1, self.N + 1))).double()
        best = None
        for mode, aggregate in AUTO_CANDIDATES:
            self.opts = replace(base, mode=mode, aggregate=aggregate)
            paths = self.teacher_paths(T, V) if mode == "teacher" else self.levels(T, self.initial_levels_state())
            schedule = self.aggregated(paths)
            error = float(((self.euler_along(z_val, schedule).double() - teacher_val) ** 2).mean())
            self.stats.auto_candidates[f"{mode}/{aggregate}"] = error
            if best is None or error < best[0]:
                best = (error, self.opts, paths, schedule)
        _, self.opts, paths, schedule = best
        return paths, schedule

    def run(self):
        """Returns (paths [G, K] as lists, schedule or None, mode, aggregate, stats)."""
        begin = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        o = self.opts
        saved = self.checkpoint.load(self.device) if self.checkpoint is not None and self.resume else None
        if saved is not None:
            T, V = saved["T"], saved.get("V")
            self.stats.resumed_from = "the teacher rollout" if saved["phase"] == "teacher" else f"level {saved['level'] - 1}"
        else:
            T, V = self.teacher(keep_velocities=o.mode in ("teacher", "auto"))
            self._save(phase="teacher", T=T, **({} if V is None else dict(V=V)))
        teacher_rows = self.runner.rows
        if o.mode == "auto":
            paths, schedule = self.auto(T, V)
        else:
            if o.mode == "teacher":
                paths = self.teacher_paths(T, V)
            else:
                paths = self.levels(T, saved if saved is not None and saved["phase"] == "levels"
                                    else self.initial_levels_state())
            schedule = self.aggregated(paths)
        st = self.stats
        st.candidate_calls = self.runner.calls - st.teacher_calls
        st.candidate_rows = self.runner.rows - teacher_rows
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
        return paths.tolist(), schedule, self.opts.mode, self.opts.aggregate, st
