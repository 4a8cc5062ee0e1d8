"""Coarse-to-fine search (DESIGN §3.6): the passes of the level DP that a refined search runs
(`refined`), where their levels may go, and the model evaluations a pass can take from the one
before.

A pass of the level DP is restricted by `Restriction`: the grid indices the noise may enter at
(level 0's candidates) and, per level, the grid indices a jump may land on. The coarse pass allows
every `stride`-th index; a banded pass allows, at each level, the indices within `width` of where
the previous pass's path was after that many jumps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .levels import LevelSearch


@dataclass
class Restriction:
    """starts [G, J]: where a group's noise may enter; targets [G, K, J]: where level k may land."""

    starts: torch.Tensor
    targets: torch.Tensor


def default_stride(N: int, K: int, stride: int | None) -> int:
    """The coarse pass's stride: given, or every 4th index of a 100-step grid (about 25 coarse
    cells: the refined default measured against the full search in docs/quality.md, Euler), and
    never so coarse that K jumps do not fit twice over (1: no coarse pass, the search is the full one)."""
    if stride is None:
        stride = max(2, round(N / 25))
    return max(1, min(stride, N // (2 * K)))


def coarse(G: int, K: int, N: int, stride: int, device) -> Restriction:
    """Every stride-th grid index, 0 and N."""
    on = torch.zeros(N + 1, dtype=torch.bool, device=device)
    on[::stride] = True
    on[N] = True
    starts = on.clone()
    starts[0] = False
    return Restriction(starts.expand(G, N + 1).clone(), on.expand(G, K, N + 1).clone())


def band(paths: torch.Tensor, N: int, width: int) -> Restriction:
    """Around paths [G, K] (ascending): the noise enters within width of the largest index; level k
    lands within width of the path's (k+1)-th index from the top (level K-1 on 0 itself)."""
    G, K = paths.shape
    device = paths.device
    top_down = torch.cat([paths.flip(1), torch.zeros((G, 1), dtype=paths.dtype, device=device)], 1)  # [G, K + 1]
    grid = torch.arange(N + 1, device=device)
    near = (grid[None, None, :] - top_down[:, :, None]).abs() <= width  # [G, K + 1, J]
    starts = near[:, 0].clone()
    starts[:, 0] = False
    targets = near[:, 1:].clone()
    targets[:, K - 1] = False
    targets[:, K - 1, 0] = True
    return Restriction(starts, targets)


class RowBudgetSpent(Exception):
    """A band pass would exceed the search's row budget: the last completed pass's paths stand."""


class VelocityCache:
    """Model outputs of the search's passes, by what determines them: the sample and the chain of
    grid indices its state was reached along (the state, its solver history and the model's input
    all follow from those), so no state is evaluated twice. It holds every candidate row's output
    (under half the published search's rows: for a video latent of 8 MB, B = 2 and N = 50, about
    2 GB where the model runs)."""

    def __init__(self):
        self.rows: dict = {}
        self.hits = 0
        self.allowance: int | None = None  # model rows a pass may still spend (None: no limit)

    def spend(self, rows: int) -> None:
        """Counts rows about to be evaluated; raises RowBudgetSpent instead of exceeding the allowance."""
        if self.allowance is not None:
            if rows > self.allowance:
                raise RowBudgetSpent
            self.allowance -= rows

    @staticmethod
    def keys(samples: torch.Tensor, chains: torch.Tensor, lengths: torch.Tensor) -> list:
        return [(b, tuple(c[:n + 1])) for b, c, n in zip(samples.tolist(), chains.tolist(), lengths.tolist())]

    def lookup(self, keys: list) -> list:
        found = [self.rows.get(k) for k in keys]
        self.hits += sum(f is not None for f in found)
        return found

    def store(self, keys: list, v: torch.Tensor) -> None:
        for r, k in enumerate(keys):
            self.rows.setdefault(k, v[r])


def row_budget(N: int, K: int, B: int, max_rows: int | None = None) -> int:
    """A refined search's model rows, teacher included: max_rows, else half the published search's N (K + 1) B."""
    return max_rows if max_rows is not None else N * (K + 1) * B // 2


def refined(search: LevelSearch, T: torch.Tensor, start: list | None = None, cache: VelocityCache | None = None,
            limit: int | None = None):
    """(paths, costs) of modes compat/exact by refinement: a pass of the level search on every
    stride-th grid index -- or, given a `start` path (K grid indices), none: the bands begin
    around it -- then passes restricted to a band around the last pass's paths until they stop
    changing (at most refine_rounds), states met before taken from the cache (which searches of
    one solver may share). Band passes stop where they would take the model rows spent so far,
    teacher and other searches included, past `limit` (default half the published search's
    N (K + 1) per sample); the last completed pass stands (the start path if none completed)."""
    engine = search.engine
    N, K, G, opts, stats = engine.N, engine.K, search.groups, engine.opts, engine.stats
    stride = default_stride(N, K, opts.stride)
    if stride == 1 and start is None:  # too few grid indices to coarsen: the full search
        return search.run(T, search.initial_state())
    width = opts.band if opts.band is not None else stride
    stats.refine_stride, stats.refine_band = stride, width
    if limit is None:
        limit = row_budget(N, K, engine.B)
    cache = VelocityCache() if cache is None else cache
    result = None  # the last completed pass's (paths, costs)
    if start is None:
        restriction = coarse(G, K, N, stride, engine.device)
        desc = f"coarse pass (every {stride}th index)"
    else:
        result = (torch.tensor([start] * G, dtype=torch.int64, device=engine.device),
                  torch.full((G,), math.inf, dtype=torch.float64, device=engine.device))
        restriction = band(result[0], N, width)
        desc = f"band pass 1 (±{width} indices)"
        cache.allowance = max(0, limit - engine.spent)
    hits = cache.hits
    for round_ in range(opts.refine_rounds + 1):
        before = engine.spent
        try:
            found = search.run(T, search.initial_state(restriction), restriction, cache, desc)
        except RowBudgetSpent:
            stats.refine_stopped_by_budget = True
            break
        finally:
            stats.rows_per_pass.append(engine.spent - before)
        stable = result is not None and torch.equal(found[0], result[0])
        result = found
        if stable:
            break
        restriction = band(result[0], N, width)
        desc = f"band pass {round_ + 1 + (start is not None)} (±{width} indices)"
        if cache.allowance is None:  # the band passes share what the teacher and the coarse pass left
            cache.allowance = max(0, limit - engine.spent)
    stats.velocity_cache_hits += cache.hits - hits
    return result
