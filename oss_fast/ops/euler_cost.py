"""Fused Euler-jump cost (DESIGN §3.1 step 2, §4): for candidate rows r with state x[r], velocity
v[r], sample b[r] and grid index i[r], and every target j < i[r],

    cost[r, j] = mean_d |euler(x[r], v[r], s[j] - s[i[r]])[d] - T[j, b[r], d]|^p

for the targets given (the first J grid indices; a search's last level needs only j = 0), with the
reference's rounding (Euler update in the latent's dtype, or in float32 with float32=True;
difference in float32; sum in float64). Targets j >= i[r] get +inf. Never builds an N x N x D tensor.

Backends (chosen in backend.py): `torch` (the pure-torch reference below), `csrc` (the compiled
CPU code) and `triton` (euler_cost_triton.py).
"""

from __future__ import annotations

import torch

from ..native import buffer, cpu
from .backend import cost_backend
from .euler import euler_rows


def euler_costs_torch(x, v, targets, row_sample, row_grid, s, norm=2, float32=True):
    """The pure-torch reference of the op: one pass per target j over the rows that reach it."""
    R, D = x.shape
    J = targets.shape[0]
    out = torch.full((R, J), float("inf"), dtype=torch.float64, device=x.device)
    s_rows = s[row_grid]
    for j in range(J):
        rows = (row_grid > j).nonzero()[:, 0]
        if rows.numel() == 0:
            continue
        xj = euler_rows(x[rows], v[rows], s[j] - s_rows[rows], float32)
        d = (xj.float() - targets[j, row_sample[rows]].float()).double()
        e = d * d if norm == 2 else d.abs() if norm == 1 else d.abs() ** norm
        out[rows, j] = e.sum(1) / D
    return out


def _euler_costs_csrc(x, v, targets, row_sample, row_grid, s, norm=2, float32=True, bound=None):
    R, D = x.shape
    J, B, _ = targets.shape
    out = torch.empty((R, J), dtype=torch.float64)
    cpu.euler_costs_f32(buffer(x), buffer(v), buffer(targets), buffer(row_sample), buffer(row_grid), buffer(s),
                        R, D, J, s.numel(), B, int(norm), None if bound is None else buffer(bound), buffer(out))
    return out


def check_rows(x, v, targets, row_sample, row_grid, grid_len: int | None = None, others: dict | None = None):
    """The checks every cost op's front makes: tensors (the op's `others` too) on one device, x, v
    [R, D] floating, targets [J, B, D], row_sample / row_grid int64 [R] with samples in [0, B) and grid
    indices in [1, grid_len) -- the kernels index with them (one sync per call)."""
    tensors = dict(x=x, v=v, targets=targets, row_sample=row_sample, row_grid=row_grid, **(others or {}))
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    for name, t in (("x", x), ("v", v), ("targets", targets)):
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {t.dtype}")
    if x.dim() != 2 or v.shape != x.shape:
        raise ValueError(f"x and v must be [R, D] of one shape, got {tuple(x.shape)} and {tuple(v.shape)}")
    if targets.dim() != 3 or targets.shape[2] != x.shape[1]:
        raise ValueError(f"targets must be [J, B, D={x.shape[1]}], got {tuple(targets.shape)}")
    for name, t in (("row_sample", row_sample), ("row_grid", row_grid)):
        if t.dtype != torch.int64 or t.shape != (x.shape[0],):
            raise ValueError(f"{name} must be int64 [R={x.shape[0]}], got {t.dtype} {tuple(t.shape)}")
    devices = {t.device for t in tensors.values()}
    if len(devices) != 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(map(str, devices))}")
    if row_grid.numel():
        low, high = int(row_grid.min()), int(row_grid.max())
        if low < 1 or (grid_len is not None and high >= grid_len):
            bound = f"[1, {grid_len - 1}]" if grid_len is not None else ">= 1"
            raise ValueError(f"row_grid values must lie in {bound}, got [{low}, {high}]")
        low, high = int(row_sample.min()), int(row_sample.max())
        if low < 0 or high >= targets.shape[1]:
            raise ValueError(f"row_sample values must lie in [0, {targets.shape[1] - 1}], got [{low}, {high}]")


def euler_costs(x, v, targets, row_sample, row_grid, s, *, norm=2, float32=True, backend=None, bound=None):
    """Costs [R, J] float64 of the Euler jumps of rows (x, v) to the targets (see module doc).

    x, v [R, D]; targets [J, B, D]: grid indices 0..J-1; row_sample, row_grid int64 [R];
    s float64 [S >= J]: the whole grid (row_grid < S).
    bound [B, J] float64 (optional): a pair whose cost is >= bound[sample, j] cannot win a strict
    `<` against it; a backend may then stop summing and report +inf (csrc does). Pairs below their
    bound always get their exact cost, so the winners do not change.
    """
    grid_ok = isinstance(s, torch.Tensor) and s.dtype == torch.float64 and s.dim() == 1
    check_rows(x, v, targets, row_sample, row_grid, s.numel() if grid_ok else None, dict(s=s))
    if not grid_ok or s.numel() < targets.shape[0]:
        raise ValueError(f"s must be float64 [S >= J={targets.shape[0]}], got {s.dtype} {tuple(s.shape)}")
    if bound is not None and (bound.dtype != torch.float64 or bound.shape != targets.shape[:2][::-1]
                              or bound.device != x.device):
        raise ValueError(f"bound must be float64 [B, J] = {tuple(targets.shape[:2][::-1])} on {x.device}")
    # compiled backends read raw memory: every input contiguous (a strided grid read as if dense
    # would be another grid)
    x, v, targets, row_sample, row_grid, s = (t.contiguous() for t in (x, v, targets, row_sample, row_grid, s))
    backend = cost_backend(backend, x, v, targets, norm)
    if x.shape[0] == 0:
        return torch.empty((0, targets.shape[0]), dtype=torch.float64, device=x.device)
    if backend == "csrc":
        return _euler_costs_csrc(x, v, targets, row_sample, row_grid, s, norm, float32,
                                 None if bound is None else bound.contiguous())
    if backend == "triton":
        from .euler_cost_triton import euler_costs_triton

        return euler_costs_triton(x, v, targets, row_sample, row_grid, s, norm=norm, float32=float32)
    return euler_costs_torch(x, v, targets, row_sample, row_grid, s, norm, float32)
