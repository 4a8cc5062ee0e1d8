"""Wrappers that turn DiT, FLUX, Open-Sora v1.2, Wan2.1 and any flow-matching network into the
velocity interface of DESIGN §2 (`wrapper(x, t, cond, kwargs)` on `wrapper.fm_steps`)."""

from .compile import maybe_compile
from .dit import DiTWrapper, RespacedDDPM
from .flux import FluxWrapper, flux_inputs, pack_latents
from .generic import FlowMatchWrapper
from .opensora import OpenSoraWrapper
from .wan import WanWrapper

__all__ = ["DiTWrapper", "RespacedDDPM", "FluxWrapper", "flux_inputs", "pack_latents", "FlowMatchWrapper",
           "OpenSoraWrapper", "WanWrapper", "maybe_compile"]
