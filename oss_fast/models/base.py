"""What every wrapper shares: the velocity interface of DESIGN §2 and the guidance helpers."""

from __future__ import annotations

import torch


class VelocityWrapper:
    """A model seen as `wrapper(x, t, cond, kwargs) -> v` on the grid `fm_steps`.

    t holds grid indices, one per row; rows of one call may belong to different samples and grid
    indices. per_sample_kwargs names the kwargs whose first dimension follows the samples (the
    search gathers them per row); cond always does.
    """

    fm_steps: torch.Tensor
    per_sample_kwargs: tuple = ()

    def __call__(self, x, t, cond, kwargs):
        raise NotImplementedError


def repeat_rows(value, rows: int):
    """A shared input (first dimension 1, or a list of one) repeated for `rows` rows."""
    if isinstance(value, (list, tuple)):
        return list(value) * rows if len(value) == 1 else list(value)
    if value.shape[0] == rows:
        return value
    return value[:1].expand(rows, *value.shape[1:])


HALF_DTYPES = (torch.float16, torch.bfloat16)


def half_dtype(model) -> torch.dtype | None:
    """float16/bfloat16 when the network computes in it (a module, a diffusers model, or a bound
    forward of one), else None. Wrappers cast inputs into a half network and its outputs back out,
    so a network loaded the way diffusers' examples load it (torch_dtype=torch.bfloat16) just runs."""
    dtype = getattr(model, "dtype", None)
    if not isinstance(dtype, torch.dtype):
        owner = getattr(model, "__self__", model)
        params = getattr(owner, "parameters", None)
        dtype = next((p.dtype for p in params() if p.is_floating_point()), None) if callable(params) else None
    return dtype if dtype in HALF_DTYPES else None


def into(value, dtype):
    """A floating tensor cast to dtype (None: unchanged); anything else unchanged."""
    if dtype is None or not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return value
    return value.to(dtype)


def guided(cond_pred: torch.Tensor, uncond_pred: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale * (cond - uncond)."""
    return uncond_pred + scale * (cond_pred - uncond_pred)

