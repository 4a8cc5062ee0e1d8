"""Triton kernel of the fused Euler-jump cost (see euler_cost.py for the definition).

A program owns a tile of BR candidate rows of one sample, BJ targets and one slice of the latent;
it walks its slice BD elements at a time, reusing each load of the rows' states and velocities for
BJ targets and each load of a target block for BR rows, and accumulates elementwise in float64
registers, reducing over the latent once at the end. Slices of the latent go to different programs
(grid axis 2) so that even a handful of rows fills the GPU; their partial sums are added in a fixed
order afterwards, so results are deterministic. Inputs are loaded in their storage dtype and
computed in float32, the Euler update rounded back to the latent's dtype where the reference
rounds; FMA contraction is disabled so that `x + v * ds` rounds twice, as torch does. The walk over
the latent (latent_cost_sums) is shared with the multistep kernel, which has its own jump.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl


@triton.jit
def tile_rows_and_targets(tile_rows_ptr, tile_sample_ptr, grid_ptr, J, BR: tl.constexpr, BJ: tl.constexpr):
    """This program's rows (padding -1 read as row 0, masked), their sample and grid indices, and its
    targets: (rows, valid_r, sample, grid, targets, valid_j, reachable) where reachable says whether
    any row can jump to any target of the block."""
    tile = tl.program_id(0)
    jb = tl.program_id(1)
    rows = tl.load(tile_rows_ptr + tile * BR + tl.arange(0, BR))
    valid_r = rows >= 0
    rows = tl.where(valid_r, rows, 0)
    b = tl.load(tile_sample_ptr + tile)
    gi = tl.load(grid_ptr + rows, mask=valid_r, other=0)
    j = jb * BJ + tl.arange(0, BJ)
    return rows, valid_r, b, gi, j, j < J, jb * BJ < tl.minimum(tl.max(gi, axis=0), J)


@triton.jit
def latent_cost_sums(jump, op_args, x_ptr, v_ptr, t_ptr, rows, valid_r, b, j, valid_j, reachable, D, B, d_begin, d_end,
                     NORM: tl.constexpr, ROUND: tl.constexpr, OPTION: tl.constexpr,
                     BR: tl.constexpr, BJ: tl.constexpr, BD: tl.constexpr):
    """The loop both cost kernels share: per (row, target) pair of the tile, the float64 sum over the
    latent slice [d_begin, d_end) of |xj - target|^p, where the op's jump(x, v, rows, d, row_mask, D,
    op_args, ROUND, OPTION) takes the rows' states and velocities at elements d (loaded in their
    storage dtype) to the jumped states xj [BR, BJ, BD] in float32. op_args holds the op's tensors
    (one, or a tuple), OPTION its own compile-time setting (a constexpr in a tuple would not stay one).
    Accumulated elementwise, reduced over the latent once."""
    acc = tl.zeros((BR, BJ, BD), dtype=tl.float64)
    if reachable:
        for d0 in range(d_begin, d_end, BD):
            d = d0 + tl.arange(0, BD)
            dm = d < d_end
            rm = valid_r[:, None] & dm[None, :]
            x = tl.load(x_ptr + rows[:, None] * D + d[None, :], mask=rm, other=0.0)
            v = tl.load(v_ptr + rows[:, None] * D + d[None, :], mask=rm, other=0.0)
            t = tl.load(t_ptr + (j[:, None] * B + b) * D + d[None, :],
                        mask=valid_j[:, None] & dm[None, :], other=0.0).to(tl.float32)
            xj = jump(x, v, rows, d, rm, D, op_args, ROUND, OPTION)
            e = (xj - t[None, :, :]).to(tl.float64)
            if NORM == 2:
                acc += e * e
            else:
                acc += tl.abs(e)
    return tl.sum(acc, axis=2)


@triton.jit
def euler_jump(x, v, rows, d, rm, D, ds, ROUND: tl.constexpr, FLOAT32: tl.constexpr):
    """x + v * ds (ds [BR, BJ, 1] float32), rounded as the reference rounds."""
    xdt = x.dtype
    xr = x.to(tl.float32)
    if FLOAT32:
        vr = v.to(tl.float32)
    else:
        vr = v.to(xdt).to(tl.float32)
    prod = vr[:, None, :] * ds                                              # [BR, BJ, BD]
    if ROUND and not FLOAT32:
        prod = prod.to(xdt).to(tl.float32)
    xj = xr[:, None, :] + prod
    if ROUND:
        xj = xj.to(xdt).to(tl.float32)
    return xj


# Sizes that change from level to level are not specialised on, so a search compiles the kernel once.
@triton.jit(do_not_specialize=["R", "J", "slice_len"])
def _euler_cost_kernel(x_ptr, v_ptr, t_ptr, tile_rows_ptr, tile_sample_ptr, grid_ptr, part_ptr, R, D, J, B, slice_len,
                       s_ptr, NORM: tl.constexpr, ROUND: tl.constexpr, BR: tl.constexpr, BJ: tl.constexpr,
                       BD: tl.constexpr, FLOAT32: tl.constexpr):
    part = tl.program_id(2)
    rows, valid_r, b, gi, j, valid_j, reachable = tile_rows_and_targets(tile_rows_ptr, tile_sample_ptr, grid_ptr, J,
                                                                        BR, BJ)
    s_i = tl.load(s_ptr + gi)  # grid indices may exceed J: s holds the whole grid
    s_j = tl.load(s_ptr + j, mask=valid_j, other=0.0)
    ds = (s_j[None, :] - s_i[:, None]).to(tl.float32)[:, :, None]          # [BR, BJ, 1]
    d_begin = part * slice_len
    total = latent_cost_sums(euler_jump, ds, x_ptr, v_ptr, t_ptr, rows, valid_r, b, j, valid_j, reachable, D, B,
                             d_begin, tl.minimum(d_begin + slice_len, D), NORM, ROUND, FLOAT32, BR, BJ, BD)
    tl.store(part_ptr + (part * R + rows[:, None]) * J + j[None, :], total,
             mask=valid_r[:, None] & valid_j[None, :])


def row_tiles(row_sample: torch.Tensor, rows_per_tile: int):
    """Tiles of rows_per_tile row indices, each of one sample (-1 padded), and the tiles' samples."""
    samples = row_sample.cpu()
    tiles, tile_sample = [], []
    for b in torch.unique(samples).tolist():
        rows = (samples == b).nonzero()[:, 0]
        pad = (-len(rows)) % rows_per_tile
        rows = torch.cat([rows, torch.full((pad,), -1, dtype=rows.dtype)]).reshape(-1, rows_per_tile)
        tiles.append(rows)
        tile_sample += [b] * rows.shape[0]
    device = row_sample.device
    return (torch.cat(tiles).to(device), torch.tensor(tile_sample, dtype=torch.int64, device=device))


def default_config(D: int):
    """(BR, BJ, BD, num_warps). The interpreter runs each program op by op in numpy: there, fewer,
    bigger blocks. On a GPU the float64 accumulator BR x BJ x BD must stay in registers."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return 8, 64, min(512, triton.next_power_of_2(D)), 4
    return 8, 8, 32, 4  # the fastest of benchmarks/gpu/sweep_cost_kernel.py on an H100 at every size


@dataclass
class Launch:
    """How a cost kernel covers R rows x J targets x D elements: row tiles of one sample each, block
    sizes, and the latent cut into slices (enough programs to fill the GPU)."""

    tiles: torch.Tensor
    tile_sample: torch.Tensor
    blocks: tuple
    num_warps: int
    slices: int
    slice_len: int

    @classmethod
    def plan(cls, x, row_sample, J, blocks=None, slices=None, num_warps=None) -> "Launch":
        D = x.shape[1]
        BR, BJ, BD, warps = default_config(D)
        if blocks is not None:
            BR, BJ, BD = blocks
        tiles, tile_sample = row_tiles(row_sample, BR)
        programs = tiles.shape[0] * triton.cdiv(J, BJ)
        # enough latent slices for ~4 programs per streaming multiprocessor, each slice >= 64 steps of BD
        if slices is None:
            sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 1
            slices = max(1, min(triton.cdiv(4 * sms, programs), D // (64 * BD)))
        slice_len = triton.cdiv(triton.cdiv(D, slices), BD) * BD
        return cls(tiles, tile_sample, (BR, BJ, BD), num_warps or warps, triton.cdiv(D, slice_len), slice_len)

    def grid(self, J):
        return (self.tiles.shape[0], triton.cdiv(J, self.blocks[1]), self.slices)

    def partial_sums(self, R, J, device):
        return torch.zeros((self.slices, R, J), dtype=torch.float64, device=device)


def costs_from_parts(part, row_grid, D):
    """The slices' partial sums added in a fixed order, as means; unreachable targets +inf."""
    J = part.shape[2]
    costs = part.sum(0) / D
    reachable = torch.arange(J, device=part.device)[None, :] < row_grid[:, None]
    return costs.masked_fill_(~reachable, float("inf"))


def launch_costs(kernel, x, v, targets, row_sample, row_grid, op_pointers, op_constants, norm, blocks, slices,
                 num_warps):
    """Costs [R, J] of a cost kernel launched over (row tiles, target tiles, latent slices): the
    arguments every cost kernel takes first, then its op's pointers and compile-time constants."""
    R, D = x.shape
    J, B, _ = targets.shape
    launch = Launch.plan(x, row_sample, J, blocks, slices, num_warps)
    part = launch.partial_sums(R, J, x.device)
    BR, BJ, BD = launch.blocks
    kernel[launch.grid(J)](x, v, targets, launch.tiles, launch.tile_sample, row_grid, part, R, D, J, B,
                           launch.slice_len, *op_pointers, NORM=int(norm), ROUND=x.dtype != torch.float32, BR=BR,
                           BJ=BJ, BD=BD, num_warps=launch.num_warps, enable_fp_fusion=False, **op_constants)
    return costs_from_parts(part, row_grid, D)


def euler_costs_triton(x, v, targets, row_sample, row_grid, s, *, norm=2, float32=True, blocks=None, slices=None,
                       num_warps=None):
    """blocks (BR, BJ, BD), slices (of the latent) and num_warps default to a choice for the device."""
    return launch_costs(_euler_cost_kernel, x, v, targets, row_sample, row_grid, (s,), dict(FLOAT32=bool(float32)),
                        norm, blocks, slices, num_warps)
