"""One multistep step of many rows (DESIGN §3.5): with u = [x, v, h_0, ..., h_{H-1}] per row and the
solver's step matrix M [W, 1 + H, 2 + H] (oss_fast.solvers),

    x_t = round(sum_m M[w, 0, m] u_m)        h_t[k] = sum_m M[w, 1 + k, m] u_m   (float64)

with the products and sums in the order and roundings of the cost op's combination (combo_cost.py),
so the state a search keeps, and the one `sample` reaches, is the one the cost was taken of. The
search steps only its winners, straight from the level's rows (src) into the states they win (dst).

Backends (chosen in backend.py): `csrc` (CPU, float32 rows and velocities) and the pure-torch
reference `step_rows_torch` (everything else, and OSS_FAST_BACKEND=torch).
"""

from __future__ import annotations

import torch

from ..native import buffer, cpu
from .backend import step_rows_backend
from .combo_cost import combine, round_to


def step_rows_torch(M, x, v, hist):
    vectors = [x, v] + [hist[:, k] for k in range(hist.shape[1])]
    x_t = round_to(combine(M[:, 0], vectors), x.dtype)
    if hist.shape[1] == 0:
        return x_t, hist.clone()
    return x_t, torch.stack([combine(M[:, 1 + k], vectors) for k in range(hist.shape[1])], 1)


def step_rows(M: torch.Tensor, x: torch.Tensor, v: torch.Tensor, hist: torch.Tensor, src=None, dst=None,
              out_x=None, out_h=None):
    """Steps rows src [W] (default: all) of x, v [R, D] with history hist float64 [R, H, D] under step
    matrices M float64 [W, 1 + H, 2 + H] (see the module doc). Returns (x_t [W, D] in x's dtype, h_t
    float64 [W, H, D]); or, given out_x [S, D] and out_h [S, H, D] (not overlapping the inputs) and
    dst [W] (distinct rows), writes row w's results into their rows dst[w] and returns them."""
    R, D = x.shape
    H = hist.shape[1]
    W = R if src is None else len(src)
    if v.shape != x.shape or tuple(hist.shape) != (R, H, D) or tuple(M.shape) != (W, 1 + H, 2 + H):
        raise ValueError(f"step_rows needs x, v [R, D], hist [R, H, D], M [W, 1 + H, 2 + H], got {tuple(x.shape)}, "
                         f"{tuple(v.shape)}, {tuple(hist.shape)}, {tuple(M.shape)}")
    if hist.dtype != torch.float64 or M.dtype != torch.float64:
        raise ValueError(f"hist and M must be float64, got {hist.dtype} and {M.dtype}")
    into = out_x is not None
    if into != (out_h is not None) or into != (dst is not None):
        raise ValueError("out_x, out_h and dst come together")
    if into and (out_x.shape[1:] != x.shape[1:] or tuple(out_h.shape[1:]) != (H, D) or len(dst) != W
                 or out_x.shape[0] != out_h.shape[0] or out_x.dtype != x.dtype):
        raise ValueError(f"out_x [S, D={D}] in x's dtype, out_h [S, H={H}, D] and dst [W={W}] needed, got "
                         f"{tuple(out_x.shape)} {out_x.dtype}, {tuple(out_h.shape)}, {len(dst)}")
    index = torch.arange(W, device=x.device)
    src = index if src is None else src
    if step_rows_backend(x, v, hist, (out_x, out_h) if into else ()) == "torch":
        x_t, h_t = step_rows_torch(M, x[src], v[src], hist[src])
        if not into:
            return x_t, h_t
        out_x[dst], out_h[dst] = x_t, h_t
        return out_x, out_h
    x, v, hist, M = (t.contiguous() for t in (x, v, hist, M))
    if not into:
        out_x, out_h, dst = torch.empty((W, D), dtype=x.dtype), torch.empty((W, H, D), dtype=torch.float64), index
    cpu.step_rows_f32(buffer(x), buffer(v), buffer(hist), buffer(src.contiguous()), buffer(M),
                      buffer(dst.contiguous()), W, R, out_x.shape[0], D, H, buffer(out_x), buffer(out_h))
    return out_x, out_h
