"""Time-grid math: the bottom layer of oss_fast (imports nothing of ours).

Flow time s runs from 0 (data) to 1 (noise). A model's grid (`fm_steps`) is s_0 = 0 < ... < s_N.
The time shift of SD3/FLUX/Wan maps s to a s / (1 + (a - 1) s) (a = 1 is the identity); FLUX's
dynamic shift is the same map with a = exp(mu), mu linear in the image sequence length.
"""

from __future__ import annotations

import math

import numpy as np
import torch


MAX_STEPS = 10_000  # more steps than any sampler runs: a bigger count is a mistake, not a schedule


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


# what a pipeline that shifts its sigmas by image size (FLUX, diffusers' use_dynamic_shifting) needs to
# compute its shift at any size: the scheduler's config entries and the pipeline's VAE scale factor
DYNAMIC_SHIFT_KEYS = ("base_image_seq_len", "max_image_seq_len", "base_shift", "max_shift", "time_shift_type",
                      "vae_scale_factor")


def dynamic_shift_rule(scheduler_config, vae_scale_factor: int = 8) -> dict:
    """The dynamic_shift record of a scheduler config (diffusers' keys and defaults)."""
    return dict(base_image_seq_len=scheduler_config.get("base_image_seq_len", 256),
                max_image_seq_len=scheduler_config.get("max_image_seq_len", 4096),
                base_shift=scheduler_config.get("base_shift", 0.5), max_shift=scheduler_config.get("max_shift", 1.15),
                time_shift_type=scheduler_config.get("time_shift_type", "exponential"),
                vae_scale_factor=vae_scale_factor)


def size_mu(rule: dict, size) -> float:
    """The mu a dynamic-shift pipeline (its rule: dynamic_shift_rule) computes at an image size."""
    return scheduler_mu(rule, image_seq_len(size[0], size[1], rule["vae_scale_factor"]))


def size_shift(rule: dict, size) -> float:
    """The time shift a dynamic-shift pipeline applies at an image size (exp(mu), or mu if linear)."""
    mu = size_mu(rule, size)
    return math.exp(mu) if rule["time_shift_type"] == "exponential" else mu


# ------------------------------------------------------------------------ indices on a grid

def _array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def snap_to_grid(grid, sigmas) -> list[int]:
    """Grid indices nearest to the given nonzero sigmas, ascending and distinct."""
    grid = _array(grid)
    return sorted({int(np.argmin(np.abs(grid - s))) for s in _array(sigmas)} - {0})


def snap_steps(grid, sigmas) -> list[int]:
    """K distinct grid indices (ascending, none 0) for K nonzero sigmas: the assignment that keeps the
    order and moves the sigmas least in total (a small DP), so no step is lost where two sigmas share
    a nearest grid point. ValueError when the grid has fewer than K nonzero points."""
    grid, targets = _array(grid), np.sort(_array(sigmas))
    K, N = len(targets), len(grid) - 1
    if K > N:
        raise ValueError(f"{K} steps do not fit a grid of {N} steps")
    dist = np.abs(grid[None, 1:] - targets[:, None])  # [K, N]: sigma k at grid index i + 1
    total = dist[0].copy()
    choice = np.zeros((K, N), dtype=np.int64)
    for k in range(1, K):  # total[i]: best cost of sigmas 0..k with sigma k at index i + 1
        below = np.concatenate([[np.inf], total[:-1]])  # sigma k - 1 one index lower
        best_before = np.minimum.accumulate(below)
        # where that best sits: the last position that reached the running minimum
        where = np.maximum.accumulate(np.where(below == best_before, np.arange(N) - 1, -1))
        total, choice[k] = dist[k] + best_before, where
    indices = [int(np.argmin(total))]
    for k in range(K - 1, 0, -1):
        indices.append(int(choice[k, indices[-1]]))
    return [i + 1 for i in reversed(indices)]


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
