"""Fused multistep jump cost (DESIGN §3.5): a multistep solver's jump from candidate row r to
target j is a linear combination of the row's vectors -- its state x[r], velocity v[r] and history
h[r, 0..H-1] -- with per-pair scalar coefficients c[r, j, :] (oss_fast.solvers), so

    cost[r, j] = mean_d |round(((c0 x + c1 v) + c2 h_0) + ... )[d] - T[j, b[r], d]|^p

with the combination in float64 in exactly that order, rounded to the latent's dtype (what the
state will hold; half types through float32), the difference in float32 and the sum in float64. Targets j >= grid[r] get +inf.
Nothing of size R x J x D is built.

Backends as for the Euler op, chosen in backend.py: `torch` (the reference below), `csrc` (CPU,
float32 latents), `triton` (combo_cost_triton.py); OSS_FAST_BACKEND forces one.
"""

from __future__ import annotations

import torch

from ..native import buffer, cpu
from .backend import cost_backend
from .euler_cost import check_rows


def combine(coef: torch.Tensor, vectors: list[torch.Tensor]) -> torch.Tensor:
    """sum_m coef[..., m] * vectors[m] in float64, added in order m = 0, 1, ... (coef [R, n] or
    [n]; vectors [R, D]): the one rounding sequence the cost op, the search's states and sampling share."""
    out = coef[..., 0:1] * vectors[0].double()
    for m in range(1, len(vectors)):
        out += coef[..., m:m + 1] * vectors[m].double()  # the product rounded, then the sum: no fused multiply-add
    return out


def round_to(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A float64 combination as a latent of `dtype`: half types through float32 (as the kernels do)."""
    return y.to(dtype) if dtype in (torch.float32, torch.float64) else y.float().to(dtype)


def combo_costs_torch(x, v, hist, coef, targets, row_sample, row_grid, norm=2):
    """The pure-torch reference of the op: one pass per target j over the rows that reach it."""
    R, D = x.shape
    J = targets.shape[0]
    out = torch.full((R, J), float("inf"), dtype=torch.float64, device=x.device)
    for j in range(J):
        rows = (row_grid > j).nonzero()[:, 0]
        if rows.numel() == 0:
            continue
        vectors = [x[rows], v[rows]] + [hist[rows, k] for k in range(hist.shape[1])]
        xj = round_to(combine(coef[rows, j], vectors), x.dtype)
        d = (xj.float() - targets[j, row_sample[rows]].float()).double()
        e = d * d if norm == 2 else d.abs() if norm == 1 else d.abs() ** norm
        out[rows, j] = e.sum(1) / D
    return out


def _check(x, v, hist, coef, targets, row_sample, row_grid):
    check_rows(x, v, targets, row_sample, row_grid, others=dict(hist=hist, coef=coef))
    R, D = x.shape
    if hist.dim() != 3 or hist.shape[0] != R or hist.shape[2] != D or hist.dtype != torch.float64:
        raise ValueError(f"hist must be float64 [R={R}, H, D={D}], got {hist.dtype} {tuple(hist.shape)}")
    H, J = hist.shape[1], targets.shape[0]
    if coef.dtype != torch.float64 or tuple(coef.shape) != (R, J, 2 + H):
        raise ValueError(f"coef must be float64 [R={R}, J={J}, 2 + H={2 + H}], got {coef.dtype} {tuple(coef.shape)}")


def combo_costs(x, v, hist, coef, targets, row_sample, row_grid, *, norm=2, backend=None, bound=None):
    """Costs [R, J] float64 of the multistep jumps of rows to the targets (see module doc).

    x, v [R, D]; hist float64 [R, H, D]; coef float64 [R, J, 2 + H]; targets [J, B, D]; row_sample,
    row_grid int64 [R]. bound [B, J] (optional): as for euler_costs, pairs that cannot beat it may
    report +inf (csrc does), the others get their exact cost.
    """
    _check(x, v, hist, coef, targets, row_sample, row_grid)
    x, v, hist, coef, targets, row_sample, row_grid = (
        t.contiguous() for t in (x, v, hist, coef, targets, row_sample, row_grid))
    backend = cost_backend(backend, x, v, targets, norm)
    R, D = x.shape
    J, B, _ = targets.shape
    if R == 0:
        return torch.empty((0, J), dtype=torch.float64, device=x.device)
    if backend == "csrc":
        out = torch.empty((R, J), dtype=torch.float64)
        cpu.combo_costs_f32(buffer(x), buffer(v), buffer(hist), buffer(coef), buffer(targets), buffer(row_sample),
                            buffer(row_grid), R, D, J, B, hist.shape[1], int(norm),
                            None if bound is None else buffer(bound.contiguous()), buffer(out))
        return out
    if backend == "triton":
        from .combo_cost_triton import combo_costs_triton

        return combo_costs_triton(x, v, hist, coef, targets, row_sample, row_grid, norm=norm)
    return combo_costs_torch(x, v, hist, coef, targets, row_sample, row_grid, norm)
