"""ComfyUI custom node: an OSS schedule -- a published preset or a schedule file -- as SIGMAS.

Install, in the Python ComfyUI runs with: `pip install oss-fast`, then one file in ComfyUI's
custom_nodes folder, e.g. custom_nodes/oss_fast_nodes.py, holding the line

    from oss_fast.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

The node "OSS schedule" outputs descending flow sigmas ending at 0 for SamplerCustom /
SamplerCustomAdvanced. Sample them with the sampler of the schedule's solver (docs/models.md):
`euler` for euler schedules (every preset), SamplerLMS at order 2 for ab2.

* steps: presets resample by the published node's rule (oss_fast.presets.get), schedule files by
  Schedule.interpolate (log-linear in the nonzero sigmas); both keep a final 0.
* denoise < 1: Schedule.for_denoise, the last round(steps * denoise) steps and the final 0, as the
  published node does; a denoise that keeps no step gives no sigmas, as ComfyUI's schedulers do.
* shift: 0 keeps the searched flow times -- what carries a schedule to another grid (README,
  Transfer). A value > 0 re-shifts the steps through un-shifted time from the shift the schedule
  records (Schedule.reshift): a deliberate move of the steps, measured worse there.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .. import presets
from ..grid import MAX_STEPS
from ..schedule import Schedule, denoised_steps

FILE = "file"


class OSSSchedule:
    """ComfyUI reads INPUT_TYPES, RETURN_TYPES, FUNCTION and CATEGORY, and calls FUNCTION with the
    inputs as keyword arguments; an exception is shown to the user as its message."""

    RETURN_TYPES = ("SIGMAS",)
    RETURN_NAMES = ("sigmas",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"
    DESCRIPTION = "Optimal Stepsize (OSS) schedule: a published preset or an oss_fast schedule file, as SIGMAS."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "schedule": (presets.names() + [FILE], {
                    "default": "flux", "tooltip": "a published preset, or 'file' for an oss_fast schedule JSON"}),
                "steps": ("INT", {"default": 10, "min": 1, "max": MAX_STEPS}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                "shift": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 100.0, "step": 0.01, "tooltip":
                                    "0: the searched flow times (recommended); > 0: re-shift the steps to this shift"}),
            },
            "optional": {
                "file": ("STRING", {"default": "", "tooltip": "path of a schedule JSON (oss-fast search writes one)"}),
            },
        }

    def get_sigmas(self, schedule: str, steps: int, denoise: float = 1.0, shift: float = 0.0, file: str = ""):
        kept = denoised_steps(steps, denoise, "denoise")
        if not _real(shift) or not 0.0 <= shift < math.inf:
            raise ValueError(f"shift must be a number: 0 (as searched) or > 0, got {shift!r}")
        if schedule == FILE:
            if not file:
                raise ValueError("schedule 'file' needs the path of a schedule JSON in the file input")
            chosen = Schedule.load(file)
            chosen = chosen.interpolate(steps) if chosen.parameterization == "flow" else chosen
        else:
            chosen = presets.get(schedule, steps)
        if chosen.parameterization != "flow":
            raise ValueError(f"{_name(schedule, file)} is a DDPM-family (DiT) schedule: ComfyUI's flow SIGMAS need a "
                             "flow-matching model's schedule (FLUX, SD3, Wan, ...)")
        if shift > 0:
            if chosen.shift is None:
                raise ValueError(f"{_name(schedule, file)} records no shift to re-shift from; leave shift at 0")
            chosen = chosen.reshift(shift)
        if kept == 0:  # ComfyUI's samplers return the latent as it is on no sigmas
            return (torch.zeros(0),)
        return (chosen.for_denoise(denoise).to_sigmas(),)


def _real(value) -> bool:
    """Whether an input is a real number (ComfyUI passes floats; a string or bool is a wiring mistake)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _name(schedule: str, file: str) -> str:
    return file if schedule == FILE else f"preset {schedule!r}"


NODE_CLASS_MAPPINGS = {"OSSSchedule": OSSSchedule}
NODE_DISPLAY_NAME_MAPPINGS = {"OSSSchedule": "OSS schedule"}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "OSSSchedule"]
