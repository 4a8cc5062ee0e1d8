"""DiT (class-conditional, epsilon-prediction DDPM) as a flow-matching velocity.

The respaced discrete schedule is mapped to flow time by SNR alignment: at spaced step n with
alpha = sqrt(alphas_cumprod[n]) and sigma = sqrt(1 - alpha^2), the flow time is
s = sigma / (alpha + sigma), where x_t = alpha x0 + sigma eps equals (alpha + sigma) x_s. The network
sees x_t, predicts eps, x0 follows, and the velocity is v = (x_s - x0) / s (= eps - x0).

Two ways in:
* `DiTWrapper(model, diffusion, device, class_emb_null)` — the published wrapper's arguments: a
  model callable (DiT's forward or forward_with_cfg), a diffusion object exposing
  sqrt_alphas_cumprod, use_timesteps, num_timesteps and _predict_xstart_from_eps (DiT's
  SpacedDiffusion, or `RespacedDDPM` here), the device and the null labels. Same values as the
  published wrapper, including its input scaling x * alpha / (1 - s + 1e-4) and the plain x at N.
* `DiTWrapper.from_diffusers(transformer, scheduler, teacher_steps, guidance_scale)` — a diffusers
  DiTTransformer2DModel and any scheduler with alphas_cumprod (DDPM/DDIM/DPM-Solver config), with
  exact scaling and the DiTPipeline's guidance (all latent channels, null class 1000).
"""

from __future__ import annotations

import numpy as np
import torch

from .base import (VelocityWrapper, check_latent_shape, guided, half_dtype, into, network_config, network_fingerprint,
                   repeat_rows)
from .compile import maybe_compile


def space_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """DiT's respacing for section_counts = str(steps): evenly spaced, rounded, one section."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"cannot take {steps} steps from {num_timesteps}")
    stride = (num_timesteps - 1) / (steps - 1) if steps > 1 else 1
    return sorted({round(i * stride) for i in range(steps)})


class RespacedDDPM:
    """The parts of DiT's SpacedDiffusion a wrapper needs, built from any alphas_cumprod.

    Respacing keeps alphas_cumprod at the chosen timesteps, so spaced step n is original
    timestep timestep_map[n]: DiT's even spacing, or the given `timesteps` (e.g. a diffusers
    scheduler's own choice for `steps` steps).
    """

    def __init__(self, alphas_cumprod, steps: int, timesteps=None):
        acp = np.asarray(torch.as_tensor(alphas_cumprod, dtype=torch.float64).cpu())
        chosen = space_timesteps(len(acp), steps) if timesteps is None else sorted({int(t) for t in timesteps})
        if timesteps is not None and (len(chosen) != steps or not 0 <= chosen[0] <= chosen[-1] < len(acp)):
            raise ValueError(f"{steps} steps need {steps} distinct timesteps in [0, {len(acp) - 1}], got {timesteps}")
        self.use_timesteps = set(chosen)
        self.timestep_map = sorted(self.use_timesteps)
        self.num_timesteps = steps
        self.alphas_cumprod = acp[self.timestep_map]
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)

    def _predict_xstart_from_eps(self, x_t, t, eps):
        view = (-1,) + (1,) * (x_t.dim() - 1)
        a = torch.as_tensor(self.sqrt_recip_alphas_cumprod, device=x_t.device)[t].reshape(view)
        b = torch.as_tensor(self.sqrt_recipm1_alphas_cumprod, device=x_t.device)[t].reshape(view)
        return (a * x_t.double() - b * eps.double()).to(x_t.dtype)


class DiTWrapper(VelocityWrapper):
    def __init__(self, model, diffusion, device=None, class_emb_null=None, *, compile: bool = False,
                 input_eps: float = 1e-4):
        self.half = half_dtype(model)
        self.model = maybe_compile(model, compile)
        self.diffusion = diffusion
        self.num_steps = int(diffusion.num_timesteps)
        self.timestep_map = torch.tensor(sorted(diffusion.use_timesteps)[: self.num_steps], device=device)
        alpha = torch.as_tensor(np.asarray(diffusion.sqrt_alphas_cumprod[: self.num_steps]), dtype=torch.float64)
        sigma = torch.sqrt(1 - alpha**2)
        self.sqrt_alphas = alpha.to(device)
        self.fm_steps = torch.cat([torch.zeros(1, dtype=torch.float64), sigma / (alpha + sigma)]).to(device)
        self.y_null = class_emb_null
        self.input_eps = input_eps
        # for Schedule: the network's timestep at each grid index, and how sigmas map to schedulers'
        self.model_timesteps = torch.cat([torch.zeros(1, dtype=torch.long), self.timestep_map.cpu()])
        self.parameterization = "ddpm"

    @classmethod
    def from_diffusers(cls, transformer, scheduler, teacher_steps: int, guidance_scale: float = 4.0,
                       null_class: int = 1000, device=None, compile: bool = False, timesteps=None):
        """A diffusers DiTTransformer2DModel with the DiTPipeline's guidance and exact scaling, on
        DiT's evenly respaced teacher_steps timesteps (or the given ones)."""
        alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
        if alphas_cumprod is None:
            raise ValueError("the scheduler has no alphas_cumprod (use a DDPM, DDIM or DPM-Solver scheduler)")
        net = _DiffusersDiT(maybe_compile(transformer, compile), guidance_scale)
        device = device if device is not None else getattr(transformer, "device", None)
        null = torch.tensor([null_class], device=device)
        return cls(net, RespacedDDPM(alphas_cumprod, teacher_steps, timesteps), device, null, input_eps=0.0)

    def fingerprint_fields(self) -> dict:
        return dict(y_null=self.y_null, input_eps=self.input_eps, half=self.half, steps=self.num_steps,
                    timestep_map=self.timestep_map)

    def check_latent(self, x) -> None:
        net = getattr(self.model, "transformer", self.model)  # _DiffusersDiT: its transformer
        config = network_config(net)
        patch = config.get("patch_size")
        if patch is None:  # DiT's own module: x_embedder.patch_size
            owner = getattr(getattr(net, "eager", net), "__self__", net)
            patch = getattr(getattr(owner, "x_embedder", None), "patch_size", None)
        check_latent_shape(x, "the DiT network", "[B, C, H, W]", 4, config.get("in_channels"), patch=patch)

    def __call__(self, x, t, y, kwargs):
        self.check_latent(x)
        N = self.num_steps
        R, C = x.shape[0], x.shape[1]
        view = (R,) + (1,) * (x.dim() - 1)
        s = self.fm_steps[t]
        # the network runs in float32 (as published), or float64 for float64 latents
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        scale = self.sqrt_alphas[t - 1] / (1 + self.input_eps - s)
        x_t = (scale.reshape(view) * x.double()).to(work)
        if self.input_eps:  # the published wrapper feeds x itself at the noise end
            x_t = torch.where((t == N).reshape(view), x.to(work), x_t)
        timestep = self.timestep_map[t - 1]
        x_in = into(x_t, self.half)  # a half-precision network sees its own dtype
        if self.y_null is None:
            out = self.model(x_in, timestep, y, **kwargs)
        else:
            y_in = torch.cat([y, repeat_rows(self.y_null, R).to(y.device)])
            out = self.model(torch.cat([x_in, x_in]), torch.cat([timestep, timestep]), y_in, **kwargs)[:R]
        eps = out[:, :C].to(work)  # learned-variance channels dropped
        x0 = self.diffusion._predict_xstart_from_eps(x_t=x_t, t=t - 1, eps=eps)
        return ((x.double() - x0.double()) / s.reshape(view)).to(x_t.dtype)


class _DiffusersDiT:
    """DiTTransformer2DModel called like DiT's forward_with_cfg: rows [cond; null] in, the guided
    epsilon (on all latent channels, as DiTPipeline does) out for both halves."""

    def __init__(self, transformer, guidance_scale: float):
        self.transformer = transformer
        self.guidance_scale = guidance_scale

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    @property
    def fingerprint(self) -> dict:
        return dict(transformer=network_fingerprint(self.transformer), guidance_scale=self.guidance_scale)

    def __call__(self, x, t, y, **kwargs):
        out = self.transformer(x, timestep=t, class_labels=y, return_dict=False, **kwargs)[0]
        C = x.shape[1]
        if out.shape[0] % 2 or self.guidance_scale == 1.0:
            return out
        cond, uncond = out[:, :C].chunk(2)
        eps = guided(cond, uncond, self.guidance_scale)
        return torch.cat([eps, eps])
