"""Open-Sora v1.2 (STDiT3 + rectified flow) as a velocity.

STDiT3 is called as `model(x, timestep, y, mask=None, x_mask=None, fps=None, height=None,
width=None)` with timesteps in 0..1000 (1000 = noise), raw text embeddings y [B, 1, L, D], and
returns [B, 2C, T, H, W] (float32) whose first half of the channels is the prediction
x0 - noise: the velocity of DESIGN §2 is its negative. Guidance doubles the rows with the null
prompt (uncond + scale * (cond - uncond)); x_mask marks per row the frames that use the real
timestep (mask_t >= t), as the published wrapper sets it.

* `OpenSoraWrapper(model, guidance_scale, y_null, timesteps, num_timesteps, mask_t)` — the
  published wrapper's arguments (timesteps: the RFLOW list, descending, each a tensor or number).
* `OpenSoraWrapper.from_model(model, y_null, teacher_steps, height, width, num_frames)` — the grid
  RFLOW would use for teacher_steps steps with v1.2's timestep transform.

Open-Sora is not installable here: the tests use a small module with exactly STDiT3's call
signature and output layout.
"""

from __future__ import annotations

import math

import torch

from ..grid import time_shift
from .base import VelocityWrapper, check_latent_shape, guided, network_config, repeat_rows
from .compile import maybe_compile


def timestep_transform(t: float, height: int, width: int, num_frames: int, num_timesteps: int = 1000,
                       scale: float = 1.0) -> float:
    """Open-Sora v1.2's resolution- and length-dependent shift of a timestep in 0..num_timesteps."""
    t = t / num_timesteps
    ratio_space = math.sqrt(height * width / (512 * 512))
    frames = 1 if num_frames == 1 else num_frames // 17 * 5
    ratio = ratio_space * math.sqrt(frames) * scale
    return time_shift(t, ratio) * num_timesteps


def rflow_timesteps(teacher_steps: int, height: int, width: int, num_frames: int, num_timesteps: int = 1000,
                    use_timestep_transform: bool = True) -> list[float]:
    """RFLOW's descending timesteps (without 0) for teacher_steps steps."""
    ts = [(1.0 - i / teacher_steps) * num_timesteps for i in range(teacher_steps)]
    if use_timestep_transform:
        ts = [timestep_transform(t, height, width, num_frames, num_timesteps) for t in ts]
    return ts


class OpenSoraWrapper(VelocityWrapper):
    per_sample_kwargs = ("mask", "mask_t", "fps", "height", "width", "num_frames", "ar")

    def __init__(self, model, guidance_scale: float, y_null, timesteps, num_timesteps: float = 1000,
                 mask_t=None, *, compile: bool = False):
        self.model = maybe_compile(model, compile)
        self.guidance_scale = guidance_scale
        self.y_null = y_null
        first = [float(torch.as_tensor(t).reshape(-1)[0]) for t in timesteps]  # the list holds [B] tensors
        self.timesteps = torch.tensor([0.0] + first[::-1], dtype=torch.float64)
        self.fm_steps = self.timesteps / num_timesteps
        self.model_timesteps = self.timesteps
        self.mask_t = mask_t

    @classmethod
    def from_model(cls, model, y_null, teacher_steps: int, height: int, width: int, num_frames: int,
                   guidance_scale: float = 7.0, num_timesteps: int = 1000, mask_t=None, compile: bool = False):
        ts = rflow_timesteps(teacher_steps, height, width, num_frames, num_timesteps)
        return cls(model, guidance_scale, y_null, ts, num_timesteps, mask_t, compile=compile)

    def fingerprint_fields(self) -> dict:
        return dict(guidance_scale=self.guidance_scale, y_null=self.y_null, mask_t=self.mask_t)

    def check_latent(self, x) -> None:
        config = network_config(self.model)
        check_latent_shape(x, "STDiT3", "[B, C, T, H, W]", 5, config.get("in_channels"), patch=config.get("patch_size"))

    def __call__(self, x, t, y, kwargs):
        self.check_latent(x)
        R = x.shape[0]
        kwargs = dict(kwargs)
        t_in = self.timesteps.to(x.device)[t].to(torch.float32)
        mask_t = kwargs.pop("mask_t", self.mask_t)
        if mask_t is not None:
            mask_t = repeat_rows(torch.as_tensor(mask_t, device=x.device).reshape(-1, mask_t.shape[-1]), R)
            kwargs["x_mask"] = (mask_t >= t_in[:, None]).repeat(2, 1)
        y_in = torch.cat([y, repeat_rows(self.y_null, R).to(y.device, y.dtype)])
        pred = self.model(torch.cat([x, x]), torch.cat([t_in, t_in]), y_in, **kwargs).chunk(2, dim=1)[0]
        cond, uncond = pred.chunk(2, dim=0)
        return -guided(cond, uncond, self.guidance_scale)
