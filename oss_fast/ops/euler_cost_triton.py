"""Triton kernel of the fused Euler-jump cost (see euler_cost.py for the definition).

One program owns a tile of BR candidate rows of one sample and BJ targets and walks the latent in
blocks of BD: the rows' states and velocities are loaded once per block and reused for all BJ
targets, each target block once for all BR rows. Inputs are loaded in their storage dtype and
computed in float32 (the Euler update rounded back to the latent's dtype where the reference
rounds), the squares summed in float64. FMA contraction is disabled so `x + v * ds` rounds twice,
as torch does.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


@triton.jit
def _euler_cost_kernel(x_ptr, v_ptr, t_ptr, tile_rows_ptr, tile_sample_ptr, grid_ptr, s_ptr, out_ptr,
                       D, J, B,
                       NORM: tl.constexpr, FLOAT32: tl.constexpr, ROUND: tl.constexpr,
                       BR: tl.constexpr, BJ: tl.constexpr, BD: tl.constexpr):
    tile = tl.program_id(0)
    jb = tl.program_id(1)
    xdt = x_ptr.dtype.element_ty
    rows = tl.load(tile_rows_ptr + tile * BR + tl.arange(0, BR))
    valid_r = rows >= 0
    rows = tl.where(valid_r, rows, 0)
    b = tl.load(tile_sample_ptr + tile)
    gi = tl.load(grid_ptr + rows, mask=valid_r, other=0)
    j = jb * BJ + tl.arange(0, BJ)
    valid_j = j < J
    s_i = tl.load(s_ptr + gi)  # grid indices may exceed J: s holds the whole grid
    s_j = tl.load(s_ptr + j, mask=valid_j, other=0.0)
    ds = (s_j[None, :] - s_i[:, None]).to(tl.float32)                      # [BR, BJ]
    acc = tl.zeros((BR, BJ), dtype=tl.float64)
    if jb * BJ < tl.minimum(tl.max(gi, axis=0), J):  # some target of this block is reachable
        for d0 in range(0, D, BD):
            d = d0 + tl.arange(0, BD)
            dm = d < D
            rm = valid_r[:, None] & dm[None, :]
            xr = tl.load(x_ptr + rows[:, None] * D + d[None, :], mask=rm, other=0.0).to(tl.float32)
            vr = tl.load(v_ptr + rows[:, None] * D + d[None, :], mask=rm, other=0.0)
            if FLOAT32:
                vr = vr.to(tl.float32)
            else:
                vr = vr.to(xdt).to(tl.float32)
            t = tl.load(t_ptr + (j[:, None] * B + b) * D + d[None, :],
                        mask=valid_j[:, None] & dm[None, :], other=0.0).to(tl.float32)
            prod = vr[:, None, :] * ds[:, :, None]                          # [BR, BJ, BD]
            if ROUND and not FLOAT32:
                prod = prod.to(xdt).to(tl.float32)
            xj = xr[:, None, :] + prod
            if ROUND:
                xj = xj.to(xdt).to(tl.float32)
            e = (xj - t[None, :, :]).to(tl.float64)
            if NORM == 2:
                e = e * e
            else:
                e = tl.abs(e)
            acc += tl.sum(e, axis=2)
    keep = (j[None, :] < gi[:, None]) & valid_j[None, :]
    cost = tl.where(keep, acc / D, float("inf"))
    tl.store(out_ptr + rows[:, None] * J + j[None, :], cost, mask=valid_r[:, None] & valid_j[None, :])


def row_tiles(row_sample: torch.Tensor, rows_per_tile: int):
    """Tiles of up to rows_per_tile row indices sharing one sample (-1 padded), and their samples."""
    samples = row_sample.cpu()
    order = torch.argsort(samples, stable=True)
    tiles, tile_sample = [], []
    start = 0
    while start < len(order):
        b = samples[order[start]].item()
        stop = start
        while stop < len(order) and stop - start < rows_per_tile and samples[order[stop]].item() == b:
            stop += 1
        tile = order[start:stop].tolist()
        tiles.append(tile + [-1] * (rows_per_tile - len(tile)))
        tile_sample.append(b)
        start = stop
    device = row_sample.device
    return (torch.tensor(tiles, dtype=torch.int64, device=device).reshape(-1, rows_per_tile),
            torch.tensor(tile_sample, dtype=torch.int64, device=device))


def default_blocks(D: int, J: int):
    """(BR, BJ, BD). The interpreter runs each program op by op in numpy: there, fewer bigger blocks."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return 8, min(64, triton.next_power_of_2(J)), min(1024, triton.next_power_of_2(D))
    return 4, 16, min(64, triton.next_power_of_2(D))


def euler_costs_triton(x, v, targets, row_sample, row_grid, s, *, norm=2, float32=True, blocks=None):
    R, D = x.shape
    J, B, _ = targets.shape
    BR, BJ, BD = blocks or default_blocks(D, J)
    tiles, tile_sample = row_tiles(row_sample, BR)
    out = torch.empty((R, J), dtype=torch.float64, device=x.device)
    grid = (tiles.shape[0], triton.cdiv(J, BJ))
    _euler_cost_kernel[grid](x, v, targets, tiles, tile_sample, row_grid, s, out, D, J, B,
                             NORM=int(norm), FLOAT32=bool(float32), ROUND=x.dtype != torch.float32,
                             BR=BR, BJ=BJ, BD=BD, enable_fp_fusion=False)
    return out
