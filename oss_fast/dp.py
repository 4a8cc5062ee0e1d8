"""Thin front to the pathfinding core in csrc (DESIGN §3, §4).

Every function checks its tensors (type, dtype, device, shape, contiguity) and raises ValueError
naming the argument before calling into C++/CUDA; tensors on a CUDA device run on the CUDA twin,
on the current stream. Nothing here converts or copies silently: callers own their layouts.
"""

from __future__ import annotations

import torch

from .native import backend, buffer

MODES = {"compat": 0, "exact": 1}
OBJECTIVES = {"sum": 0, "max": 1}


def _check(name: str, t, dtype: torch.dtype, ndim: int, device: torch.device | None = None):
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} is on {t.device}; only cpu and cuda tensors are supported")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device} but the other arguments are on {device}")
    return t


def _shape(name: str, t: torch.Tensor, shape: tuple):
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _mode(mode: str) -> int:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    return MODES[mode]


def reduce_candidates(costs: torch.Tensor, cand: torch.Tensor):
    """Per-target minimum over candidates with the tie rule (strict <, largest grid index wins).

    costs [G, M, J] float64, cand [G, M] int64 (grid index of each candidate, -1 = padding).
    Only targets j < cand count. Returns (min [G, J] float64 (+inf where none), arg [G, J] int64 (-1)).
    """
    _check("costs", costs, torch.float64, 3)
    _check("cand", cand, torch.int64, 2, costs.device)
    G, M, J = costs.shape
    _shape("cand", cand, (G, M))
    mod, stream = backend(costs.device)
    mn = torch.empty((G, J), dtype=torch.float64, device=costs.device)
    arg = torch.empty((G, J), dtype=torch.int64, device=costs.device)
    mod.reduce_candidates(buffer(costs), buffer(cand), G, M, J, buffer(mn), buffer(arg), *stream)
    return mn, arg


def level_update(mode: str, best: torch.Tensor, from_: torch.Tensor, level: int, costs: torch.Tensor,
                 cand: torch.Tensor) -> torch.Tensor:
    """One level of the DP of DESIGN §3.1 (compat) or §3.2 (exact), in place.

    best [G, J] float64 and from_ [G, K+1, J] int64 are updated from the candidates' costs
    [G, M, J] and grid indices cand [G, M] (-1 = padding).
    Returns improved [G, J] bool: the targets this level improved (compat) or reached (exact).
    """
    m = _mode(mode)
    _check("best", best, torch.float64, 2)
    device = best.device
    _check("from_", from_, torch.int64, 3, device)
    G, J = best.shape
    if from_.shape[0] != G or from_.shape[2] != J or from_.shape[1] < 2:
        raise ValueError(f"from_ must have shape (G, K+1, J) = ({G}, K+1, {J}) with K >= 1, got {tuple(from_.shape)}")
    K = from_.shape[1] - 1
    if not isinstance(level, int) or not 0 <= level < K:
        raise ValueError(f"level must be an int in [0, {K}), got {level!r}")
    _check("costs", costs, torch.float64, 3, device)
    if costs.shape[0] != G or costs.shape[2] != J:
        raise ValueError(f"costs must have shape ({G}, M, {J}), got {tuple(costs.shape)}")
    min_cost, argmin = reduce_candidates(costs, cand)
    mod, stream = backend(device)
    improved = torch.empty((G, J), dtype=torch.uint8, device=device)
    mod.level_update(m, buffer(min_cost), buffer(argmin), buffer(best), buffer(from_),
                     buffer(improved), G, J, K, level, *stream)
    return improved.bool()


def traceback(from_: torch.Tensor) -> torch.Tensor:
    """Paths [G, K] read back from grid index 0 through from_ [G, K+1, J] (DESIGN §3.1 Result)."""
    _check("from_", from_, torch.int64, 3)
    G, K1, J = from_.shape
    if K1 < 2:
        raise ValueError(f"from_ must have K+1 >= 2 rows per group, got shape {tuple(from_.shape)}")
    mod, stream = backend(from_.device)
    path = torch.empty((G, K1 - 1), dtype=torch.int64, device=from_.device)
    mod.traceback(buffer(from_), G, K1 - 1, J, buffer(path), *stream)
    return path


def kstep_path(cost: torch.Tensor, K: int, objective: str = "sum"):
    """Shortest path of exactly K edges from grid index N to 0 (DESIGN §3.3).

    cost [G, N+1, N+1] float64 with cost[g, i, j] the cost of the jump i -> j (i > j read only).
    Returns (path [G, K] int64 ascending, value [G] float64). Raises ValueError where no path has
    a finite objective.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
    _check("cost", cost, torch.float64, 3)
    G, J, J2 = cost.shape
    if J != J2 or J < 2:
        raise ValueError(f"cost must have shape (G, N+1, N+1) with N >= 1, got {tuple(cost.shape)}")
    if not isinstance(K, int) or not 1 <= K <= J - 1:
        raise ValueError(f"K must be an int in [1, N={J - 1}], got {K!r}")
    mod, stream = backend(cost.device)
    path = torch.empty((G, K), dtype=torch.int64, device=cost.device)
    value = torch.empty((G,), dtype=torch.float64, device=cost.device)
    mod.kstep_path(buffer(cost), G, J, K, OBJECTIVES[objective], buffer(path), buffer(value), *stream)
    if bool((path < 0).any()):
        raise ValueError("cost has no path of K finite-cost jumps from N to 0")
    return path, value


def median_steps(steps: torch.Tensor) -> torch.Tensor:
    """Per-position median of steps [S, K] int64 with the published cal_medium rule (DESIGN §3.4)."""
    _check("steps", steps, torch.int64, 2)
    S, K = steps.shape
    if S < 1 or K < 1:
        raise ValueError(f"steps must have at least one row and one column, got shape {tuple(steps.shape)}")
    mod, stream = backend(steps.device)
    out = torch.empty((K,), dtype=torch.int64, device=steps.device)
    mod.median_steps(buffer(steps), S, K, buffer(out), *stream)
    return out
