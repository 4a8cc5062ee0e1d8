"""Time-grid math: the bottom layer of oss_fast (imports nothing of ours).

Flow time s runs from 0 (data) to 1 (noise). A model's grid (`fm_steps`) is s_0 = 0 < ... < s_N.
The time shift of SD3/FLUX/Wan maps s to a s / (1 + (a - 1) s) (a = 1 is the identity); FLUX's
dynamic shift is the same map with a = exp(mu), mu linear in the image sequence length.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np
import torch


MAX_STEPS = 10_000  # more steps than any sampler runs: a bigger count is a mistake, not a schedule
# the smallest positive flow time a grid or schedule may hold: pipelines keep sigmas in float32, where
# a smaller one is denormal or 0
TINY = float(np.finfo(np.float32).tiny)
SEED_MAX = 2**63 - 1  # the largest seed: torch.Generator and numpy take any int in [0, 2^63 - 1]
MAX_SNAP_CELLS = 10**8  # snap_steps' DP table (steps x grid points, 4 bytes each): 400 MB at most


# ------------------------------------------------------------------------ numbers taken from callers

def whole_number(value, name: str, low: int = 1, high: int | None = None) -> int:
    """An integer (operator.index: Python and numpy ints, integer 0-d tensors; not bools, floats or
    strings) in [low, high], as an int; ValueError naming it otherwise."""
    bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
    try:
        number = None if isinstance(value, (bool, np.bool_)) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be a whole number {bound}, got {_brief(value)}")
    return number


def index_list(values, name: str = "indices") -> list[int]:
    """A sequence of integers (each taken by operator.index) as a list of ints; ValueError for a
    string (not "13" -> [1, 3]), a mapping or set, a non-sequence, or an element that is not an integer
    (a float, a bool)."""
    if isinstance(values, (str, bytes, dict, set, frozenset)) or not hasattr(values, "__iter__") or (
            isinstance(values, (torch.Tensor, np.ndarray)) and values.ndim != 1):
        raise ValueError(f"{name} must be a list of ints (grid indices), got {_brief(values)}")
    out = []
    for i in values:
        try:
            out.append(None if isinstance(i, (bool, np.bool_)) else operator.index(i))
        except TypeError:
            out.append(None)
        if out[-1] is None:
            raise ValueError(f"{name} must be ints (grid indices), got {_brief(i)} in {_brief(values)}")
    return out


def positive_real(value, name: str = "shift") -> float:
    """A real number > 0 and finite (Python or numpy), as a float; ValueError naming it otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a number > 0 (finite), got {_brief(value)}")
    return float(value)


def _brief(value) -> str:
    """A short repr for messages: numpy scalars and 0-d tensors as their number, arrays by shape."""
    if isinstance(value, np.generic) or (isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0
                                         and getattr(value, "device", None) != torch.device("meta")):
        value = value.item()
    text = repr(value) if not isinstance(value, (torch.Tensor, np.ndarray)) else \
        f"{type(value).__name__} of shape {tuple(value.shape)}"
    return text if len(text) <= 80 else text[:77] + "..."


def time_shift(s, shift: float):
    """s' = a s / (1 + (a - 1) s) for a = shift; s a float, numpy array or tensor."""
    return shift * s / (1 + (shift - 1) * s)


def time_unshift(s, shift: float):
    """The inverse of time_shift: s = s' / (a - (a - 1) s')."""
    return s / (shift - (shift - 1) * s)


def shifted_grid(steps: int, shift: float = 1.0) -> torch.Tensor:
    """The grid s_i = time_shift(i / steps, shift), i = 0..steps, float64 (shift 1: uniform);
    ValueError where the shift is too large or small for its flow times to stay distinct (and above
    float32's smallest normal)."""
    steps = whole_number(steps, "steps")
    shift = positive_real(shift)
    grid = time_shift(torch.arange(steps + 1, dtype=torch.float64) / steps, shift)
    collapsed = (grid[1:] <= grid[:-1]).nonzero()
    if len(collapsed) or grid[1] < TINY:
        at = int(collapsed[0, 0]) + 1 if len(collapsed) else 0
        raise ValueError(f"shift {shift:g} is too {'large' if shift > 1 else 'small'} to represent a {steps}-step "
                         f"grid: its flow times at indices {at} and {at + 1} ({grid[at].item():.3g}, "
                         f"{grid[at + 1].item():.3g}) are not distinct numbers above {TINY:.2g} (float32's "
                         "smallest); use a shift nearer 1")
    return grid


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
    if max_seq_len == base_seq_len:
        raise ValueError(f"max_image_seq_len ({max_seq_len}) must differ from base_image_seq_len ({base_seq_len}): "
                         "the shift rule interpolates between them")
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * slope + base_shift - slope * base_seq_len


def image_seq_len(height: int, width: int, vae_scale_factor: int = 8) -> int:
    """Packed-latent tokens of an image of height x width pixels (2 x 2 patches of the latent)."""
    return (height // (vae_scale_factor * 2)) * (width // (vae_scale_factor * 2))


def scheduler_mu(config, seq_len: int) -> float:
    """mu for a scheduler config (diffusers' keys and defaults) at an image sequence length."""
    return calculate_shift(seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                           config.get("base_shift", 0.5), config.get("max_shift", 1.15))


def scheduler_shift(config):
    """The static time shift of a diffusers flow scheduler's config: `shift` (FlowMatch schedulers),
    else `flow_shift` (UniPC / DPM-Solver on flow sigmas); 1 where it sets none. Unchecked."""
    shift = config.get("shift") if "shift" in config else config.get("flow_shift")
    return 1.0 if shift is None else shift


def mu_shift(mu: float, time_shift_type: str = "exponential", where: str = "") -> float:
    """The time shift of a dynamic-shift mu: exp(mu), or mu itself for time_shift_type "linear";
    ValueError (naming `where`, e.g. the image size) unless it is a finite number > 0."""
    if isinstance(mu, (bool, np.bool_)) or not isinstance(mu, numbers.Real) or not math.isfinite(mu):
        raise ValueError(f"mu must be a finite number, got {_brief(mu)}")
    shift = (math.exp(mu) if mu < 709 else math.inf) if time_shift_type == "exponential" else float(mu)
    if not 0 < shift < math.inf:
        rule = "exp(mu)" if time_shift_type == "exponential" else "mu (time_shift_type linear)"
        raise ValueError(f"the dynamic shift{where} is {rule} = {shift:g} for mu {mu:g}: a time shift must be a finite "
                         "number > 0 (check the rule's base_shift/max_shift, or use a size within its range)")
    return shift


# what a pipeline that shifts its sigmas by image size (FLUX, diffusers' use_dynamic_shifting) needs to
# compute its shift at any size: the scheduler's config entries and the pipeline's VAE scale factor
DYNAMIC_SHIFT_KEYS = ("base_image_seq_len", "max_image_seq_len", "base_shift", "max_shift", "time_shift_type",
                      "vae_scale_factor")


def dynamic_shift_rule(scheduler_config, vae_scale_factor: int = 8) -> dict:
    """The dynamic_shift record of a scheduler config (diffusers' keys and defaults), checked."""
    return check_dynamic_shift_rule(dict(
        base_image_seq_len=scheduler_config.get("base_image_seq_len", 256),
        max_image_seq_len=scheduler_config.get("max_image_seq_len", 4096),
        base_shift=scheduler_config.get("base_shift", 0.5), max_shift=scheduler_config.get("max_shift", 1.15),
        time_shift_type=scheduler_config.get("time_shift_type", "exponential"), vae_scale_factor=vae_scale_factor))


def check_dynamic_shift_rule(rule) -> dict:
    """A dynamic_shift record (DYNAMIC_SHIFT_KEYS) checked and normalised: sequence lengths and the VAE
    scale factor whole numbers >= 1 with max_image_seq_len > base_image_seq_len, base/max shift finite
    numbers, time_shift_type exponential or linear; ValueError naming the entry otherwise. Whether the
    shift is a usable number depends on the size: size_shift checks it there."""
    if not isinstance(rule, dict) or set(rule) != set(DYNAMIC_SHIFT_KEYS):
        raise ValueError(f"dynamic_shift must be a dict of {DYNAMIC_SHIFT_KEYS}, got {_brief(rule)}")
    if rule["time_shift_type"] not in ("exponential", "linear"):
        raise ValueError(f"dynamic_shift time_shift_type must be exponential or linear, got {rule['time_shift_type']!r}")
    out = dict(time_shift_type=rule["time_shift_type"])
    for key in ("base_image_seq_len", "max_image_seq_len", "vae_scale_factor"):
        out[key] = whole_number(rule[key], f"dynamic_shift {key}")
    if out["max_image_seq_len"] <= out["base_image_seq_len"]:
        raise ValueError(f"dynamic_shift max_image_seq_len ({out['max_image_seq_len']}) must exceed base_image_seq_len "
                         f"({out['base_image_seq_len']})")
    for key in ("base_shift", "max_shift"):
        value = rule[key]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"dynamic_shift {key} must be a finite number, got {_brief(value)}")
        out[key] = float(value)
    return {key: out[key] for key in DYNAMIC_SHIFT_KEYS}


def size_mu(rule: dict, size) -> float:
    """The mu a dynamic-shift pipeline (its rule: dynamic_shift_rule) computes at an image size."""
    try:
        return scheduler_mu(rule, float(image_seq_len(size[0], size[1], rule["vae_scale_factor"])))
    except OverflowError:
        raise ValueError(f"{size[0]}x{size[1]} is beyond the pipeline's shift rule (its sequence length overflows "
                         "a float)") from None


def size_shift(rule: dict, size) -> float:
    """The time shift a dynamic-shift pipeline applies at an image size (exp(mu), or mu if linear);
    ValueError where that is not a finite number > 0 (a size beyond the rule's range)."""
    return mu_shift(size_mu(rule, size), rule["time_shift_type"], f" at {size[0]}x{size[1]}")


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
    a nearest grid point. ValueError when the grid has fewer than K nonzero points, or when the DP's
    table (K x N) would pass MAX_SNAP_CELLS."""
    grid, targets = _array(grid), np.sort(_array(sigmas))
    K, N = len(targets), len(grid) - 1
    if K > N:
        raise ValueError(f"{K} steps do not fit a grid of {N} steps")
    if K * N > MAX_SNAP_CELLS:
        raise ValueError(f"snapping {K} steps onto a {N}-step grid needs a {K} x {N} table ({4 * K * N >> 20} MiB), "
                         f"more than the {4 * MAX_SNAP_CELLS >> 20} MiB allowed: use a grid of at most "
                         f"{MAX_SNAP_CELLS // K} steps")
    points = grid[1:]
    total = np.abs(points - targets[0])  # total[i]: best cost of sigmas 0..k with sigma k at index i + 1
    choice = np.zeros((K, N), dtype=np.int32)
    for k in range(1, K):
        below = np.concatenate([[np.inf], total[:-1]])  # sigma k - 1 one index lower
        best_before = np.minimum.accumulate(below)
        # where that best sits: the last position that reached the running minimum
        choice[k] = np.maximum.accumulate(np.where(below == best_before, np.arange(N) - 1, -1))
        total = np.abs(points - targets[k]) + best_before
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
    return snap_to_grid(grid, np.linspace(1, 0, whole_number(K, "K", 1, MAX_STEPS) + 1)[:-1])


def shifted_steps(grid, K: int, shift: float = 3.0) -> list[int]:
    """K steps uniform in flow time then time-shifted (SD3/FLUX style), on the grid."""
    return snap_to_grid(grid, time_shift(np.linspace(1, 0, whole_number(K, "K", 1, MAX_STEPS) + 1)[:-1],
                                         positive_real(shift)))


def describe_grid(grid) -> dict:
    """A short description of a grid: its size, ends, and whether it is uniform or shifted."""
    s = _array(grid)
    N = len(s) - 1
    u = np.arange(N + 1) / N
    desc = dict(teacher_steps=N, first=float(s[0]), last=float(s[-1]))
    if np.allclose(s, u, atol=1e-9):
        desc["kind"] = "uniform"
        return desc
    i = N // 2
    if N > 1 and 0 < s[i] < 1:
        # the shift a that maps u_i to s_i (any interior index: odd N too), rid of its rounding noise
        a = float(f"{s[i] * (1 - u[i]) / (u[i] * (1 - s[i])):.12g}")
        if np.allclose(s, time_shift(u, a), atol=1e-9):
            desc.update(kind="shifted", shift=float(a))
            return desc
    desc["kind"] = "custom"
    return desc
