"""ComfyUI: OSS schedules -- published presets and schedule files -- as the "OSS schedule" node's
SIGMAS and as schedulers in ComfyUI's scheduler list (KSampler, BasicScheduler).

Install, into the Python ComfyUI runs with, from a clone or a wheel built from one (oss_fast is on no
package index): `pip install /path/to/oss_fast` or `pip install dist/oss_fast-*.whl`. Then copy or
symlink the folder oss_fast/integrations/oss_fast_nodes into ComfyUI/custom_nodes: ComfyUI imports
it, reads its NODE_CLASS_MAPPINGS, and importing it registers the schedulers (register_schedulers).

The node "OSS schedule" outputs descending flow sigmas ending at 0 for SamplerCustom /
SamplerCustomAdvanced. Sample them with the sampler of the schedule's solver (docs/models.md):
`euler` for euler schedules (every preset), SamplerLMS at order 2 for ab2.

* steps: presets resample by the published node's rule (oss_fast.presets.get), schedule files by
  Schedule.interpolate (log-linear in the nonzero sigmas); both keep a final 0.
* denoise < 1: Schedule.for_denoise, the last round(steps * denoise) steps and the final 0, as the
  published node does; a denoise that keeps no step gives no sigmas, as ComfyUI's schedulers do.
* shift: 0 keeps the searched flow times -- what carries a schedule to another grid (docs/schedules.md,
  Other shifts and resolutions). A value > 0 re-shifts the steps through un-shifted time from the shift the schedule
  records (Schedule.reshift): a deliberate move of the steps, measured worse there.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
import os
from pathlib import Path

import numpy as np
import torch

from .. import presets
from ..grid import MAX_STEPS
from ..schedule import Schedule, check_steps, denoised_steps

FILE = "file"
SCHEDULES_ENV = "OSS_FAST_SCHEDULES"  # the folder of schedule files offered as schedulers
SCHEDULES_SUBFOLDER = "oss_schedules"  # in ComfyUI's models folder, where SCHEDULES_ENV is unset


def flow_schedule(schedule: str, steps: int, file: str = "") -> Schedule:
    """A preset (`schedule` its name) or a schedule file (`schedule` "file", `file` its path) at
    `steps` steps, as a flow-matching schedule: ComfyUI's flow models take flow times as sigmas.
    ValueError for a DDPM-family (DiT) schedule."""
    steps = check_steps(steps)
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
    return chosen


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
        chosen = flow_schedule(schedule, steps, file)
        if shift > 0:
            if chosen.shift is None:
                raise ValueError(f"{_name(schedule, file)} records no shift to re-shift from; leave shift at 0")
            chosen = chosen.reshift(shift)
        if kept == 0:  # ComfyUI's samplers return the latent as it is on no sigmas
            return (torch.zeros(0),)
        return (chosen.for_denoise(denoise).to_sigmas(),)


def schedules_folder() -> Path | None:
    """Where register_schedulers finds schedule files: $OSS_FAST_SCHEDULES, else the folder
    oss_schedules in ComfyUI's models folder; None outside ComfyUI with the variable unset."""
    if os.environ.get(SCHEDULES_ENV):
        return Path(os.environ[SCHEDULES_ENV])
    try:
        import folder_paths  # ComfyUI's own module, which knows its models folder
    except ImportError:
        return None
    return Path(folder_paths.models_dir) / SCHEDULES_SUBFOLDER


def register_schedulers(folder=None) -> list[str]:
    """Adds OSS schedules to ComfyUI's scheduler list (the "scheduler" input of KSampler and
    BasicScheduler): `oss_<preset>` for each preset and `oss_file_<name>` for each <name>.json in
    `folder` (default schedules_folder()), read when sampled. ComfyUI calls a scheduler as
    handler(model_sampling, steps); these return the schedule's flow times at `steps` as sigmas, and
    refuse a model that does not sample in flow time. Returns the names registered: none where ComfyUI
    is not importable or predates SCHEDULER_HANDLERS (v0.3.11). Registering again replaces the
    handlers and adds no name twice."""
    try:
        from comfy import model_sampling, samplers
    except ImportError:
        return []
    if not hasattr(samplers, "SCHEDULER_HANDLERS") or not hasattr(samplers, "SchedulerHandler"):
        logging.getLogger(__name__).warning(
            "oss_fast: this ComfyUI has no SCHEDULER_HANDLERS (added in v0.3.11): OSS schedules are only in the "
            "'OSS schedule' node")
        return []
    sources = {f"oss_{name}": (name, "") for name in presets.names()}
    folder = schedules_folder() if folder is None else Path(folder)
    if folder is not None and folder.is_dir():
        sources.update({f"oss_file_{path.stem}": (FILE, str(path))
                        for path in sorted(folder.glob("*.json")) if path.is_file()})
    for name, (schedule, file) in sources.items():
        handler = functools.partial(_scheduler_sigmas, name, schedule, file, model_sampling.CONST)
        samplers.SCHEDULER_HANDLERS[name] = samplers.SchedulerHandler(handler, use_ms=True)
        # the same list unless a custom node rebound comfy.samplers.SCHEDULER_NAMES to a new one
        for names in (samplers.SCHEDULER_NAMES, samplers.KSampler.SCHEDULERS):
            if name not in names:
                names.append(name)
    return list(sources)


def _scheduler_sigmas(name: str, schedule: str, file: str, flow_sampling: type, model_sampling, steps: int):
    """A registered scheduler: ComfyUI's flow models (model_sampling a CONST: x = s noise + (1 - s) x0)
    take flow times as sigmas, as they are; other models' sigmas are not flow times, and an OSS
    schedule searched for a flow model has no meaning for them."""
    if not isinstance(model_sampling, flow_sampling):
        raise ValueError(f"scheduler {name!r} is a flow-matching schedule (FLUX, SD3, Wan, ...): this model does not "
                         "sample in flow time (its model_sampling is not CONST); pick another scheduler")
    return flow_schedule(schedule, steps, file).to_sigmas()


def _real(value) -> bool:
    """Whether an input is a real number (ComfyUI passes floats; a string or bool is a wiring mistake)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _name(schedule: str, file: str) -> str:
    return file if schedule == FILE else f"preset {schedule!r}"


NODE_CLASS_MAPPINGS = {"OSSSchedule": OSSSchedule}
NODE_DISPLAY_NAME_MAPPINGS = {"OSSSchedule": "OSS schedule"}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "OSSSchedule", "flow_schedule", "register_schedulers",
           "schedules_folder"]
