"""FLUX (flow matching on packed latents) as a velocity on the pipeline's shifted sigma grid.

* `FluxWrapper(model, timesteps, num_timesteps)` — the published wrapper's arguments: the
  transformer and the scheduler's descending timesteps (sigma * 1000, without the final 0).
* `FluxWrapper.from_pipeline(pipe, teacher_steps, height, width)` — the grid a FluxPipeline would
  use for teacher_steps steps: sigmas linspace(1, 1/N, N) shifted by the scheduler with the dynamic
  mu of the image sequence length (grid.calculate_shift), then 0. With dynamic shifting it records
  the image size and the shift rule, so a Schedule from it can follow the pipeline to another size.

The transformer gets `timestep = sigma` (it multiplies by 1000 itself) and, through the search's
model_kwargs, the packed-latent inputs; `flux_inputs` builds them. Its output is the flow velocity
(noise - data), which is what the search integrates.
"""

from __future__ import annotations

import numpy as np
import torch

from ..grid import dynamic_shift_rule, grid_from_descending, image_seq_len, scheduler_mu
from .base import VelocityWrapper, check_latent_shape, half_dtype, into, network_config
from .compile import maybe_compile


def flux_timesteps(scheduler, teacher_steps: int, seq_len: int) -> torch.Tensor:
    """The descending timesteps a FluxPipeline would sample with for teacher_steps steps."""
    mu = scheduler_mu(scheduler.config, seq_len)
    sigmas = np.linspace(1.0, 1 / teacher_steps, teacher_steps)
    scheduler.set_timesteps(sigmas=sigmas, mu=mu, device="cpu")
    return scheduler.timesteps.clone()


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/2)(W/2), 4C], FLUX's 2x2 patch packing."""
    B, C, H, W = latents.shape
    x = latents.view(B, C, H // 2, 2, W // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // 2) * (W // 2), C * 4)


def latent_image_ids(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Position ids [(H/2)(W/2), 3] of packed latents with H, W the latent (not pixel) size."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] += torch.arange(height // 2)[:, None]
    ids[..., 2] += torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def flux_inputs(prompt_embeds, pooled_prompt_embeds, latent_height: int, latent_width: int,
                guidance_scale: float | None = 3.5) -> dict:
    """model_kwargs for a search: per-sample embeddings and guidance, shared position ids."""
    B = prompt_embeds.shape[0]
    device, dtype = prompt_embeds.device, prompt_embeds.dtype
    kwargs = dict(encoder_hidden_states=prompt_embeds, pooled_projections=pooled_prompt_embeds,
                  txt_ids=torch.zeros(prompt_embeds.shape[1], 3, device=device, dtype=dtype),
                  img_ids=latent_image_ids(latent_height, latent_width, device, dtype),
                  joint_attention_kwargs=None, return_dict=False)
    if guidance_scale is not None:
        kwargs["guidance"] = torch.full((B,), guidance_scale, device=device, dtype=torch.float32)
    return kwargs


class FluxWrapper(VelocityWrapper):
    per_sample_kwargs = ("encoder_hidden_states", "pooled_projections", "guidance")

    def __init__(self, model, timesteps, num_timesteps: float = 1000, *, compile: bool = False):
        self.half = half_dtype(model)
        self.model = maybe_compile(model, compile)
        self.time_steps, self.fm_steps = grid_from_descending(timesteps, num_timesteps)
        self.model_timesteps = self.time_steps  # the network's timestep at each grid index
        self.num_timesteps = num_timesteps

    @classmethod
    def from_pipeline(cls, pipe, teacher_steps: int, height: int | None = None, width: int | None = None,
                      compile: bool = False):
        """The transformer and scheduler of a FluxPipeline (or anything with .transformer,
        .scheduler and .vae_scale_factor); height/width in pixels (default: the pipeline's)."""
        factor = getattr(pipe, "vae_scale_factor", 8)
        height = height or getattr(pipe, "default_sample_size", 128) * factor
        width = width or getattr(pipe, "default_sample_size", 128) * factor
        timesteps = flux_timesteps(pipe.scheduler, teacher_steps, image_seq_len(height, width, factor))
        wrapper = cls(pipe.transformer, timesteps, pipe.scheduler.config.num_train_timesteps, compile=compile)
        if pipe.scheduler.config.get("use_dynamic_shifting"):  # the grid moves with the image size: record both
            wrapper.image_size = [height, width]
            wrapper.dynamic_shift = dynamic_shift_rule(pipe.scheduler.config, factor)
        return wrapper

    def fingerprint_fields(self) -> dict:
        return dict(num_timesteps=self.num_timesteps, half=self.half, image_size=getattr(self, "image_size", None),
                    dynamic_shift=getattr(self, "dynamic_shift", None))

    def check_latent(self, x) -> None:
        channels = network_config(self.model).get("in_channels")
        unpacked = f" (pack_latents makes them from [B, {channels // 4}, H, W])" if isinstance(channels, int) else ""
        check_latent_shape(x, "the FLUX transformer", "packed [B, tokens, C]", 3, channels, channel_dim=2,
                           fix=f": pass packed latents{unpacked}")

    def __call__(self, x, t, cond, kwargs):
        self.check_latent(x)
        ids = kwargs.get("img_ids")
        if isinstance(ids, torch.Tensor) and ids.dim() >= 2 and ids.shape[-2] != x.shape[1]:
            raise ValueError(f"model_kwargs['img_ids'] holds {ids.shape[-2]} positions for latents of {x.shape[1]} "
                             "tokens: build them with flux_inputs at the latent's height and width")
        dtype = self.half or x.dtype
        timestep = self.time_steps.to(x.device)[t].to(dtype) / self.num_timesteps
        kwargs = {k: into(v, self.half) if k in ("encoder_hidden_states", "pooled_projections") else v
                  for k, v in kwargs.items()}
        out = self.model(hidden_states=into(x, self.half), timestep=timestep, **kwargs)
        return (out[0] if isinstance(out, (tuple, list)) else out.sample).to(x.dtype)
