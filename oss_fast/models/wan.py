"""Wan2.1 text-to-video as a velocity on its shifted grid, with guidance by the null context.

The network predicts the flow velocity (noise - data) from raw timesteps in 0..1000.
* `WanWrapper(model, timesteps, num_timesteps, context_null, guide_scale)` — the published
  wrapper's arguments: the native `WanModel` (list-of-tensors API: x, t, context, seq_len) and the
  scheduler's descending timesteps without the final 0.
* `WanWrapper.from_diffusers(transformer, teacher_steps, context_null, guide_scale, shift)` — a
  diffusers WanTransformer3DModel on the shifted grid sigma' = a sigma / (1 + (a - 1) sigma) of
  linspace(1, 0, N + 1).

Unlike the published wrapper, which keeps only the first sample's output, every row is returned,
and the conditional and null passes share one call (the rows doubled). For the native API,
`cond` is the search's per-sample context (a list of [L, D] tensors, or a [B, L, D] tensor), and
compile=True compiles WanModel's repeated `blocks` (regional compilation).
"""

from __future__ import annotations

import inspect

import torch

from ..grid import grid_from_descending, time_shift
from .base import VelocityWrapper, check_latent_shape, guided, half_dtype, into, network_config, repeat_rows
from .compile import maybe_compile, maybe_compile_blocks


def wan_sigmas(teacher_steps: int, shift: float = 5.0) -> torch.Tensor:
    """The descending shifted sigmas (without the final 0) of Wan's flow schedulers."""
    return time_shift(torch.linspace(1.0, 0.0, teacher_steps + 1, dtype=torch.float64)[:-1], shift)


def _is_diffusers(model) -> bool:
    forward = getattr(model, "forward", model)
    try:
        return "hidden_states" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


class WanWrapper(VelocityWrapper):
    def __init__(self, model, timesteps, num_timesteps: float = 1000, context_null=None, guide_scale: float = 5.0,
                 *, compile: bool = False):
        self.diffusers_api = _is_diffusers(model)
        self.half = half_dtype(model)
        # the native API takes lists: compile its repeated blocks rather than the whole forward
        self.model = maybe_compile(model, compile) if self.diffusers_api else maybe_compile_blocks(model, compile)
        self.time_steps, self.fm_steps = grid_from_descending(timesteps, num_timesteps)
        self.model_timesteps = self.time_steps  # the network's timestep at each grid index
        self.context_null = context_null
        self.guide_scale = guide_scale

    @classmethod
    def from_diffusers(cls, transformer, teacher_steps: int, context_null=None, guide_scale: float = 5.0,
                       shift: float = 5.0, num_timesteps: int = 1000, compile: bool = False):
        return cls(transformer, wan_sigmas(teacher_steps, shift) * num_timesteps, num_timesteps, context_null,
                   guide_scale, compile=compile)

    def _run(self, x, timestep, context, kwargs):
        """The network on rows x; a half-precision network gets x and the context in its dtype, and
        its output comes back in x's dtype."""
        context = [into(c, self.half) for c in context] if isinstance(context, list) else into(context, self.half)
        if self.diffusers_api:
            out = self.model(hidden_states=into(x, self.half), timestep=timestep, encoder_hidden_states=context,
                             return_dict=False, **kwargs)[0]
        else:
            out = torch.stack(list(self.model(into(x, self.half), t=timestep, context=context, **kwargs)))
        return out.to(x.dtype)

    def fingerprint_fields(self) -> dict:
        return dict(context_null=self.context_null, guide_scale=self.guide_scale, half=self.half,
                    diffusers_api=self.diffusers_api)

    def check_latent(self, x) -> None:
        config = network_config(self.model)
        channels = config.get("in_channels", config.get("in_dim"))
        check_latent_shape(x, "the Wan network", "[B, C, F, H, W]", 5, channels, patch=config.get("patch_size"))

    def __call__(self, x, t, cond, kwargs):
        self.check_latent(x)
        R = x.shape[0]
        timestep = self.time_steps.to(x.device)[t]
        if self.context_null is None or self.guide_scale == 1.0:
            return self._run(x, timestep, cond, kwargs)
        null = repeat_rows(self.context_null, R)
        if isinstance(cond, torch.Tensor):
            context = torch.cat([cond, null.to(cond.device, cond.dtype)])
        else:
            context = list(cond) + list(null)
        out = self._run(torch.cat([x, x]), torch.cat([timestep, timestep]), context, kwargs)
        cond_pred, uncond_pred = out.chunk(2)
        return guided(cond_pred, uncond_pred, self.guide_scale)
