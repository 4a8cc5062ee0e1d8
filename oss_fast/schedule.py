"""Schedule: a searched step schedule you keep, reuse and hand to diffusers.

A schedule is K steps: grid indices of the model's grid (ascending; the last is where sampling
starts) and their flow times, the sigmas (descending, ending at 0). It saves to JSON with what
produced it, interpolates to other step counts, keeps its last steps for img2img (for_denoise), and
exports to diffusers; `oss_fast.sample(model, z, schedule)` samples along it. It is a plain value:
this module imports only the grid math.

* schedulers with flow sigmas (FlowMatchEulerDiscreteScheduler: FLUX, SD3; UniPCMultistepScheduler
  with use_flow_sigmas: Wan) get the sigmas *before* the scheduler re-applies its shift, so that
  the scheduler ends at exactly the schedule's sigmas;
* DDPM-family models (DiT, parameterization "ddpm") map flow time s to the variance-exploding sigma
  s / (1 - s) for EulerDiscreteScheduler (Euler in that sigma is the same sampler as Euler in s), or
  to their network timesteps for schedulers taking `timesteps` (DDPM, DPM-Solver).

`to_diffusers(pipe)` returns the call arguments for pipelines that take them (FluxPipeline's
`sigmas`); `applied(pipe)` is a context manager for those that do not (WanPipeline, DiTPipeline):
inside it, the pipeline's scheduler sets the schedule's steps whatever step count it is asked for.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import json
import math
import numbers

import numpy as np
import torch

from ._version import __version__
from .files import read_bounded, write_atomic
from .grid import (MAX_STEPS, TINY, check_dynamic_shift_rule, describe_grid, grid_index, image_seq_len, index_list,
                   mu_shift, positive_real, scheduler_mu, scheduler_shift, shifted_grid, size_mu, size_shift, snap_steps,
                   time_shift, time_unshift, whole_number)

FORMAT = "oss_fast.schedule/1"
MAX_FILE_BYTES = 16 << 20  # a schedule is kilobytes (a 10,000-step grid about 250 KB): room to spare, not a device
PARAMETERIZATIONS = ("flow", "ddpm")
# the samplers a schedule can be for (oss_fast.solvers defines them; the names are kept here so that
# a Schedule stays a plain value, and a test keeps the two lists equal)
SOLVERS = ("euler", "ab2", "dpmpp_2m", "unipc")


def _floats(values, name: str = "values") -> list[float]:
    """A sequence of finite real numbers as floats; ValueError naming the field otherwise."""
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = values.reshape(-1).tolist()
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a list of numbers, got {type(values).__name__}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must hold numbers, got {type(v).__name__}")
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must be finite, got {v}")
        out.append(float(v))
    return out


def _indices(values, K: int, grid_len: int | None) -> list[int]:
    indices = index_list(values)
    if len(indices) != K:
        raise ValueError(f"{K} steps need {K} indices, got {len(indices)}")
    high = grid_len - 1 if grid_len is not None else None
    if any(i < 1 or (high is not None and i > high) for i in indices) or any(b <= a for a, b in
                                                                                zip(indices, indices[1:])):
        bound = f"[1, {high}]" if high is not None else ">= 1"
        raise ValueError(f"indices must be ascending grid indices in {bound}, got {indices}")
    return indices


MAX_SIDE = 1 << 20  # pixels per side: far beyond any pipeline (FLUX's shift rule overflows past ~10^5)


def _size(value) -> list[int]:
    """An image size as [height, width] in pixels (a pair of ints in [1, MAX_SIDE])."""
    if (isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_SIDE
                   for v in value)):
        text = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise ValueError(f"size must be [height, width] in pixels (ints in [1, {MAX_SIDE}]), got {text}")
    return [int(v) for v in value]


class Schedule:
    """K steps of a sampler on a model's grid.

    indices: K grid indices, ascending (None for a schedule given only by sigmas).
    sigmas: K + 1 flow times, descending, the last 0.
    grid: the model's fm_steps (None if unknown). timesteps: the network's timestep at each of the
    K steps, descending (None if unknown). parameterization: "flow" or "ddpm" (how the sigmas map
    to a scheduler's). metadata: free-form provenance, saved with the schedule. solver: the sampler
    it was searched for and is sampled with ("euler", "ab2", "dpmpp_2m", "unipc").
    shift: the time shift of the grid it was searched on (1 = uniform; None if unknown).
    size: [height, width] in pixels it was searched at, for models whose pipeline shifts the sigmas
    by image size; dynamic_shift: that pipeline's rule (DYNAMIC_SHIFT_KEYS), so the schedule can
    follow it to another size (for_resolution).
    """

    def __init__(self, sigmas, indices=None, grid=None, timesteps=None, parameterization: str = "flow",
                 metadata: dict | None = None, solver: str = "euler", shift: float | None = None, size=None,
                 dynamic_shift: dict | None = None):
        sigmas = _floats(sigmas, "sigmas")
        if len(sigmas) < 2 or sigmas[-1] != 0.0:
            raise ValueError(f"sigmas must hold K + 1 >= 2 values ending at 0, got {sigmas}")
        if any(b >= a for a, b in zip(sigmas, sigmas[1:])):
            raise ValueError(f"sigmas must be strictly decreasing, got {sigmas}")
        if sigmas[0] > 1:
            raise ValueError(f"sigmas are flow times in [0, 1], got {sigmas[0]}")
        if sigmas[-2] < TINY:
            raise ValueError(f"sigmas must be 0 or at least {TINY:.3g} (float32's smallest normal: a pipeline keeps "
                             f"them in float32), got {sigmas[-2]!r}")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
        K = len(sigmas) - 1
        if grid is not None:
            grid = _floats(grid, "grid")
            if len(grid) < 2 or grid[0] != 0 or any(b <= a for a, b in zip(grid, grid[1:])):
                raise ValueError("grid must be strictly increasing flow times starting at 0")
        if indices is not None:
            indices = _indices(indices, K, None if grid is None else len(grid))
            if grid is not None and any(abs(grid[i] - s) > 1e-9 * max(1.0, abs(s))
                                        for i, s in zip(reversed(indices), sigmas)):
                raise ValueError("indices disagree with the sigmas: grid[indices] must be the sigmas")
        if timesteps is not None:
            timesteps = _floats(timesteps, "timesteps")
            if len(timesteps) != K:
                raise ValueError(f"{K} steps need {K} timesteps, got {len(timesteps)}")
            if timesteps[-1] < 0 or any(b >= a for a, b in zip(timesteps, timesteps[1:])):
                raise ValueError(f"timesteps must be >= 0 and strictly decreasing (the network's timestep at each step, "
                                 f"noise first), got {_short(timesteps)}")
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
        self.sigmas = sigmas
        self.indices = indices
        self.grid = grid
        self.timesteps = timesteps
        self.parameterization = parameterization
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        self.metadata = dict(metadata or {})
        self.solver = solver
        self.shift = None if shift is None else positive_real(shift)
        if self.shift is not None:  # the diffusers export un-shifts by it: those flow times must exist
            _representable(time_unshift(np.array(sigmas), self.shift), _shift_cause(self.shift))
        self.size = None if size is None else _size(size)
        if dynamic_shift is not None:
            dynamic_shift = check_dynamic_shift_rule(dynamic_shift)
            if self.size is None:
                raise ValueError("a schedule with dynamic_shift records the image size it was searched at (size)")
            at_size = size_shift(dynamic_shift, self.size)  # the shift the pipeline applies at that size
            _representable(time_unshift(np.array(sigmas), at_size),
                           _shift_cause(at_size, f" (the dynamic shift at {self.size[0]}x{self.size[1]})"))
        self.dynamic_shift = dynamic_shift

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_indices(cls, indices, model=None, *, grid=None, metadata=None, parameterization=None,
                     solver: str = "euler") -> "Schedule":
        """From grid indices (ascending, as a search returns them) on a model's grid (or a given
        grid). A model wrapper may add its network timesteps (model_timesteps) and its
        parameterization ("ddpm" for DiT)."""
        grid = _floats(model.fm_steps if grid is None else grid)
        indices = index_list(indices)
        if not indices or any(not 1 <= i < len(grid) for i in indices) or sorted(set(indices)) != indices:
            raise ValueError(f"indices must be distinct, ascending grid indices in [1, {len(grid) - 1}], got {indices}")
        sigmas = [grid[i] for i in reversed(indices)] + [0.0]
        timesteps = None
        if getattr(model, "model_timesteps", None) is not None:
            timesteps = [float(model.model_timesteps[i]) for i in reversed(indices)]
        parameterization = parameterization or getattr(model, "parameterization", "flow")
        description = describe_grid(grid)
        meta = dict(model=getattr(model, "name", type(model).__name__) if model is not None else None,
                    grid=description)
        meta.update(metadata or {})
        size, rule = getattr(model, "image_size", None), getattr(model, "dynamic_shift", None)
        shift = size_shift(rule, size) if rule else _grid_shift(description)  # exact, not read off a float32 grid
        return cls(sigmas, indices, grid, timesteps, parameterization, meta, solver, shift, size, rule)

    @classmethod
    def from_search(cls, result, model, *, seeds=None, metadata=None, sample: int | None = None) -> "Schedule":
        """The aggregated schedule of a search result (oss_fast.search) on the model it searched. A
        result of aggregate "per_sample" holds one path per search noise and no one schedule: pass
        sample=i for noise i's path (recorded in the metadata as `sample`)."""
        per_sample = result.schedule is None
        if per_sample and sample is None:
            raise ValueError(f"this search result holds one path per noise ({len(result.steps)} paths, aggregate "
                             "'per_sample'), not one schedule: pass sample=i to take noise i's path, or search with "
                             "an aggregate (median, joint, joint_rms) for one schedule of all noises")
        if sample is not None:
            if not per_sample:
                raise ValueError(f"sample= picks one noise's path of a per_sample search; this result is aggregated "
                                 f"({result.aggregate!r}) into one schedule: leave sample out")
            sample = whole_number(sample, "sample", 0, len(result.steps) - 1)
        steps = result.steps[sample] if per_sample else result.schedule
        meta = dict(teacher_steps=result.teacher_steps, student_steps=len(steps), mode=result.mode,
                    aggregation=result.aggregate, seeds=seeds)
        if per_sample:
            meta["sample"] = sample
        report = getattr(result, "guard", None)
        if report is not None:  # what the multistep default's guard kept, and how every candidate did
            finite = lambda x: round(x, 4) if math.isfinite(x) else None  # noqa: E731 (JSON has no inf)
            meta["validation"] = dict(kept=report.chosen, noises=report.noises, candidates=[
                dict(name=v.name, steps=v.steps, mean_psnr=finite(v.mean_psnr), psnr=finite(v.psnr),
                     p10_psnr=finite(v.p10_psnr), min_psnr=finite(v.min_psnr), shortfall=finite(v.shortfall))
                for v in report.verdicts])
        meta.update(metadata or {})
        return cls.from_indices(steps, model, metadata=meta, solver=getattr(result, "solver", "euler"))

    @classmethod
    def from_sigmas(cls, sigmas, grid=None, *, metadata=None, parameterization: str = "flow",
                    solver: str = "euler") -> "Schedule":
        """From flow times, descending (a final 0 is added if missing); indices are set when every
        nonzero sigma lies on the grid."""
        sigmas = _floats(sigmas)
        if sigmas and sigmas[-1] != 0.0:
            sigmas.append(0.0)
        grid = None if grid is None else _floats(grid)
        return cls(sigmas, _indices_on(grid, sigmas), grid, None, parameterization, metadata, solver)

    # ------------------------------------------------------------------ use
    def __len__(self) -> int:
        return len(self.sigmas) - 1

    def __repr__(self) -> str:
        return (f"Schedule(K={len(self)}, solver={self.solver}, indices={self.indices}, "
                f"sigmas={[round(s, 5) for s in self.sigmas]})")

    def __eq__(self, other) -> bool:
        return isinstance(other, Schedule) and self.to_dict() == other.to_dict()

    def interpolate(self, steps: int) -> "Schedule":
        """The schedule at another step count, by log-linear interpolation of the nonzero sigmas over
        a uniform step axis (the convention of published step presets); the final 0 is kept."""
        check_steps(steps)
        meta = dict(self.metadata, interpolated_from=len(self))
        if steps == len(self):
            return self.replace(metadata=meta)
        log_sigmas = np.log(np.array(self.sigmas[:-1]))
        new = np.exp(np.interp(np.linspace(0, 1, steps), np.linspace(0, 1, len(log_sigmas)), log_sigmas))
        sigmas = list(new) + [0.0]
        return self.replace(sigmas=sigmas, indices=_indices_on(self.grid, sigmas), timesteps=None, metadata=meta)

    def for_denoise(self, strength) -> "Schedule":
        """The schedule an img2img run at `strength` (ComfyUI's denoise) samples: its last
        round(K * strength) steps and the final 0 (denoised_steps: the published OSS node's rule), so
        sampling starts from the image noised to the first kept sigma. Strength 1 keeps every step; a
        strength that keeps none is refused: there is nothing to sample."""
        kept = denoised_steps(len(self), strength)
        if kept == 0:
            raise ValueError(f"strength {strength:g} keeps none of {len(self)} steps (round({len(self)} x "
                             f"{strength:g}) = 0): nothing to sample")
        first = len(self) - kept  # the steps dropped are the noisiest: sigmas descend, indices ascend
        return self.replace(sigmas=self.sigmas[first:], indices=None if self.indices is None else self.indices[:kept],
                            timesteps=None if self.timesteps is None else self.timesteps[first:],
                            metadata=dict(self.metadata, denoise=dict(strength=float(strength), of_steps=len(self))))

    def snap(self, grid=None) -> "Schedule":
        """The nearest schedule on a grid: the K sigmas moved to K distinct grid points, in order,
        moving them least in total."""
        if grid is None and self.grid is None:
            raise ValueError("no grid to snap to")
        grid = _floats(self.grid if grid is None else grid)
        indices = snap_steps(grid, self.sigmas[:-1])
        return self.replace(sigmas=[grid[i] for i in reversed(indices)] + [0.0], indices=indices, grid=grid,
                            timesteps=None, shift=_grid_shift(describe_grid(grid)),
                            metadata=dict(self.metadata, snapped=True))

    # ------------------------------------------------------------------ transfer
    def for_shift(self, shift: float, teacher_steps: int | None = None) -> "Schedule":
        """The schedule for the same network on a teacher grid of another time shift (N steps, N the
        schedule's own unless teacher_steps is given). The network does not change with the grid, so
        the flow times carry over, snapped onto the new grid (README, Transfer); a schedule without a
        grid (a preset) keeps its flow times as they are. For a pipeline with that static shift, the
        diffusers export then un-shifts by it, so the pipeline lands on these flow times."""
        self._refuse_transfer("for_shift")
        shift = positive_real(shift)
        meta = dict(self.metadata, transferred=dict(kind="shift", from_shift=self.shift, to_shift=shift))
        N = teacher_steps if teacher_steps is not None else (len(self.grid) - 1 if self.grid else None)
        if N is None:  # sigmas only (a preset): the flow times stay, there is no grid to snap onto
            return self.replace(shift=shift, metadata=meta)
        N = whole_number(N, "teacher_steps (at least the schedule's steps)", len(self), 100 * MAX_STEPS)
        return self.snap(shifted_grid(N, shift).tolist()).replace(shift=shift, metadata=meta)

    def reshift(self, shift: float) -> "Schedule":
        """The schedule moved through un-shifted time, s -> time_shift(time_unshift(s, a), shift) with a
        the recorded shift: what re-shifting a step preset does (e.g. a sampler's shift applied to a
        schedule's output). Off any grid. This is not how a schedule carries to another grid -- the
        README's Transfer table measures it below for_shift -- but a deliberate move of the steps."""
        self._refuse_transfer("reshift")
        if self.shift is None:
            raise ValueError("the schedule records no shift to undo (searched on a custom grid?)")
        shift = positive_real(shift)
        sigmas = _representable(time_shift(time_unshift(np.array(self.sigmas), self.shift), shift), _shift_cause(shift))
        return self.replace(sigmas=sigmas, indices=None, grid=None, timesteps=None, shift=shift,
                            metadata=dict(self.metadata, transferred=dict(kind="reshift", from_shift=self.shift,
                                                                         to_shift=shift)))

    def for_resolution(self, height: int, width: int) -> "Schedule":
        """The schedule at another image size, for pipelines that shift sigmas by image size (FLUX;
        diffusers' use_dynamic_shifting): the pipeline's own convention, followed explicitly -- every
        flow time (sigmas and grid) un-shifted by the recorded size's shift and re-shifted by the
        target size's, so the grid indices stay and the result is the grid the pipeline uses at the
        new size. Whether a new search at that size would do better needs a model whose velocity
        depends on resolution: the bundled ones do not, so it is not measured here."""
        size = _size([height, width])
        if self.dynamic_shift is None:
            reason = ("it records no image size and shift rule (its pipeline does not shift sigmas by size, or it "
                      "is a preset whose size was not published), so its flow times serve every size as they are"
                      if self.parameterization == "flow" else
                      "it is a DDPM-family schedule (DiT): its sigmas do not depend on image size")
            raise ValueError(f"for_resolution applies to FLUX-style dynamic-shift schedules; {reason}")
        a, b = size_shift(self.dynamic_shift, self.size), size_shift(self.dynamic_shift, size)
        move = (lambda s: time_shift(time_unshift(np.array(s), a), b).tolist())
        sigmas = _representable(move(self.sigmas), _shift_cause(b, f" (the dynamic shift at {size[0]}x{size[1]})"))
        timesteps = None if self.timesteps is None else [t * new / old for t, new, old in
                                                         zip(self.timesteps, sigmas, self.sigmas)]
        return self.replace(sigmas=sigmas, grid=None if self.grid is None else move(self.grid), timesteps=timesteps,
                            shift=b, size=size, metadata=dict(self.metadata, transferred=dict(
                                kind="resolution", from_size=self.size, to_size=size)))

    def _refuse_transfer(self, what: str) -> None:
        if self.parameterization != "flow":
            raise ValueError(f"{what}: a DDPM-family schedule (DiT) has no time shift to move")
        if self.dynamic_shift is not None:
            raise ValueError(f"{what}: this schedule's pipeline sets its shift by image size; use "
                             "for_resolution(height, width)")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return dict(format=FORMAT, solver=self.solver, indices=self.indices, sigmas=self.sigmas,
                    timesteps=self.timesteps, grid=self.grid, parameterization=self.parameterization,
                    shift=self.shift, size=self.size, dynamic_shift=self.dynamic_shift, metadata=self.metadata)

    def replace(self, **changes) -> "Schedule":
        """A copy with some fields changed (validated as a new schedule)."""
        fields = dict(self.to_dict(), **changes)
        fields.pop("format")
        return Schedule(**fields)

    def save(self, path) -> None:
        """Writes JSON; floats are written exactly (repr), so load(save(s)) == s."""
        meta = self.metadata
        meta.setdefault("oss_fast_version", __version__)
        meta.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        write_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path) -> "Schedule":
        """A schedule from JSON, validated field by field: ValueError naming what is wrong."""
        text = read_bounded(path, MAX_FILE_BYTES, "schedule file")
        try:
            data = json.loads(text.decode("utf-8"), parse_constant=_refuse_constant)
        except RecursionError:
            raise ValueError(f"{path} is not a schedule file (nested too deeply)") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a schedule file (not UTF-8 text)") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a schedule file (invalid JSON: {err.msg}, line {err.lineno})") from None
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a schedule file (top level is {type(data).__name__}, not an object)")
        if data.get("format") != FORMAT:
            raise ValueError(f"{path} is not an oss_fast schedule (format {data.get('format')!r})")
        unknown = set(data) - {"format", "solver", "indices", "sigmas", "timesteps", "grid", "parameterization",
                               "metadata", "shift", "size", "dynamic_shift"}
        if unknown:
            raise ValueError(f"{path}: unknown field {sorted(unknown)[0]!r}")
        if "sigmas" not in data:
            raise ValueError(f"{path}: the field 'sigmas' is missing")
        try:
            return cls(data["sigmas"], data.get("indices"), data.get("grid"), data.get("timesteps"),
                       data.get("parameterization", "flow"), data.get("metadata"),
                       data.get("solver", "euler"),  # files written before solvers existed are Euler
                       data.get("shift"), data.get("size"), data.get("dynamic_shift"))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    # ------------------------------------------------------------------ diffusers
    def scheduler_arguments(self, scheduler, mu: float | None = None) -> dict:
        """What to pass to scheduler.set_timesteps so that it lands on this schedule (sigmas as a
        float64 numpy array: some schedulers do arithmetic on it directly)."""
        params = inspect.signature(scheduler.set_timesteps).parameters
        config = scheduler.config
        if self.parameterization == "flow":
            flow = "sigmas" in params and (type(scheduler).__name__.startswith("FlowMatch")
                                          or config.get("use_flow_sigmas", False))
            if not flow:
                raise ValueError(f"{type(scheduler).__name__} does not take flow sigmas; use a flow-matching "
                                 "scheduler (FlowMatchEulerDiscreteScheduler, or UniPC with use_flow_sigmas)")
            for option in ("shift_terminal", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                           "invert_sigmas"):
                if config.get(option):
                    raise ValueError(f"cannot land exactly on a schedule through {option}={config.get(option)}")
            sigmas = np.array(self.sigmas[:-1])
            if config.get("use_dynamic_shifting"):
                if mu is None:
                    raise ValueError("the scheduler shifts by image size: give mu, or height and width")
                m = mu_shift(mu, config.get("time_shift_type", "exponential"))
                return dict(sigmas=_exported(time_unshift(sigmas, m), f"the scheduler's dynamic shift {m:g} (mu {mu:g})"),
                            mu=mu)
            shift = positive_real(scheduler_shift(config), f"the scheduler's shift ({type(scheduler).__name__})")
            return dict(sigmas=_exported(time_unshift(sigmas, shift), f"the scheduler's shift {shift:g}"))
        # ddpm
        if "sigmas" in params and hasattr(scheduler, "alphas_cumprod") and not config.get("use_flow_sigmas", False):
            with np.errstate(divide="ignore"):
                ve = np.array(self.sigmas) / (1 - np.array(self.sigmas))  # variance-exploding sigma, final 0 included
            return dict(sigmas=_exported(ve, "the variance-exploding sigmas s / (1 - s)", upper=math.inf))
        if "timesteps" in params:
            if self.timesteps is None:
                raise ValueError("this schedule has no network timesteps (build it from a wrapper that knows them)")
            timesteps = [int(round(t)) for t in self.timesteps]
            if any(b >= a for a, b in zip(timesteps, timesteps[1:])):
                raise ValueError(f"the timesteps {_short(self.timesteps)} collide once rounded to the network's integers "
                                 f"({_short(timesteps)}): two steps would share one timestep")
            return dict(timesteps=timesteps)
        raise ValueError(f"{type(scheduler).__name__} takes neither sigmas nor timesteps")

    def to_diffusers(self, pipe_or_scheduler, *, mu: float | None = None, height: int | None = None,
                     width: int | None = None) -> dict:
        """Call arguments that make a pipeline (or scheduler.set_timesteps) sample at exactly this
        schedule's sigmas: `pipe(prompt, **schedule.to_diffusers(pipe))`. Where the pipeline shifts
        sigmas by image size (FLUX-style dynamic shifting) the size belongs here, not in the pipeline
        call: the arguments then hold height and width, the size the sigmas were made for (a schedule
        that records its size -- searched through FluxWrapper.from_pipeline -- uses it and refuses
        another: use for_resolution; otherwise give height and width, or mu for a bare scheduler).
        Only Euler schedules go through call arguments; other solvers need `with schedule.applied(pipe)`,
        which also puts the pipeline on a scheduler that runs the solver."""
        scheduler = getattr(pipe_or_scheduler, "scheduler", pipe_or_scheduler)
        is_pipe = scheduler is not pipe_or_scheduler
        if is_pipe and self.solver != "euler":
            raise ValueError(f"a {self.solver} schedule needs `with schedule.applied(pipe): pipe(...)`: it switches "
                             f"the pipeline to {self._scheduler_spec()[0]} on the schedule's sigmas")
        size_args = {}
        if mu is None and scheduler.config.get("use_dynamic_shifting"):
            if self.size is not None:
                if (height or width) and [height, width] != self.size:
                    raise ValueError(self._other_size(height, width))
                height, width = self.size
            if height and width:
                factor = getattr(pipe_or_scheduler, "vae_scale_factor", 8)
                mu = scheduler_mu(scheduler.config, image_seq_len(height, width, factor))
                size_args = dict(height=height, width=width) if is_pipe else {}  # the size the sigmas are for
        args = self.scheduler_arguments(scheduler, mu)
        if not is_pipe:
            return args
        call = inspect.signature(pipe_or_scheduler.__call__).parameters
        missing = [name for name in args if name not in call and name != "mu"]
        if missing:
            raise ValueError(f"{type(pipe_or_scheduler).__name__} takes no {missing[0]!r}: use "
                             "`with schedule.applied(pipe): pipe(...)` instead")
        if not self.runs_on(scheduler):
            raise ValueError(f"{type(scheduler).__name__} does not run Euler on these sigmas: use "
                             "`with schedule.applied(pipe): pipe(...)`")
        args.pop("mu", None)  # the pipeline computes mu itself from height and width
        return dict(args, num_inference_steps=len(self), **size_args)

    def diffusers_export(self, strength: float | None = None) -> dict:
        """What a diffusers pipeline needs to sample this schedule, without the pipeline at hand
        (`oss-fast export --format diffusers`), for Euler schedules of flow models (FLUX, SD3, Wan):
        the scheduler class and config entries that run Euler with the recorded static shift, and the
        pipeline call arguments -- the sigmas before the scheduler's shift re-applies, the step count
        and, where the pipeline shifts by image size, the recorded height and width (and their mu).
        `usage` says how to follow it. Other solvers and DDPM-family (DiT) schedules are refused:
        diffusers takes their sigmas through no argument; `schedule.applied(pipe)` samples them.

        With `strength`, the arguments are for img2img pipelines (FluxImg2ImgPipeline,
        StableDiffusion3Img2ImgPipeline) and land on for_denoise(strength): its sigmas, and strength
        1.0. The pipelines' own strength would keep N - int(N - N * strength) of N steps, about the
        ceiling of N * strength where the node rounds (10 steps at 0.25: 3, not 2); at strength 1.0
        they run every sigma given, starting from the image noised to the first."""
        if self.solver != "euler" or self.parameterization != "flow":
            what = f"a {self.solver} schedule" if self.solver != "euler" else "a DDPM-family (DiT) schedule"
            raise ValueError(f"{what} cannot be handed to a diffusers pipeline as call arguments (its scheduler takes "
                             "no such sigmas); in Python: `with oss_fast.Schedule.load(FILE).applied(pipe): pipe(...)`")
        chosen = self if strength is None else self.for_denoise(strength)
        name, config = self._scheduler_spec()
        out = dict(scheduler=name, num_inference_steps=len(chosen))
        call = "sigmas=sigmas, num_inference_steps=num_inference_steps"
        if self.dynamic_shift is not None:  # the pipeline's own dynamic shift, at the recorded size
            shift = size_shift(self.dynamic_shift, self.size)
            out.update(scheduler_config=config, height=self.size[0], width=self.size[1],
                       mu=size_mu(self.dynamic_shift, self.size))
            call += ", height=height, width=width"
        else:  # a static shift, the recorded one (1 when unknown: the sigmas are then passed as they are)
            shift = self.shift or 1.0
            out["scheduler_config"] = dict(config, use_dynamic_shifting=False, shift=shift)
        setup = f"pipe.scheduler = diffusers.{name}.from_config(pipe.scheduler.config, **scheduler_config)"
        if strength is None:
            out["usage"] = (f"pipelines whose call takes sigmas (FLUX, SD3): {setup}; pipe(..., {call}); others (Wan): "
                            "with oss_fast.Schedule.load(FILE).applied(pipe): pipe(...)")
        else:
            out.update(strength=1.0, usage=(
                f"img2img pipelines (FluxImg2ImgPipeline, StableDiffusion3Img2ImgPipeline): {setup}; pipe(..., "
                f"image=image, strength=strength, {call}): strength 1.0 runs these sigmas, the last {len(chosen)} of "
                f"{len(self)} steps (for_denoise({strength:g})), from the image noised to the first"))
        return dict(out, sigmas=_exported(time_unshift(np.array(chosen.sigmas[:-1]), shift), f"shift {shift:g}").tolist())

    def _other_size(self, height, width) -> str:
        h, w = self.size
        return (f"this schedule was searched at {h}x{w}; at {height}x{width} the pipeline shifts sigmas by "
                f"image size, so use schedule.for_resolution({height}, {width}) (moves the sigmas as the pipeline "
                "does) or search at that size")

    # ------------------------------------------------------------------ diffusers schedulers per solver
    def _scheduler_spec(self):
        """(diffusers scheduler class name, the config entries that make it run this schedule's
        solver), or ValueError where diffusers has no such scheduler."""
        if self.solver == "ab2":
            raise ValueError("diffusers has no linear multistep scheduler on flow sigmas: sample an ab2 schedule "
                             "with oss_fast.sample, or in ComfyUI/k-diffusion with sampler 'lms' (order 2) on "
                             "schedule.to_sigmas()")
        flow = self.parameterization == "flow"
        if self.solver == "euler":
            if flow:
                return "FlowMatchEulerDiscreteScheduler", {}
            # first-order DPM-Solver++ is DDIM, and Euler in flow time; unlike EulerDiscreteScheduler it
            # starts from unit noise, as DDPM-family pipelines (DiT) draw it
            return "DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++", solver_order=1,
                                                       prediction_type="epsilon", use_flow_sigmas=False,
                                                       final_sigmas_type="zero")
        prediction = dict(use_flow_sigmas=True, prediction_type="flow_prediction") if flow else dict(
            use_flow_sigmas=False, prediction_type="epsilon")
        if self.solver == "dpmpp_2m":
            return "DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++", solver_order=2,
                                                       solver_type="midpoint", lower_order_final=True,
                                                       euler_at_final=False, final_sigmas_type="zero",
                                                       thresholding=False, **prediction)
        return "UniPCMultistepScheduler", dict(solver_order=2, solver_type="bh2", predict_x0=True,
                                               lower_order_final=True, disable_corrector=[],
                                               final_sigmas_type="zero", thresholding=False, **prediction)

    def runs_on(self, scheduler) -> bool:
        """Whether a diffusers scheduler runs this schedule's solver (its class and configuration)."""
        name, config = self._scheduler_spec()
        return type(scheduler).__name__ == name and all(scheduler.config.get(k) == v for k, v in config.items())

    def diffusers_scheduler(self, like=None):
        """A new diffusers scheduler that runs this schedule's solver, with the training schedule
        (num_train_timesteps, betas) of the scheduler `like` where given."""
        import diffusers

        name, config = self._scheduler_spec()
        base = {} if like is None else dict(like.config)
        keep = ("num_train_timesteps",) if self.parameterization == "flow" else (
            "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
        config = dict({k: base[k] for k in keep if base.get(k) is not None}, **config)
        if self.parameterization == "flow" and name != "FlowMatchEulerDiscreteScheduler":
            config["flow_shift"] = 1.0  # the schedule's sigmas are installed as they are
        return getattr(diffusers, name)(**config)

    def install(self, scheduler, device=None) -> None:
        """Puts a scheduler, reset by its own set_timesteps, on exactly this schedule: its sigmas and
        the timesteps the network sees (flow: 1000 sigma as floats, as oss_fast's wrappers feed the
        network; DDPM family: the network timesteps)."""
        n_train = scheduler.config.get("num_train_timesteps", 1000)
        if self.parameterization == "flow":
            sigmas = np.array(self.sigmas, dtype=np.float64)
            if type(scheduler).__name__ == "UniPCMultistepScheduler" and abs(sigmas[0] - 1) < 1e-6:
                sigmas[0] -= 1e-6  # UniPC's own nudge away from log-SNR -inf
            timesteps = torch.tensor(sigmas[:-1] * n_train, dtype=torch.float32)
        else:
            if self.timesteps is None:
                raise ValueError("this schedule has no network timesteps (build it from a wrapper that knows them)")
            steps = [int(round(t)) for t in self.timesteps]
            acp = scheduler.alphas_cumprod[steps].double().numpy()
            sigmas = np.concatenate([((1 - acp) / acp) ** 0.5, [0.0]])
            timesteps = torch.tensor(steps, dtype=torch.int64)
        scheduler.sigmas = torch.from_numpy(sigmas.astype(np.float32))
        scheduler.timesteps = timesteps.to(device) if device is not None else timesteps
        scheduler.num_inference_steps = len(self)
        for attribute in ("_step_index", "_begin_index"):
            if hasattr(scheduler, attribute):
                setattr(scheduler, attribute, None)

    @contextlib.contextmanager
    def applied(self, pipe_or_scheduler):
        """Within the block, the pipeline samples this schedule with its solver: its scheduler is
        replaced by one that runs the solver (unless it already does) and, whatever step count it is
        asked for, lands on the schedule's sigmas. A bare scheduler is only put on the sigmas."""
        is_pipe = hasattr(pipe_or_scheduler, "scheduler")
        original_scheduler = pipe_or_scheduler.scheduler if is_pipe else pipe_or_scheduler
        scheduler = original_scheduler
        if is_pipe and not self.runs_on(scheduler):
            scheduler = self.diffusers_scheduler(like=original_scheduler)
            pipe_or_scheduler.scheduler = scheduler
        original = scheduler.set_timesteps

        @functools.wraps(original)  # keeps the signature pipelines inspect (e.g. for `sigmas`)
        def set_timesteps(num_inference_steps=None, device=None, **kwargs):
            reset = {"mu": kwargs.get("mu", 0.0)} if scheduler.config.get("use_dynamic_shifting") else {}
            if self.dynamic_shift is not None and "mu" in kwargs:  # a pipeline at another size: never silently
                expected = scheduler_mu(scheduler.config, image_seq_len(*self.size, self.dynamic_shift["vae_scale_factor"]))
                if abs(kwargs["mu"] - expected) > 1e-9:
                    raise ValueError(f"the pipeline runs at another image size than the {self.size[0]}x{self.size[1]} "
                                     f"this schedule was searched at (mu {kwargs['mu']:.4f}, not {expected:.4f}): "
                                     "use schedule.for_resolution(height, width) for that size")
            original(num_inference_steps=len(self), device=device, **reset)  # resets the step state
            self.install(scheduler, device)

        scheduler.set_timesteps = set_timesteps
        try:
            yield scheduler
        finally:
            del scheduler.set_timesteps  # back to the class's method
            if scheduler is not original_scheduler:
                pipe_or_scheduler.scheduler = original_scheduler

    def to_sigmas(self) -> torch.Tensor:
        """The sigmas as ComfyUI's SIGMAS and k-diffusion's samplers take them: descending flow times
        ending at 0 (float32). Sample with the schedule's solver: ComfyUI/k-diffusion 'euler' for euler,
        'lms' (order 2) for ab2."""
        return torch.from_numpy(_exported(self.sigmas, "these sigmas").astype(np.float32))


def denoised_steps(steps, strength, name: str = "strength") -> int:
    """How many of `steps` steps a run at img2img strength (ComfyUI's denoise) samples:
    round(steps * strength), the rule of ComfyUI's OptimalStepsScheduler node (Python's round: an
    exact half goes to the even count). ValueError naming `name` unless strength is a number in [0, 1]."""
    steps = check_steps(steps)
    if isinstance(strength, (bool, np.bool_)) or not isinstance(strength, numbers.Real) or not 0 <= strength <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {strength!r}")
    return round(steps * float(strength))


def check_steps(steps) -> int:
    """A step count: an integer (operator.index: numpy ints too, not floats or bools) in [1, MAX_STEPS];
    ValueError otherwise."""
    return whole_number(steps, "steps", 1, MAX_STEPS)


def _representable(values, cause: str, upper: float = 1.0, float32: bool = False) -> list[float]:
    """The one check of every sigma list a schedule holds or hands out: finite, within [0, upper],
    strictly decreasing, each nonzero one at least TINY (float32's smallest normal) and, with float32,
    still strictly decreasing once cast to float32 (what pipelines and ComfyUI keep). Returns them as
    floats; ValueError starting with `cause` (why they could fail) otherwise."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    problem = None
    if not np.isfinite(a).all():
        problem = "not all finite"
    elif ((a < 0) | (a > upper)).any():
        problem = f"not all within [0, {upper:g}]"
    elif (np.diff(a) >= 0).any():
        problem = "not strictly decreasing"
    elif ((a > 0) & (a < TINY)).any():
        problem = f"not all 0 or above {TINY:.3g} (float32's smallest normal)"
    elif float32 and (np.diff(a.astype(np.float32)) >= 0).any():
        problem = "not strictly decreasing in float32"
    if problem is not None:
        raise ValueError(f"{cause}: the sigmas would be {_short(a)}, {problem}")
    return a.tolist()


def _exported(values, what: str, upper: float = 1.0) -> np.ndarray:
    """A sigma list handed to a pipeline, ComfyUI or a file, as float64: checked by _representable
    (float32 included); ValueError naming `what` produced it otherwise."""
    _representable(values, f"{what} cannot be exported", upper, float32=True)
    return np.asarray(values, dtype=np.float64)


def _shift_cause(shift: float, what: str = "") -> str:
    return f"shift {shift:g}{what} is too {'large' if shift > 1 else 'small'} to represent these sigmas"


def _short(values) -> str:
    values = list(values)
    text = ", ".join(f"{float(v):.4g}" for v in values[:6])
    return f"[{text}{', ...' if len(values) > 6 else ''}]"


def _indices_on(grid, sigmas) -> list[int] | None:
    """The grid indices of the nonzero sigmas (ascending) when every one lies on the grid, else None."""
    if grid is None:
        return None
    found = [grid_index(grid, s) for s in sigmas[:-1]]
    return found[::-1] if all(i is not None for i in found) else None


def _grid_shift(description: dict) -> float | None:
    return {"uniform": 1.0, "shifted": description.get("shift")}.get(description["kind"])


def _refuse_constant(name: str):
    raise ValueError(f"NaN and Infinity are not schedule values (found {name})")
