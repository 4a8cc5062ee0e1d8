"""The checks on what sampling starts from and what a velocity model returns, shared by the search
(ModelRunner, the search's NaN screen) and oss_fast.sample (DESIGN §6): one set of rules, so the two
never disagree on what a model may return.

* noises z: a real floating-point tensor [B, ...] with B >= 1, finite;
* a velocity: a tensor of exactly its input's shape (no broadcasting of [B, 1, ...] or [1, ...]), a
  real floating-point dtype (not integer, bool or complex), finite.

`where` texts name the call ("at grid index 7", "at step 2 of 5 (grid index 7)"); they are built
only when a check fails.
"""

from __future__ import annotations

from typing import Callable

import torch


def check_noise(z) -> None:
    """z: a real floating-point tensor [B, ...] of initial noises, B >= 1, finite; ValueError otherwise."""
    if not isinstance(z, torch.Tensor) or z.dim() < 2 or not z.is_floating_point():
        got = f"{z.dtype} tensor of shape {tuple(z.shape)}" if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must be a real floating-point tensor [B, ...] of initial noises, got a {got}")
    if z.shape[0] < 1:
        raise ValueError("z holds no sample")
    if z.device.type == "meta":
        raise ValueError("z is on the meta device (no values): move it to cpu or cuda")
    if not torch.isfinite(z).all():
        raise ValueError("z holds NaN or inf")


def check_velocity(v, shape: tuple, where: Callable[[], str]) -> None:
    """A velocity v returned for an input of shape `shape`: a tensor of exactly that shape (ValueError)
    with a real floating-point dtype (TypeError). Finiteness is checked apart (first_non_finite), where
    the search screens all rows at once."""
    shape = tuple(shape)
    if not isinstance(v, torch.Tensor):
        raise ValueError(f"the model returned a {type(v).__name__} {where()}, not a tensor of its input's shape {shape}")
    if tuple(v.shape) != shape:
        raise ValueError(f"the model returned shape {tuple(v.shape)} {where()} for an input of shape {shape}: a "
                         "velocity must have exactly its input's shape (it is not broadcast)")
    if not v.is_floating_point():
        raise TypeError(f"the model returned {v.dtype} velocities {where()}: a velocity model must return real "
                        "floating-point tensors")


def first_non_finite(v: torch.Tensor):
    """Index of the first row of v holding NaN or inf, or None (one device sync).

    A row's sum is finite unless the row holds NaN or inf (or overflows): one cheap reduction
    screens all rows, the exact test runs only on the rows it flags.
    """
    rows = v.flatten(1)
    flagged = (~torch.isfinite(rows.sum(dim=1))).nonzero()[:, 0]
    for r in flagged.tolist():
        if not bool(torch.isfinite(rows[r]).all()):
            return r
    return None


def grid_text(grid: torch.Tensor) -> str:
    """'at grid index i' (or 'at grid indices i..j') for the grid indices of one model call's rows."""
    low, high = int(grid.min()), int(grid.max())
    return f"at grid index {low}" if low == high else f"at grid indices {low}..{high}"


def overflow_error(what: str, grid_index: int, sample: int, dtype: torch.dtype, unit: str = "sample"
                   ) -> FloatingPointError:
    """The error for a state (not a model output) that left its dtype's range: a sum of finite
    velocities times finite steps, so the latent's dtype is too narrow (or the velocities huge)."""
    where = f"{what} overflowed to inf or NaN at grid index {grid_index} for {unit} {sample}"
    if dtype in (torch.float16, torch.bfloat16):
        return FloatingPointError(f"{where} (latent {str(dtype).replace('torch.', '')}): use float32 latents, "
                                  "e.g. z.float()")
    return FloatingPointError(f"{where} (latent {str(dtype).replace('torch.', '')}): the model's velocities are "
                              "too large for its grid")
