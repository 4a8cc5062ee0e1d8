"""Mode teacher (DESIGN §3.3): K-jump shortest paths over the costs of the teacher's own jumps, no
model calls beyond the teacher's rollout; for a multistep solver over pair states (engine/pairs.py)."""

from __future__ import annotations

import math
import time

import torch

from .. import dp
from . import pairs
from .aggregation import joint_cost
from .options import JOINT


def teacher_paths(engine, T: torch.Tensor, V: torch.Tensor):
    """(paths [G, K], objective values [G]) of an Engine's (engine/search.py) teacher trajectory T and
    velocities V [J, B, D]: the Euler jump from every grid index to every lower one is costed on the
    teacher's states (its costs sharded over the ranks as every cost)."""
    if engine.solver.history:
        return teacher_pair_paths(engine, T, V)
    opts = engine.opts
    sel = engine.selection.at(0)
    targets = engine.selection.targets(T, sel)
    C = torch.full((engine.B, engine.J, engine.J), math.inf, dtype=torch.float64, device=engine.device)
    grid_all = torch.arange(1, engine.N + 1, device=engine.device)
    for b in range(engine.B):
        for start in range(0, engine.N, opts.chunk):
            grid = grid_all[start:start + opts.chunk]
            samples = torch.full_like(grid, b)
            C[b, grid] = engine.jump_costs(T[grid, b], V[grid, b], targets, samples, grid, sel)
    begin = time.perf_counter()
    if opts.aggregate in JOINT:
        C = joint_cost(C, opts.aggregate)[None]
    paths, value = dp.kstep_path(C.contiguous(), engine.K, opts.objective)
    engine.stats.seconds_dp += time.perf_counter() - begin
    return paths, value


def teacher_pair_paths(engine, T: torch.Tensor, V: torch.Tensor):
    """teacher_paths for a multistep solver: the costs of every jump after every previous step from
    one Gram matrix of the teacher's vectors per sample, shortest paths over pair states."""
    opts = engine.opts
    begin = time.perf_counter()
    sel = engine.selection.at(0)
    T, V = (T, V) if sel is None else (T[:, :, sel], V[:, :, sel])
    V = V.clone()
    V[0] = 0  # the teacher has no velocity at grid index 0; no jump reads it
    C = pairs.pair_costs(pairs.gram(T, V), engine.s, engine.solver, T.shape[2])
    engine.stats.seconds_costs += time.perf_counter() - begin
    begin = time.perf_counter()
    groups = [joint_cost(C, opts.aggregate)] if opts.aggregate in JOINT else list(C)
    found = [pairs.pair_path(c, engine.K, opts.objective) for c in groups]
    engine.stats.seconds_dp += time.perf_counter() - begin
    paths = torch.tensor([sorted(p) for p, _ in found], dtype=torch.int64)
    return paths, torch.tensor([v for _, v in found], dtype=torch.float64)
