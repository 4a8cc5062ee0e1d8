"""Time-grid math: the bottom layer of oss_fast (imports nothing of ours).

Flow time s runs from 0 (data) to 1 (noise). A model's grid (`fm_steps`) is s_0 = 0 < ... < s_N.
The time shift of SD3/FLUX/Wan maps s to a s / (1 + (a - 1) s) (a = 1 is the identity); FLUX's
dynamic shift is the same map with a = exp(mu), mu linear in the image sequence length.
"""

from __future__ import annotations

import numpy as np
import torch


def time_shift(s, shift: float):
    """s' = a s / (1 + (a - 1) s) for a = shift; s a float, numpy array or tensor."""
    return shift * s / (1 + (shift - 1) * s)


def time_unshift(s, shift: float):
    """The inverse of time_shift: s = s' / (a - (a - 1) s')."""
    return s / (shift - (shift - 1) * s)


def shifted_grid(steps: int, shift: float = 1.0) -> torch.Tensor:
    """The grid s_i = time_shift(i / steps, shift), i = 0..steps, float64 (shift 1: uniform)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return time_shift(torch.arange(steps + 1, dtype=torch.float64) / steps, shift)


def grid_from_descending(timesteps, num_timesteps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(model timesteps ascending with 0 first, fm_steps = those / num_timesteps) from a
    scheduler's descending timesteps that exclude the final 0 (the published wrappers' rule)."""
    timesteps = torch.as_tensor(timesteps).reshape(-1)
    ascending = torch.flip(torch.cat([timesteps, torch.zeros_like(timesteps[:1])]), dims=[0])
    return ascending, ascending / num_timesteps


# ------------------------------------------------------------------------ FLUX's dynamic shift

def calculate_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
                    base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """FLUX's dynamic shift mu: linear in the image sequence length (the grid is shifted by exp(mu))."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * slope + base_shift - slope * base_seq_len


def image_seq_len(height: int, width: int, vae_scale_factor: int = 8) -> int:
    """Packed-latent tokens of an image of height x width pixels (2 x 2 patches of the latent)."""
    return (height // (vae_scale_factor * 2)) * (width // (vae_scale_factor * 2))


def scheduler_mu(config, seq_len: int) -> float:
    """mu for a scheduler config (diffusers' keys and defaults) at an image sequence length."""
    return calculate_shift(seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                           config.get("base_shift", 0.5), config.get("max_shift", 1.15))


# ------------------------------------------------------------------------ indices on a grid

def _array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def snap_to_grid(grid, sigmas) -> list[int]:
    """Grid indices nearest to the given nonzero sigmas, ascending and distinct."""
    grid = _array(grid)
    return sorted({int(np.argmin(np.abs(grid - s))) for s in _array(sigmas)} - {0})


def grid_index(grid, sigma: float, tol: float = 1e-9) -> int | None:
    """The index of the grid point equal to sigma (within a relative tol), or None."""
    grid = _array(grid)
    i = int(np.argmin(np.abs(grid - sigma)))
    return i if abs(grid[i] - sigma) <= tol * max(1.0, abs(sigma)) else None


def uniform_steps(grid, K: int) -> list[int]:
    """K steps uniform in flow time (sigma = 1, (K-1)/K, ..., 1/K), on the grid."""
    return snap_to_grid(grid, np.linspace(1, 0, K + 1)[:-1])


def shifted_steps(grid, K: int, shift: float = 3.0) -> list[int]:
    """K steps uniform in flow time then time-shifted (SD3/FLUX style), on the grid."""
    return snap_to_grid(grid, time_shift(np.linspace(1, 0, K + 1)[:-1], shift))


def describe_grid(grid) -> dict:
    """A short description of a grid: its size, ends, and whether it is uniform or shifted."""
    s = _array(grid)
    N = len(s) - 1
    u = np.arange(N + 1) / N
    desc = dict(teacher_steps=N, first=float(s[0]), last=float(s[-1]))
    if np.allclose(s, u, atol=1e-9):
        desc["kind"] = "uniform"
        return desc
    mid = s[N // 2] if N % 2 == 0 else None
    if mid is not None and 0 < mid < 1:
        a = mid / (1 - mid)  # shift a maps 0.5 to a / (1 + a)
        if np.allclose(s, time_shift(u, a), atol=1e-9):
            desc.update(kind="shifted", shift=float(a))
            return desc
    desc["kind"] = "custom"
    return desc
