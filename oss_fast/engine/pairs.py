"""Mode teacher for multistep solvers (DESIGN §3.3, §3.5): no model calls beyond the teacher's.

A jump j -> i of a multistep student starting on the teacher at j depends on where its previous step
started, p: the student's history there is the teacher's own (its state and velocity at p). So a
jump's cost is C[p, j, i] = mean |x_i - T[i]|^2, with x_i a linear combination of the teacher's
vectors T[j], V[j], T[p], V[p] (the solver's step matrices; a first step from N is first order). All such
costs come from one Gram matrix of the teacher's vectors per sample (one pass over the latent, then
O(1) per triple), and a K-jump shortest path over pair states (p, j) picks the schedule:
O(K N^3) after the N teacher calls.

UniPC's corrector at j then uses the teacher's sample at p as its last sample and order 1 (its
order-2 form needs a third index); the other solvers are exact on the teacher's states.
"""

from __future__ import annotations

import math

import torch

def gram(T: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """[B, 2J, 2J] Gram matrices of each sample's vectors T[0..N], V[0..N] (float64, V[0] unused)."""
    U = torch.cat([T, V], 0).transpose(0, 1).double()  # [B, 2J, D]
    return U @ U.transpose(1, 2)


def pair_costs(G: torch.Tensor, s: torch.Tensor, solver, D: int) -> torch.Tensor:
    """C [B, J + 1, J, J]: C[b, p, j, i] the mean squared error of the jump j -> i after a step from p
    (row J: the first step, from N, with no previous index), +inf where not p > j > i."""
    B, J = G.shape[0], s.numel()
    N = J - 1
    dev = G.device
    idx = torch.arange(J, device=dev)
    C = torch.full((B, J + 1, J, J), math.inf, dtype=torch.float64, device=dev)
    # first steps from N (no history yet): first order for every solver here (Euler up to UniPC's s < 1)
    w_first = solver.matrix(s[N], s, 1.0, 1.0, 0)[:, 0, :2]  # on T[N], V[N]
    W = torch.cat([w_first[:N], -torch.ones(N, 1, dtype=torch.float64, device=dev)], 1)  # [i, 3]
    C[:, J, N, :N] = _quadratic_many(G, [N, J + N], idx[:N], W, D)
    for p in range(2, J):
        js = idx[1:p]
        # the history of the state at j reached from the teacher at p: rows 1.. of a first step p -> j
        H = solver.matrix(s[p], s[js], 1.0, 1.0, 0)[:, 1:, :2]              # [j, H, 2] on T[p], V[p]
        M = solver.matrix(s[js][:, None], s[None, :], s[p], 1.0, 1)[:, :, 0]  # [j, i, 2 + H]
        w = torch.cat([M[..., :2], torch.einsum("jik,jkl->jil", M[..., 2:], H)], -1)  # on T[j], V[j], T[p], V[p]
        for n, j in enumerate(js.tolist()):
            targets = idx[:j]
            vectors = [j, J + j, p, J + p]
            W = torch.cat([w[n, :j], -torch.ones(j, 1, dtype=torch.float64, device=dev)], 1)  # [i, 5]
            C[:, p, j, :j] = _quadratic_many(G, vectors, targets, W, D)
    return C


def _quadratic_many(G, vectors, targets, W, D):
    """w_i^T G[vectors + (target i)] w_i / D for each target i: [B, len(targets)]."""
    base = torch.tensor(vectors, device=G.device)
    rows = torch.cat([base[None].expand(len(targets), -1), targets[:, None]], 1)  # [i, n]
    g = G[:, rows[:, :, None], rows[:, None, :]]                                    # [B, i, n, n]
    return torch.einsum("ia,biac,ic->bi", W, g, W) / D


def pair_path(C: torch.Tensor, K: int, objective: str = "sum"):
    """Shortest path of exactly K jumps from N to 0 over pair states (previous index, index): C
    [J + 1, J, J] as pair_costs gives it for one group. Returns (path: K indices ascending, value). On
    ties the larger previous index wins."""
    J = C.shape[1]
    N = J - 1
    combine = (lambda a, b: a + b) if objective == "sum" else torch.maximum
    # value[p, j]: the best objective of k jumps from N, the last one p -> j
    value = torch.full((J, J), math.inf, dtype=torch.float64, device=C.device)
    value[N, :N] = C[J, N, :N]
    value[N, :N] = torch.where(torch.isnan(value[N, :N]), math.inf, value[N, :N])
    back = []
    for _ in range(1, K):
        total = combine(value[:, :, None], C[:J])             # [p, j, i]
        best, arg = total.flip(0).min(0)                        # the largest p first: it wins ties
        back.append(J - 1 - arg)                                # [j, i] -> p
        value = best
    final = value[:, 0]
    if not bool(torch.isfinite(final).any()):
        raise ValueError("no path of K finite-cost jumps from N to 0")
    last = J - 1 - int(torch.argmin(final.flip(0)))
    path, state = [last], (last, 0)
    for arg in reversed(back):
        previous = int(arg[state])
        path.append(previous)
        state = (previous, state[0])
    return path, float(final[last])
