"""Any flow-matching network (SD3, HunyuanVideo, ...) from a callable and its sigma grid."""

from __future__ import annotations

import torch

from .base import VelocityWrapper, guided, repeat_rows
from .compile import maybe_compile


class FlowMatchWrapper(VelocityWrapper):
    """fn(x, timestep, cond, **kwargs) -> prediction, on the grid of `sigmas` (any order; 0 is added).

    timestep = sigma * timestep_scale (1000 for most diffusers transformers; 1 for networks that
    take sigma itself). prediction: "velocity" (noise - data, the flow-matching convention) or
    "negative_velocity" (data - noise, e.g. Open-Sora). With guidance_scale and null_cond the rows
    are doubled with the null conditioning and combined as uncond + scale * (cond - uncond); in the
    doubled call, a kwarg named in null_kwargs gets its null value in the second half, and any
    other kwarg with one entry per row is repeated.
    """

    def __init__(self, fn, sigmas, *, timestep_scale: float = 1000.0, prediction: str = "velocity",
                 guidance_scale: float | None = None, null_cond=None, null_kwargs=None, per_sample_kwargs=(),
                 compile: bool = False):
        if prediction not in ("velocity", "negative_velocity"):
            raise ValueError(f"prediction must be 'velocity' or 'negative_velocity', got {prediction!r}")
        if (guidance_scale is None) != (null_cond is None):
            raise ValueError("guidance needs both guidance_scale and null_cond")
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
        grid = torch.unique(torch.cat([sigmas, sigmas.new_zeros(1)]))  # sorted ascending, 0 first
        if grid.numel() != sigmas.numel() + (0 if (sigmas == 0).any() else 1):
            raise ValueError("sigmas must be distinct")
        self.fn = maybe_compile(fn, compile)
        self.fm_steps = grid
        self.timestep_scale = timestep_scale
        self.sign = 1.0 if prediction == "velocity" else -1.0
        self.guidance_scale = guidance_scale
        self.null_cond = null_cond
        self.null_kwargs = dict(null_kwargs or {})
        self.per_sample_kwargs = tuple(per_sample_kwargs)

    @property
    def network(self):
        return self.fn

    def fingerprint_fields(self) -> dict:
        return dict(timestep_scale=self.timestep_scale, sign=self.sign, guidance_scale=self.guidance_scale,
                    null_cond=self.null_cond, null_kwargs=self.null_kwargs)

    def __call__(self, x, t, cond, kwargs):
        timestep = (self.fm_steps.to(x.device)[t] * self.timestep_scale).to(x.dtype)
        if self.guidance_scale is None:
            return self.sign * self.fn(x, timestep, cond, **kwargs)
        R = x.shape[0]
        null = repeat_rows(self.null_cond, R)
        cond_in = torch.cat([cond, null.to(cond.device, cond.dtype)]) if cond is not None else None
        doubled = {}
        for name, value in kwargs.items():
            if name in self.null_kwargs:
                doubled[name] = torch.cat([value, repeat_rows(self.null_kwargs[name], R).to(value.device, value.dtype)])
            elif isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == R:
                doubled[name] = torch.cat([value, value])
            else:
                doubled[name] = value
        out = self.fn(torch.cat([x, x]), torch.cat([timestep, timestep]), cond_in, **doubled)
        cond_pred, uncond_pred = out.chunk(2)
        return self.sign * guided(cond_pred, uncond_pred, self.guidance_scale)
