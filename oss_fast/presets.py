"""Published OSS step schedules as named `Schedule` values, with where each comes from.

The OSS authors published ready-made schedules only through ComfyUI's OptimalStepsScheduler node
(ComfyUI pull request #7584, April 2025: FLUX and Wan); a Chroma list was added to the same node
later by ComfyUI. The paper's own repository (bebebe666/OptimalSteps) has no fixed schedules: its
DiT, FLUX, Open-Sora and Wan scripts search one at run time, so there is no DiT or Open-Sora preset.

Each preset is a list of flow times (sigmas in [0, 1], descending) for K Euler steps of one model
at the shift and resolution it was searched at; the node's list ends at 0.001 (a stand-in for 0,
kept positive for its log-space interpolation) and the node replaces that last value by 0, as
`get` does. `get(name, steps)` resamples a preset to another step count by the node's own rule
(log-linear over the K + 1 published values, the 0.001 stand-in included, then the last set to 0), so
the SIGMAS equal the node's; a schedule of yours moves with `Schedule.interpolate` instead (its last
sigma is a true 0). Wan's preset records shift 8, so `for_shift` can carry it to another grid.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np

from .schedule import Schedule, check_steps

# the ComfyUI node file, at the stored commit its numbers were read from
_COMFY_NODE = "comfyanonymous/ComfyUI/comfy_extras/nodes_optimalsteps.py@36d3468fce685fd8f4548347067097282216d4a5"


@dataclasses.dataclass(frozen=True)
class Preset:
    """One published schedule: `published` is the list exactly as the source prints it (K + 1 values,
    the last a stand-in for 0)."""

    name: str
    model: str
    published: tuple[float, ...]
    source: str
    shift: float | None
    note: str

    @property
    def steps(self) -> int:
        return len(self.published) - 1


_PRESETS = [
    Preset("flux", "FLUX.1-dev", (
        0.9968, 0.9886, 0.9819, 0.975, 0.966, 0.9471, 0.9158, 0.8287, 0.5512, 0.2808, 0.001),
        _COMFY_NODE, None,
        "OSS authors' 10-step Euler schedule for FLUX.1-dev (ComfyUI PR #7584); searched on flux1-dev, "
        "resolution and dynamic shift not stated"),
    Preset("wan", "Wan2.1 T2V", (
        1.0, 0.997, 0.995, 0.993, 0.991, 0.989, 0.987, 0.985, 0.98, 0.975, 0.973, 0.968, 0.96, 0.946,
        0.927, 0.902, 0.864, 0.776, 0.539, 0.208, 0.001),
        _COMFY_NODE, 8.0,
        "OSS authors' 20-step Euler schedule for Wan2.1 text-to-video (ComfyUI PR #7584); the authors "
        "state it assumes shift 8.0 (kijai/ComfyUI-WanVideoWrapper#349)"),
    Preset("chroma", "Chroma", (
        0.992, 0.99, 0.988, 0.985, 0.982, 0.978, 0.973, 0.968, 0.961, 0.953, 0.943, 0.931, 0.917, 0.9,
        0.881, 0.858, 0.832, 0.802, 0.769, 0.731, 0.69, 0.646, 0.599, 0.55, 0.501, 0.451, 0.402, 0.355,
        0.311, 0.27, 0.232, 0.199, 0.169, 0.143, 0.12, 0.101, 0.084, 0.07, 0.058, 0.048, 0.001),
        _COMFY_NODE, None,
        "40-step Euler schedule for Chroma, added to the node by ComfyUI after PR #7584; how it was "
        "obtained is not stated"),
]

PRESETS = types.MappingProxyType({p.name: p for p in sorted(_PRESETS, key=lambda p: p.name)})


def names() -> list[str]:
    return list(PRESETS)


def _record(name) -> Preset:
    key = name.lower() if isinstance(name, str) else None
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[key]


def get(name: str, steps: int | None = None) -> Schedule:
    """The preset as a new Schedule (flow sigmas, Euler), the source's final stand-in set to 0; at
    `steps` steps by the node's resampling rule (see the module doc) when given."""
    p = _record(name)
    metadata = dict(preset=p.name, model=p.model, source=p.source, steps=p.steps, shift=p.shift, note=p.note)
    values = np.array(p.published)
    steps = None if steps is None else check_steps(steps)
    if steps is not None and steps != p.steps:
        values = np.exp(np.interp(np.linspace(0, 1, steps + 1), np.linspace(0, 1, len(values)), np.log(values)))
        metadata.update(steps=steps, interpolated_from=p.steps)
    return Schedule(values[:-1].tolist() + [0.0], parameterization="flow", metadata=metadata, solver="euler",
                    shift=p.shift)


def describe() -> list[dict]:
    """One row per preset, for a listing."""
    return [dict(name=p.name, model=p.model, steps=p.steps, solver="euler", source=p.source, shift=p.shift)
            for p in PRESETS.values()]
