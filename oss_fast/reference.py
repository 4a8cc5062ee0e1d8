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
AGGREGATES = ("per_sample", "median", "joint", "joint_rms")
JOINT = ("joint", "joint_rms")
SOLVERS = ("euler", "ab2", "dpmpp_2m", "unipc")  # the registry's names (oss_fast.solvers; a test keeps them equal)


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


# ----------------------------------------------------------------------------- multistep solvers
#
# A sampler state: the sample x the model sees at time s, and what the solver remembers of earlier
# steps, kept the way the samplers keep it (k-diffusion: past derivatives; diffusers: past data
# predictions `m`, UniPC's last corrected sample and order). One step evaluates v = model(x, s) and
# goes to time t; every formula below is the sampler's own, in Python floats and float64 tensors.

def start_state(x, s):
    return dict(x=x, s=s, steps=0, ms=[], ds=[], last=None, order=1, times=[])


def _lam(s):
    return -math.inf if s >= 1 else (math.inf if s <= 0 else math.log(1 - s) - math.log(s))


def _dpm_update(x, s, t, m0, m1, s1, order):
    """diffusers DPMSolverMultistepScheduler (dpmsolver++, midpoint) on flow sigmas."""
    a_t, sg_t, sg_s = 1 - t, t, s
    h = _lam(t) - _lam(s)
    e = 0.0 if t <= 0 or s >= 1 else math.exp(-h)
    if order == 1:
        return (sg_t / sg_s) * x - (a_t * (e - 1.0)) * m0
    r0 = (_lam(s) - _lam(s1)) / h
    d1 = (1.0 / r0) * (m0 - m1)
    return (sg_t / sg_s) * x - (a_t * (e - 1.0)) * m0 - 0.5 * (a_t * (e - 1.0)) * d1


def _unic(last, s_last, s, m_prev, m_prev2, s_prev2, m_this, order):
    """diffusers UniPCMultistepScheduler.multistep_uni_c_bh_update (bh2, predict_x0) on flow sigmas."""
    h = _lam(s) - _lam(s_last)
    hh = -h
    h_phi_1 = math.expm1(hh)
    b_h = math.expm1(hh)
    k = h_phi_1 / hh - 1
    b = [k / b_h]
    k = k / hh - 0.5
    b.append(k * 2 / b_h)
    x_c = s / s_last * last - (1 - s) * h_phi_1 * m_prev
    if order == 1:
        return x_c - (1 - s) * b_h * (0.5 * (m_this - m_prev))
    r1 = (_lam(s_prev2) - _lam(s_last)) / h
    rho = np.linalg.solve(np.array([[1.0, 1.0], [r1, 1.0]]), np.array(b))
    d1 = (m_prev2 - m_prev) / r1
    return x_c - (1 - s) * b_h * (float(rho[0]) * d1 + float(rho[1]) * (m_this - m_prev))


def solver_step(solver, st, v, t):
    """The state after one step of `solver` from state st (time st["s"]) with velocity v to time t."""
    x, s = st["x"].double(), st["s"]
    v = v.double()
    new = dict(st, s=t, steps=st["steps"] + 1, times=[s] + st["times"])
    if solver == "euler":
        out = x + (t - s) * v
    elif solver == "ab2":  # k-diffusion sample_lms(order=2) on flow sigmas: d = v
        if st["steps"] == 0:
            out = x + (t - s) * v
        else:
            h, hp = t - s, s - st["times"][0]
            out = x + (h + h * h / (2 * hp)) * v - (h * h / (2 * hp)) * st["ds"][0]
        new["ds"] = [v]
    elif solver == "dpmpp_2m":
        m0 = x - s * v
        order = 1 if st["steps"] == 0 or t <= 0 else 2
        out = _dpm_update(x, s, t, m0, st["ms"][0] if st["ms"] else None, st["times"][0] if st["times"] else None,
                          order)
        new["ms"] = [m0]
    elif solver == "unipc":
        one = 1 - 1e-6  # diffusers moves a first sigma of 1 there
        s_c, t_c = min(s, one), min(t, one)
        m0 = x - s_c * v
        if st["steps"] > 0:  # the corrector, with the previous step's order
            times = [min(u, one) for u in st["times"]]
            x = _unic(st["last"], times[0], s_c, st["ms"][0], st["ms"][1] if len(st["ms"]) > 1 else None,
                      times[1] if len(times) > 1 else None, m0, st["order"])
        order = 1 if st["steps"] == 0 or t <= 0 else 2
        out = _dpm_update(x, s_c, t_c, m0, st["ms"][0] if st["ms"] else None,
                          min(st["times"][0], one) if st["times"] else None, order)
        new.update(last=x, order=order, ms=[m0] + st["ms"][:1])
    else:
        raise ValueError(f"unknown solver {solver!r}")
    new["x"] = out.to(st["x"].dtype)
    return new


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

def group_cost(costs: list[float], aggregate: str) -> float:
    """A joint decision's cost of a jump from the samples' costs, summed in sample order: their
    mean, or (joint_rms) the square of the mean of their square roots."""
    if aggregate == "joint_rms":
        root = sum(math.sqrt(c) for c in costs) / len(costs)
        return root * root
    return sum(costs) / len(costs)


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
           model_kwargs=None, free_start=False, objective="sum", solver="euler", restrict=None,
           group_paths=False):
    """DESIGN §3. Returns a list of steps per sample (aggregate="per_sample") or one list. With a
    multistep solver (§3.5) a state carries the solver history of the predecessor that reached it.
    Modes compat/exact: restrict (one (starts, targets) per DP group, see _search_group) confines
    the DP; group_paths=True returns each group's path before aggregation."""
    N = _check(model, z, student_steps, mode, aggregate)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}")
    K = student_steps
    B = z.shape[0]
    s = grid(model)
    kwargs = model_kwargs or {}
    T, V = teacher(model, z, cond, kwargs, float32)
    frame_sel = frame_indices(frames, z.shape[2]) if z.dim() >= 3 else None

    def sample_cost(x, b, j, level):
        chans = channel_indices(channels, z.shape[1], level, random_channels, seed)
        return cost(x, T[j][b], norm, chans, frame_sel)

    if mode == "teacher" and solver != "euler":
        per_sample = [_teacher_pair_costs(T, V, s, b, solver) for b in range(B)]
        if aggregate in JOINT:
            C = {key: group_cost([c[key] for c in per_sample], aggregate) for key in per_sample[0]}
            return pair_kstep_path(C, N, K, objective)[0]
        paths = [pair_kstep_path(c, N, K, objective)[0] for c in per_sample]
        return median(paths) if aggregate == "median" else paths

    if mode == "teacher":
        def teacher_costs(b):
            C = [[math.inf] * (N + 1) for _ in range(N + 1)]
            for i in range(1, N + 1):
                for j in range(i):
                    x = euler(T[i][b:b + 1], V[i][b:b + 1], s[j] - s[i], float32)
                    C[i][j] = sample_cost(x[0], b, j, 0)
            return C

        per_sample = [teacher_costs(b) for b in range(B)]
        if aggregate in JOINT:
            C = [[group_cost([Cb[i][j] for Cb in per_sample], aggregate) for j in range(N + 1)] for i in range(N + 1)]
            return kstep_path(C, K, objective)[0]
        paths = [kstep_path(Cb, K, objective)[0] for Cb in per_sample]
        return median(paths) if aggregate == "median" else paths

    groups = [list(range(B))] if aggregate in JOINT else [[b] for b in range(B)]
    paths = [_search_group(model, z, cond, kwargs, s, K, mode, g, sample_cost, float32, free_start, solver,
                           aggregate, None if restrict is None else restrict[n]) for n, g in enumerate(groups)]
    return paths if group_paths else _aggregated(paths, aggregate)


def _aggregated(paths, aggregate: str):
    """What search returns from the DP groups' paths: the joint path, the median, or all of them."""
    if aggregate in JOINT:
        return paths[0]
    return median(paths) if aggregate == "median" else paths


def refined_search(model, z, cond=None, *, student_steps, aggregate="per_sample", stride, width, rounds=4,
                   start=None, **options):
    """DESIGN §3.6 for modes compat/exact: the DP on every stride-th grid index (and N) -- or, given
    a start path, none: the first band is around it -- then DPs confined to within width of the last
    paths' positions, level by level, until the paths repeat (at most `rounds` of them after the
    first). Returns what search returns."""
    N = len(grid(model)) - 1
    K = student_steps
    G = 1 if aggregate in JOINT else z.shape[0]
    run = lambda r: search(model, z, cond, student_steps=K, aggregate=aggregate, restrict=r, group_paths=True,
                           **options)
    if start is None:
        coarse = set(range(0, N + 1, stride)) | {N}
        paths = found = run([(coarse - {0}, [coarse] * K)] * G)
    else:
        paths = found = [list(start)] * G
        rounds += 1
    for _ in range(rounds):
        found = run([_band(path, N, width) for path in paths])
        if found == paths:
            break
        paths = found
    return _aggregated(found, aggregate)


def _band(path, N: int, width: int):
    """(starts, targets) within width of path's positions: the start near its largest index,
    level k near its (k+1)-th index from the top, the last level on 0."""
    top_down = sorted(path, reverse=True) + [0]
    near = lambda c: {j for j in range(N + 1) if abs(j - c) <= width}
    return near(top_down[0]) - {0}, [near(c) for c in top_down[1:-1]] + [{0}]


def _teacher_pair_costs(T, V, s, b, solver):
    """{(p, j, i): mean squared error of the jump j -> i of a student on the teacher at j whose
    previous step started on the teacher at p} (p = None: the first step, from N), in float64."""
    N = len(s) - 1
    costs = {}
    for i in range(N):
        x = solver_step(solver, start_state(T[N][b].double(), s[N]), V[N][b], s[i])["x"]
        costs[(None, N, i)] = float(((x - T[i][b].double()) ** 2).mean())
    for p in range(N, 1, -1):
        for j in range(p - 1, 0, -1):
            state = solver_step(solver, start_state(T[p][b].double(), s[p]), V[p][b], s[j])
            state["x"] = T[j][b].double()  # the student is on the teacher at j, with the history from p
            for i in range(j):
                x = solver_step(solver, state, V[j][b], s[i])["x"]
                costs[(p, j, i)] = float(((x - T[i][b].double()) ** 2).mean())
    return costs


def pair_kstep_path(C, N: int, K: int, objective: str = "sum"):
    """Shortest path of exactly K jumps from N to 0 where a jump's cost C[(p, j, i)] depends on the
    previous index p too. Ties: the larger previous index wins. Returns (path ascending, value)."""
    def combine(a, c):
        return a + c if objective == "sum" else max(a, c)

    value = {(N, i): C[(None, N, i)] for i in range(N)}  # state (previous, current) after one jump
    back = []
    for _ in range(1, K):
        new, arg = {}, {}
        for (p, j), v in value.items():
            for i in range(j):
                c = combine(v, C[(p, j, i)])
                key = (j, i)
                if key not in new or c < new[key] or (c == new[key] and p > arg[key]):
                    new[key], arg[key] = c, p
        value = new
        back.append(arg)
    ends = [(v, p) for (p, j), v in value.items() if j == 0]
    if not ends:
        raise ValueError("no path of K finite-cost jumps")
    best = min(v for v, _ in ends)
    last = max(p for v, p in ends if v == best)
    path, state = [last], (last, 0)
    for arg in reversed(back):
        previous = arg[state]
        path.append(previous)
        state = (previous, state[0])
    return sorted(path), best


def _search_group(model, z, cond, kwargs, s, K, mode, samples, sample_cost, float32, free_start, solver,
                  aggregate, restrict=None):
    """One DP over a group of samples sharing every decision (one sample unless joint). restrict =
    (starts, targets): the noise enters only at grid indices in starts, and level k's jumps land
    only on grid indices in targets[k].

    The cost of a jump is group_cost of the group's samples' costs. state[i] is the solver
    state of the group's rows at grid index i (for Euler its sample alone).
    """
    N = len(s) - 1
    B = z.shape[0]
    best = [math.inf] * (N + 1)
    from_ = [[N] * (N + 1) for _ in range(K + 1)]
    # state[j] = the group's latents sitting at grid index j (one row per sample of the group).
    if mode == "compat" or free_start:
        state = {i: start_state(z[samples], s[i]) for i in range(N + 1) if restrict is None or i in restrict[0]}
        live = [i for i in range(1, N + 1) if i in state]
    else:
        state = {N: start_state(z[samples], s[N])}
        live = [N]
    cond_g = rows_of(cond, samples, B)
    kwargs_g = kwargs_of(kwargs, samples, B)
    for k in range(K):
        cand = dict(state)  # the snapshot of step 1
        if mode == "exact":
            best = [math.inf] * (N + 1)
            state = {}
        for i in sorted(live, reverse=True):
            x_i = cand[i]["x"]
            v = torch.cat([
                model(x_i[r:r + 1], torch.tensor([i], dtype=torch.long, device=z.device),
                      rows_of(cond_g, [r], len(samples)), kwargs_of(kwargs_g, [r], len(samples)))
                for r in range(len(samples))
            ])
            for j in range(i - 1, -1, -1):
                if restrict is not None and j not in restrict[1][k]:
                    continue
                if solver == "euler":
                    st_j = dict(cand[i], x=euler(x_i, v, s[j] - s[i], float32), s=s[j])
                else:
                    st_j = solver_step(solver, cand[i], v, s[j])
                c = group_cost([sample_cost(st_j["x"][r], b, j, k) for r, b in enumerate(samples)], aggregate)
                if c < best[j]:
                    best[j] = c
                    from_[k][j] = i
                    state[j] = st_j
        if mode == "compat":
            from_[k + 1] = list(from_[k])
            live = [i for i in range(1, N + 1) if i in state]
        else:
            live = [j for j in state if j >= 1]
    return traceback(from_, K)


@torch.no_grad()
def sample(model, z, steps, cond=None, *, float32=True, model_kwargs=None, max_amp=None, min_amp=None,
           solver="euler"):
    """The solver (Euler by default) along [0] + steps from the last index down (DESIGN §3.4), with
    optional amplitude calibration (Euler): before each call, each sample's 5% and 95% quantiles are
    mapped affinely onto min_amp[i-1] and max_amp[i-1] for the grid index i about to be evaluated."""
    s = grid(model)
    path = [0] + list(steps)
    B = z.shape[0]
    kwargs = model_kwargs or {}
    x = z
    state = start_state(z, s[path[-1]])
    for n in range(len(path) - 1, 0, -1):
        i, j = path[n], path[n - 1]
        if solver != "euler":
            v = model(state["x"], torch.full((B,), i, dtype=torch.long, device=x.device), cond, kwargs)
            state = solver_step(solver, state, v, s[j])
            x = state["x"]
            continue
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
