"""Schedule: a searched step schedule you keep, reuse and hand to diffusers.

A schedule is K steps: grid indices of the model's grid (ascending; the last is where sampling
starts) and their flow times, the sigmas (descending, ending at 0). It saves to JSON with what
produced it, interpolates to other step counts, keeps its last steps for img2img (for_denoise),
carries over to other grids and image sizes, and says whether it fits a model's grid (indices_on);
`oss_fast.sample(model, z, schedule)` samples along it. It is a plain value: this module imports the
grid math and the solver registry. Its diffusers methods (to_diffusers, applied, diffusers_export,
...) hand it to integrations/diffusers.py.
"""

from __future__ import annotations

import datetime
import json
import math
import numbers

import numpy as np
import torch

from ._version import __version__
from .files import read_bounded, write_atomic
from .grid import (MAX_STEPS, TINY, check_dynamic_shift_rule, describe_grid, grid_index, index_list, positive_real,
                   shifted_grid, size_shift, snap_steps, time_shift, time_unshift, whole_number)
from .solvers import check_solver_name

FORMAT = "oss_fast.schedule/1"
MAX_FILE_BYTES = 16 << 20  # a schedule is kilobytes (a 10,000-step grid about 250 KB): room to spare, not a device
PARAMETERIZATIONS = ("flow", "ddpm")


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
    it was searched for and is sampled with (a name of oss_fast.solvers.SOLVERS).
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
                raise ValueError(f"timesteps must be >= 0 and strictly decreasing (the network's timestep at each "
                                 f"step, noise first), got {abbreviated(timesteps)}")
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
        self.sigmas = sigmas
        self.indices = indices
        self.grid = grid
        self.timesteps = timesteps
        self.parameterization = parameterization
        self.metadata = dict(metadata or {})
        self.solver = check_solver_name(solver)
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
        return cls(sigmas, _indices_of(grid, sigmas), grid, None, parameterization, metadata, solver)

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
        return self.replace(sigmas=sigmas, indices=_indices_of(self.grid, sigmas), timesteps=None, metadata=meta)

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

    def indices_on(self, grid) -> list[int] | None:
        """The schedule's grid indices when they are steps of `grid` (a model's fm_steps: flow times
        [N + 1]) -- its own grid is that grid or, recording none, its sigmas are the grid's at those
        indices -- else None (and for a schedule without indices). misfit says why not."""
        return None if self.misfit(grid) else self.indices

    def misfit(self, grid) -> str | None:
        """None when the schedule fits `grid` (indices_on), else one line: what disagrees, the grid,
        and how to carry the schedule onto it."""
        if self.indices is None:
            return ("this schedule has no grid indices (interpolated?): use schedule.snap(model.fm_steps), or export "
                    "it to diffusers")
        grid = np.array(_floats(grid, "grid"))
        if self.grid is not None:
            if len(self.grid) != len(grid) or not np.allclose(self.grid, grid, rtol=0, atol=1e-9):
                made_on = _grid_words(describe_grid(self.grid))
                return self._carry_over(grid, f"the schedule was made on a grid of {made_on}")
            return None
        top_down = self.indices[::-1]
        if top_down[0] >= len(grid):
            return self._carry_over(grid, f"the schedule's grid indices {self.indices} reach beyond the model's "
                                          f"{len(grid) - 1}-step grid")
        sigmas, at = np.array(self.sigmas[:-1]), grid[top_down]
        if not (np.abs(at - sigmas) <= 1e-6 * np.maximum(sigmas, 1.0)).all():
            return self._carry_over(grid, f"the schedule's sigmas {abbreviated(sigmas, 8)} are not the model grid's "
                                          f"at its indices {self.indices} ({abbreviated(at, 8)})")
        return None

    def _carry_over(self, grid, what: str) -> str:
        """One line: what disagrees, the model's grid, and how to carry the schedule onto it."""
        model = describe_grid(grid)
        N = model["teacher_steps"]
        hint = "schedule.snap(model.fm_steps) (the nearest grid points)"
        if self.parameterization == "flow" and self.dynamic_shift is None and model["kind"] != "custom":
            a = model.get("shift", 1.0)
            hint = (f"schedule.for_shift({a:g}, teacher_steps={N}) (`oss-fast export --shift {a:g}`: its flow times "
                    f"onto the model's grid) or {hint}")
        return f"{what}; the model's grid has {_grid_words(model)}: carry the schedule over with {hint}"

    # ------------------------------------------------------------------ transfer
    def for_shift(self, shift: float, teacher_steps: int | None = None) -> "Schedule":
        """The schedule for the same network on a teacher grid of another time shift (N steps, N the
        schedule's own unless teacher_steps is given). The network does not change with the grid, so
        the flow times carry over, snapped onto the new grid (docs/schedules.md, Other shifts and resolutions); a schedule without a
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
        transfer table in docs/quality.md measures it below for_shift -- but a deliberate move of the steps."""
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
    # the hand-off lives in integrations/diffusers.py (one function per method, documented there); the
    # methods stay for the users who call them on a schedule
    def scheduler_arguments(self, scheduler, mu: float | None = None) -> dict:
        """What to pass to scheduler.set_timesteps so that it lands on this schedule."""
        return _diffusers().scheduler_arguments(self, scheduler, mu)

    def to_diffusers(self, pipe_or_scheduler, *, mu: float | None = None, height: int | None = None,
                     width: int | None = None) -> dict:
        """Call arguments that make a pipeline sample exactly this Euler schedule: `pipe(**s.to_diffusers(pipe))`."""
        return _diffusers().to_diffusers(self, pipe_or_scheduler, mu=mu, height=height, width=width)

    def diffusers_export(self, strength: float | None = None) -> dict:
        """What a diffusers pipeline needs to sample this schedule, without the pipeline at hand."""
        return _diffusers().diffusers_export(self, strength)

    def runs_on(self, scheduler) -> bool:
        """Whether a diffusers scheduler runs this schedule's solver (its class and configuration)."""
        return _diffusers().runs_on(self, scheduler)

    def diffusers_scheduler(self, like=None):
        """A new diffusers scheduler that runs this schedule's solver."""
        return _diffusers().diffusers_scheduler(self, like)

    def install(self, scheduler, device=None) -> None:
        """Puts a scheduler, reset by its own set_timesteps, on exactly this schedule."""
        _diffusers().install(self, scheduler, device)

    def applied(self, pipe_or_scheduler):
        """Context manager: within `with schedule.applied(pipe):` the pipeline samples this schedule."""
        return _diffusers().applied(self, pipe_or_scheduler)

    def to_sigmas(self) -> torch.Tensor:
        """The sigmas as ComfyUI's SIGMAS and k-diffusion's samplers take them: descending flow times
        ending at 0 (float32). Sample with the schedule's solver: ComfyUI/k-diffusion 'euler' for euler,
        'lms' (order 2) for ab2."""
        return torch.from_numpy(exportable(self.sigmas, "these sigmas").astype(np.float32))


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
        raise ValueError(f"{cause}: the sigmas would be {abbreviated(a)}, {problem}")
    return a.tolist()


def exportable(values, what: str, upper: float = 1.0) -> np.ndarray:
    """A sigma list handed to a pipeline, ComfyUI or a file, as float64: checked by _representable
    (float32 included); ValueError naming `what` produced it otherwise."""
    _representable(values, f"{what} cannot be exported", upper, float32=True)
    return np.asarray(values, dtype=np.float64)


def _shift_cause(shift: float, what: str = "") -> str:
    return f"shift {shift:g}{what} is too {'large' if shift > 1 else 'small'} to represent these sigmas"


def abbreviated(values, shown: int = 6) -> str:
    """The first `shown` values, to 4 digits, for a message."""
    values = list(values)
    text = ", ".join(f"{float(v):.4g}" for v in values[:shown])
    return f"[{text}{', ...' if len(values) > shown else ''}]"


def _grid_words(description: dict) -> str:
    kind = description["kind"]
    shape = f"shifted by {description['shift']:g}" if kind == "shifted" else kind
    return f"{description['teacher_steps']} steps, {shape}"


def _indices_of(grid, sigmas) -> list[int] | None:
    """The grid indices of the nonzero sigmas (ascending) when every one lies on the grid, else None
    (what a schedule built from sigmas records; Schedule.indices_on checks recorded ones)."""
    if grid is None:
        return None
    found = [grid_index(grid, s) for s in sigmas[:-1]]
    return found[::-1] if all(i is not None for i in found) else None


def _grid_shift(description: dict) -> float | None:
    return {"uniform": 1.0, "shifted": description.get("shift")}.get(description["kind"])


def _refuse_constant(name: str):
    raise ValueError(f"NaN and Infinity are not schedule values (found {name})")


def _diffusers():
    """integrations/diffusers.py, imported when a diffusers method is first called: the one import of
    a higher layer here, allowed by name in tests/test_layout.py (a Schedule stays a value without it)."""
    from .integrations import diffusers

    return diffusers
