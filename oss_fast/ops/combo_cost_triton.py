"""Triton kernel of the multistep jump cost (see combo_cost.py for the definition).

The layout of the Euler kernel (euler_cost_triton.py): a program owns BR rows of one sample, BJ
targets and a slice of the latent, reusing each load of the rows' vectors for BJ targets and each
target block for BR rows. Per pair it combines the rows' state, velocity and H history vectors with
the pair's coefficients in float64, in the reference's order, rounds to the latent's dtype (through
float32), and accumulates the float32 difference to the target in float64 registers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .euler_cost_triton import Launch, costs_from_parts, tile_rows_and_targets


@triton.jit(do_not_specialize=["R", "J", "slice_len"])
def _combo_cost_kernel(x_ptr, v_ptr, h_ptr, c_ptr, t_ptr, tile_rows_ptr, tile_sample_ptr, grid_ptr, part_ptr,
                       R, D, J, B, slice_len,
                       H: tl.constexpr, NORM: tl.constexpr, ROUND: tl.constexpr,
                       BR: tl.constexpr, BJ: tl.constexpr, BD: tl.constexpr):
    part = tl.program_id(2)
    xdt = x_ptr.dtype.element_ty
    rows, valid_r, b, gi, j, valid_j, reachable = tile_rows_and_targets(tile_rows_ptr, tile_sample_ptr, grid_ptr, J,
                                                                        BR, BJ)
    pair = valid_r[:, None] & valid_j[None, :]
    cbase = (rows[:, None] * J + j[None, :]) * (2 + H)
    c0 = tl.load(c_ptr + cbase, mask=pair, other=0.0)[:, :, None]                 # [BR, BJ, 1] float64
    c1 = tl.load(c_ptr + cbase + 1, mask=pair, other=0.0)[:, :, None]
    acc = tl.zeros((BR, BJ, BD), dtype=tl.float64)
    d_begin = part * slice_len
    d_end = tl.minimum(d_begin + slice_len, D)
    if reachable:
        for d0 in range(d_begin, d_end, BD):
            d = d0 + tl.arange(0, BD)
            dm = d < d_end
            rm = valid_r[:, None] & dm[None, :]
            xr = tl.load(x_ptr + rows[:, None] * D + d[None, :], mask=rm, other=0.0).to(tl.float64)
            vr = tl.load(v_ptr + rows[:, None] * D + d[None, :], mask=rm, other=0.0).to(tl.float64)
            y = c0 * xr[:, None, :] + c1 * vr[:, None, :]
            for k in tl.static_range(H):
                hk = tl.load(h_ptr + (rows[:, None] * H + k) * D + d[None, :], mask=rm, other=0.0)
                ck = tl.load(c_ptr + cbase + 2 + k, mask=pair, other=0.0)
                y = y + ck[:, :, None] * hk[:, None, :]
            xj = y.to(tl.float32)
            if ROUND:
                xj = xj.to(xdt).to(tl.float32)
            t = tl.load(t_ptr + (j[:, None] * B + b) * D + d[None, :],
                        mask=valid_j[:, None] & dm[None, :], other=0.0).to(tl.float32)
            e = (xj - t[None, :, :]).to(tl.float64)
            if NORM == 2:
                acc += e * e
            else:
                acc += tl.abs(e)
    total = tl.sum(acc, axis=2)
    tl.store(part_ptr + (part * R + rows[:, None]) * J + j[None, :], total, mask=pair)


def combo_costs_triton(x, v, hist, coef, targets, row_sample, row_grid, *, norm=2, blocks=None, slices=None,
                       num_warps=None):
    """blocks (BR, BJ, BD), slices (of the latent) and num_warps default to a choice for the device."""
    R, D = x.shape
    J, B, _ = targets.shape
    launch = Launch.plan(x, row_sample, J, blocks, slices, num_warps)
    part = launch.partial_sums(R, J, x.device)
    BR, BJ, BD = launch.blocks
    hist_or_any = hist if hist.shape[1] else x  # H = 0 reads no history: any valid pointer will do
    _combo_cost_kernel[launch.grid(J)](x, v, hist_or_any, coef, targets, launch.tiles, launch.tile_sample, row_grid,
                                       part, R, D, J, B, launch.slice_len, H=hist.shape[1], NORM=int(norm),
                                       ROUND=x.dtype != torch.float32, BR=BR, BJ=BJ, BD=BD,
                                       num_warps=launch.num_warps, enable_fp_fusion=False)
    return costs_from_parts(part, row_grid, D)
