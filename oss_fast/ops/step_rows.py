"""One multistep step of many rows (DESIGN §3.5): with u = [x, v, h_0, ..., h_{H-1}] per row and the
solver's step matrix M [W, 1 + H, 2 + H] (oss_fast.solvers),

    x_t = round(sum_m M[w, 0, m] u_m)        h_t[k] = sum_m M[w, 1 + k, m] u_m   (float64)

with the products and sums in the order and roundings of the cost op's combination (combo_cost.py),
so the state a search keeps, and the one `sample` reaches, is the one the cost was taken of.

Backends: `csrc` (CPU, float32 rows and velocities) and the pure-torch reference `step_rows_torch`
(everything else, and OSS_FAST_BACKEND=torch).
"""

from __future__ import annotations

import os

import torch

from .. import _C
from ..native import buffer
from .combo_cost import combine, round_to


def step_rows_torch(M, x, v, hist):
    vectors = [x, v] + [hist[:, k] for k in range(hist.shape[1])]
    x_t = round_to(combine(M[:, 0], vectors), x.dtype)
    if hist.shape[1] == 0:
        return x_t, hist.clone()
    return x_t, torch.stack([combine(M[:, 1 + k], vectors) for k in range(hist.shape[1])], 1)


def step_rows(M: torch.Tensor, x: torch.Tensor, v: torch.Tensor, hist: torch.Tensor):
    """(x_t [W, D] in x's dtype, h_t float64 [W, H, D]) of rows x, v [W, D] with history hist float64
    [W, H, D] under step matrices M float64 [W, 1 + H, 2 + H] (see the module doc)."""
    W, D = x.shape
    H = hist.shape[1]
    if v.shape != x.shape or tuple(hist.shape) != (W, H, D) or tuple(M.shape) != (W, 1 + H, 2 + H):
        raise ValueError(f"step_rows needs x, v [W, D], hist [W, H, D], M [W, 1 + H, 2 + H], got {tuple(x.shape)}, "
                         f"{tuple(v.shape)}, {tuple(hist.shape)}, {tuple(M.shape)}")
    if hist.dtype != torch.float64 or M.dtype != torch.float64:
        raise ValueError(f"hist and M must be float64, got {hist.dtype} and {M.dtype}")
    fits = x.device.type == "cpu" and x.dtype == v.dtype == torch.float32 and 0 < H <= 3
    if not fits or os.environ.get("OSS_FAST_BACKEND") == "torch":
        return step_rows_torch(M, x, v, hist)
    x, v, hist, M = (t.contiguous() for t in (x, v, hist, M))
    x_t = torch.empty_like(x)
    h_t = torch.empty_like(hist)
    _C.cpu.step_rows_f32(buffer(x), buffer(v), buffer(hist), buffer(M), W, D, H, buffer(x_t), buffer(h_t))
    return x_t, h_t
