"""Plain, loop-for-loop implementation of DESIGN §3: the oracle of every test, the baseline of the
benchmarks.

Written from the spec for obviousness, not speed: one batch-1 model call per candidate and a Python
loop over targets, exactly as §3 reads. It imports nothing from oss_fast, so it can judge
everything else. Conventions shared with the fast paths (and stated in DESIGN):

* grid: s = model.fm_steps as float64; a jump i -> j multiplies the velocity by ds = s[j] - s[i]
  (a Python float, so torch rounds it to the tensor's dtype exactly as the fast paths do);
* Euler update: `x + v * ds` in the latent's dtype, or in float32 and cast back when float32=True;
* cost: mean over the selected elements of |x_j - T_j|**p, the difference taken in float32 and
  accumulated in float64;
* tie rule: candidates in descending grid index, replacing the running best only when strictly
  cheaper;
* per-sample inputs: a tensor (or list) whose first dimension equals the search batch B belongs to
  the samples; anything else is passed unchanged to every call.
"""

from __future__ import annotations

import math

import numpy as np
import torch

MODES = ("compat", "exact", "teacher")
AGGREGATES = ("per_sample", "median", "joint")


# ----------------------------------------------------------------------------- building blocks

def grid(model) -> list[float]:
    """The model's time grid s[0..N] as Python floats."""
    return [float(v) for v in torch.as_tensor(model.fm_steps).double().tolist()]


def euler(x: torch.Tensor, v: torch.Tensor, ds: float, float32: bool) -> torch.Tensor:
    """One Euler step x + v * ds."""
    if float32:
        return (x.float() + v.float() * ds).to(x.dtype)
    return (x + v.to(x.dtype) * ds).to(x.dtype)


def rows_of(value, rows: list[int], batch: int):
    """The rows of a per-sample input (first dimension == batch); other inputs pass unchanged."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch:
        return value[rows]
    if isinstance(value, (list, tuple)) and len(value) == batch:
        return type(value)(value[r] for r in rows)
    return value


def kwargs_of(kwargs: dict, rows: list[int], batch: int) -> dict:
    return {k: rows_of(v, rows, batch) for k, v in kwargs.items()}


def frame_indices(frames, num_frames: int):
    """Frames compared by the cost: all, or n at linspace(0, F-1, n) truncated (the published rule)."""
    if frames == "all":
        return None
    return torch.linspace(0, num_frames - 1, int(frames), dtype=torch.long).tolist()


def channel_indices(channels, num_channels: int, level: int, random_channels: bool, seed: int):
    """Channels compared by the cost at a level: all, the first n, or a random n drawn per level."""
    if channels == "all":
        return None
    n = int(channels)
    if random_channels:
        rng = np.random.default_rng([seed, level])
        return sorted(rng.choice(num_channels, size=n, replace=False).tolist())
    return list(range(n))


def cost(x: torch.Tensor, target: torch.Tensor, norm: float, channels=None, frames=None) -> float:
    """mean(|x - target|**norm) over the selected channels (dim 0) and frames (dim 1) of one sample."""
    d = x.float() - target.float()
    if channels is not None:
        d = d[channels]
    if frames is not None:
        d = d[:, frames]
    d = d.double()
    if norm == 2:
        e = d * d
    elif norm == 1:
        e = d.abs()
    else:
        e = d.abs() ** norm
    return float(e.sum()) / e.numel()


@torch.no_grad()
def teacher(model, z, cond=None, model_kwargs=None, float32=True):
    """Teacher rollout: T[N] = z, T[i-1] = T[i] + v(T[i], i) * (s[i-1] - s[i]). Returns (T, V)."""
    s = grid(model)
    N = len(s) - 1
    B = z.shape[0]
    kwargs = model_kwargs or {}
    T = [None] * (N + 1)
    V = [None] * (N + 1)
    T[N] = z
    x = z
    for i in range(N, 0, -1):
        v = model(x, torch.full((B,), i, dtype=torch.long, device=z.device), cond, kwargs)
        V[i] = v
        x = euler(x, v, s[i - 1] - s[i], float32)
        T[i - 1] = x
    return T, V


def median(steps_per_sample: list[list[int]]) -> list[int]:
    """The published cal_medium rule: per position, sort l and take (l[n//2] + l[n//2 - 1]) // 2."""
    out = []
    for k in range(len(steps_per_sample[0])):
        column = sorted(steps[k] for steps in steps_per_sample)
        n = len(column)
        out.append((column[n // 2] + column[n // 2 - 1]) // 2)
    return out


# ----------------------------------------------------------------------------- DP primitives

def reduce_candidates(costs, cand):
    """Per-target min/argmin of one group: costs[m][j], cand[m] grid index (-1 = padding)."""
    J = len(costs[0]) if costs else 0
    order = sorted((i, m) for m, i in enumerate(cand) if i >= 0)[::-1]  # descending grid index
    mins, args = [], []
    for j in range(J):
        best, best_i = math.inf, -1
        for i, m in order:
            if j < i and costs[m][j] < best:
                best, best_i = costs[m][j], i
        mins.append(best)
        args.append(best_i)
    return mins, args


def level_update(mode, best, from_, k, mins, args):
    """Apply one level's per-target winners to best / from_ (lists, one group). Returns improved."""
    K = len(from_) - 1
    improved = []
    for j in range(len(best)):
        if args[j] >= 0 and (mode == "exact" or mins[j] < best[j]):
            best[j] = mins[j]
            from_[k][j] = args[j]
            improved.append(True)
        else:
            if mode == "exact":
                best[j] = math.inf
            improved.append(False)
    if mode == "compat" and k + 1 <= K:
        from_[k + 1] = list(from_[k])
    return improved


def traceback(from_, K: int) -> list[int]:
    path = [0]
    for k in range(K - 1, -1, -1):
        path.append(from_[k][path[-1]])
    return path[1:]


def kstep_path(C, K: int, objective: str = "sum"):
    """Shortest path of exactly K jumps from N to 0 over C[i][j] (i > j). Returns (path, value)."""
    N = len(C) - 1
    def combine(a, b):
        return a + b if objective == "sum" else (a if a > b else b)

    value = [C[N][j] if C[N][j] == C[N][j] else math.inf for j in range(N)] + [math.inf]  # NaN: unusable
    from_ = [[N] * (N + 1)]
    for _ in range(1, K):
        new_value, new_from = [], []
        for j in range(N + 1):
            best, best_i = math.inf, -1
            for i in range(N, j, -1):
                c = combine(value[i], C[i][j])
                if c < best:
                    best, best_i = c, i
            new_value.append(best)
            new_from.append(best_i)
        value = new_value
        from_.append(new_from)
    if not value[0] < math.inf:
        raise ValueError("no path of K finite-cost jumps")
    return traceback(from_, K), value[0]


# ----------------------------------------------------------------------------- the search

def _check(model, z, student_steps, mode, aggregate):
    N = len(grid(model)) - 1
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}")
    if student_steps < 1 or (mode != "compat" and student_steps > N):
        raise ValueError("student_steps out of range")
    return N


@torch.no_grad()
def search(model, z, cond=None, *, student_steps, mode="compat", aggregate="per_sample", norm=2,
           channels="all", frames="all", random_channels=False, seed=0, float32=True,
           model_kwargs=None, free_start=False, objective="sum"):
    """DESIGN §3. Returns a list of steps per sample (aggregate="per_sample") or one list."""
    N = _check(model, z, student_steps, mode, aggregate)
    K = student_steps
    B = z.shape[0]
    s = grid(model)
    kwargs = model_kwargs or {}
    T, V = teacher(model, z, cond, kwargs, float32)
    frame_sel = frame_indices(frames, z.shape[2]) if z.dim() >= 3 else None

    def sample_cost(x, b, j, level):
        chans = channel_indices(channels, z.shape[1], level, random_channels, seed)
        return cost(x, T[j][b], norm, chans, frame_sel)

    if mode == "teacher":
        def teacher_costs(b):
            C = [[math.inf] * (N + 1) for _ in range(N + 1)]
            for i in range(1, N + 1):
                for j in range(i):
                    x = euler(T[i][b:b + 1], V[i][b:b + 1], s[j] - s[i], float32)
                    C[i][j] = sample_cost(x[0], b, j, 0)
            return C

        per_sample = [teacher_costs(b) for b in range(B)]
        if aggregate == "joint":
            C = [[sum(Cb[i][j] for Cb in per_sample) / B for j in range(N + 1)] for i in range(N + 1)]
            return kstep_path(C, K, objective)[0]
        paths = [kstep_path(Cb, K, objective)[0] for Cb in per_sample]
        return median(paths) if aggregate == "median" else paths

    groups = [list(range(B))] if aggregate == "joint" else [[b] for b in range(B)]
    paths = [_search_group(model, z, cond, kwargs, s, K, mode, g, sample_cost, float32, free_start)
             for g in groups]
    if aggregate == "joint":
        return paths[0]
    return median(paths) if aggregate == "median" else paths


def _search_group(model, z, cond, kwargs, s, K, mode, samples, sample_cost, float32, free_start):
    """One DP over a group of samples sharing every decision (one sample unless joint).

    The cost of a jump is the mean over the group's samples of their costs.
    """
    N = len(s) - 1
    B = z.shape[0]
    best = [math.inf] * (N + 1)
    from_ = [[N] * (N + 1) for _ in range(K + 1)]
    # state[j] = the group's latents sitting at grid index j (one row per sample of the group).
    if mode == "compat" or free_start:
        state = {i: z[samples] for i in range(N + 1)}
        live = list(range(1, N + 1))
    else:
        state = {N: z[samples]}
        live = [N]
    cond_g = rows_of(cond, samples, B)
    kwargs_g = kwargs_of(kwargs, samples, B)
    for k in range(K):
        cand = dict(state)  # the snapshot of step 1
        if mode == "exact":
            best = [math.inf] * (N + 1)
            state = {}
        for i in sorted(live, reverse=True):
            x_i = cand[i]
            v = torch.cat([
                model(x_i[r:r + 1], torch.tensor([i], dtype=torch.long, device=z.device),
                      rows_of(cond_g, [r], len(samples)), kwargs_of(kwargs_g, [r], len(samples)))
                for r in range(len(samples))
            ])
            for j in range(i - 1, -1, -1):
                x_j = euler(x_i, v, s[j] - s[i], float32)
                c = sum(sample_cost(x_j[r], b, j, k) for r, b in enumerate(samples)) / len(samples)
                if c < best[j]:
                    best[j] = c
                    from_[k][j] = i
                    state[j] = x_j
        if mode == "compat":
            from_[k + 1] = list(from_[k])
        else:
            live = [j for j in state if j >= 1]
    return traceback(from_, K)


@torch.no_grad()
def sample(model, z, steps, cond=None, *, float32=True, model_kwargs=None, max_amp=None, min_amp=None):
    """Euler along [0] + steps from the last index down (DESIGN §3.4), with optional amplitude
    calibration: before each call, each sample's 5% and 95% quantiles are mapped affinely onto
    min_amp[i-1] and max_amp[i-1] for the grid index i about to be evaluated."""
    s = grid(model)
    path = [0] + list(steps)
    B = z.shape[0]
    kwargs = model_kwargs or {}
    x = z
    for n in range(len(path) - 1, 0, -1):
        i, j = path[n], path[n - 1]
        if max_amp is not None:
            flat = x.reshape(B, -1)
            hi = torch.quantile(flat, 0.95, dim=1)
            lo = torch.quantile(flat, 0.05, dim=1)
            scale = (max_amp[i - 1] - min_amp[i - 1]) / (hi - lo)
            shift = min_amp[i - 1] - scale * lo
            view = (B,) + (1,) * (x.dim() - 1)
            x = scale.reshape(view) * x + shift.reshape(view)
        v = model(x, torch.full((B,), i, dtype=torch.long, device=x.device), cond, kwargs)
        x = euler(x, v, s[j] - s[i], float32)
    return x
