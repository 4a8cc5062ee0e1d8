"""Triton kernel of the multistep jump cost (see combo_cost.py for the definition).

The layout and the walk over the latent of the Euler kernel (euler_cost_triton.py): a program owns
BR rows of one sample, BJ targets and a slice of the latent, reusing each load of the rows' vectors
for BJ targets and each target block for BR rows. Per pair its jump combines the rows' state,
velocity and H history vectors with the pair's coefficients in float64, in the reference's order,
rounds to the latent's dtype (through float32); the walk accumulates the float32 difference to the
target in float64 registers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .euler_cost_triton import latent_cost_sums, launch_costs, tile_rows_and_targets


@triton.jit
def combo_jump(x, v, rows, d, rm, D, op_args, ROUND: tl.constexpr, H: tl.constexpr):
    """c0 x + c1 v + sum_k c_{2+k} h_k in float64, in the reference's order, rounded to the latent's
    dtype through float32; op_args = (h_ptr, c_ptr, cbase, pair, c0, c1)."""
    h_ptr, c_ptr, cbase, pair, c0, c1 = op_args
    y = c0 * x.to(tl.float64)[:, None, :] + c1 * v.to(tl.float64)[:, None, :]
    for k in tl.static_range(H):
        hk = tl.load(h_ptr + (rows[:, None] * H + k) * D + d[None, :], mask=rm, other=0.0)
        ck = tl.load(c_ptr + cbase + 2 + k, mask=pair, other=0.0)
        y = y + ck[:, :, None] * hk[:, None, :]
    xj = y.to(tl.float32)
    if ROUND:
        xj = xj.to(x.dtype).to(tl.float32)
    return xj


@triton.jit(do_not_specialize=["R", "J", "slice_len"])
def _combo_cost_kernel(x_ptr, v_ptr, t_ptr, tile_rows_ptr, tile_sample_ptr, grid_ptr, part_ptr, R, D, J, B, slice_len,
                       h_ptr, c_ptr, NORM: tl.constexpr, ROUND: tl.constexpr, BR: tl.constexpr, BJ: tl.constexpr,
                       BD: tl.constexpr, H: tl.constexpr):
    part = tl.program_id(2)
    rows, valid_r, b, gi, j, valid_j, reachable = tile_rows_and_targets(tile_rows_ptr, tile_sample_ptr, grid_ptr, J,
                                                                        BR, BJ)
    pair = valid_r[:, None] & valid_j[None, :]
    cbase = (rows[:, None] * J + j[None, :]) * (2 + H)
    c0 = tl.load(c_ptr + cbase, mask=pair, other=0.0)[:, :, None]                 # [BR, BJ, 1] float64
    c1 = tl.load(c_ptr + cbase + 1, mask=pair, other=0.0)[:, :, None]
    d_begin = part * slice_len
    total = latent_cost_sums(combo_jump, (h_ptr, c_ptr, cbase, pair, c0, c1), x_ptr, v_ptr, t_ptr, rows, valid_r, b,
                             j, valid_j, reachable, D, B, d_begin, tl.minimum(d_begin + slice_len, D), NORM, ROUND, H,
                             BR, BJ, BD)
    tl.store(part_ptr + (part * R + rows[:, None]) * J + j[None, :], total, mask=pair)


def combo_costs_triton(x, v, hist, coef, targets, row_sample, row_grid, *, norm=2, blocks=None, slices=None,
                       num_warps=None):
    """blocks (BR, BJ, BD), slices (of the latent) and num_warps default to a choice for the device."""
    hist_or_any = hist if hist.shape[1] else x  # H = 0 reads no history: any valid pointer will do
    return launch_costs(_combo_cost_kernel, x, v, targets, row_sample, row_grid, (hist_or_any, coef),
                        dict(H=hist.shape[1]), norm, blocks, slices, num_warps)
