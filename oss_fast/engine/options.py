"""A search's options and their checks, all before the first model call (DESIGN §6)."""

from __future__ import annotations

import inspect
import math
import numbers
import operator
import warnings
from dataclasses import dataclass

import torch

from ..grid import SEED_MAX
from ..solvers import SOLVERS, check_solver_name
from .velocity import check_noise


@dataclass(frozen=True)
class SearchOptions:
    """Validated options of one search (see oss_fast.search for their meaning). Made only by
    check_options, whose signature is the one definition of the options a user gives and their
    defaults (OPTION_DEFAULTS); the fields hold them checked and resolved, so none has a default of its own."""

    student_steps: int
    teacher_steps: int
    mode: str
    aggregate: str  # resolved: the solver's default when none was given
    norm: float
    channels: object
    frames: object
    random_channels: bool
    seed: int
    float32: bool
    chunk: int  # max_batch, resolved
    free_start: bool
    objective: str
    progress: bool
    published: bool  # the drop-ins' indexing (see check_options)
    solver: str
    refine: bool  # modes compat/exact: coarse-to-fine (DESIGN §3.6) instead of the full search
    stride: int | None  # the coarse pass's stride (None: refine.default_stride)
    band: int | None  # the band passes' half-width in grid indices (None: the stride)
    max_rows: int | None  # refinement's model-row budget, teacher included (None: half the published)
    validate: bool  # the validation guard of the multistep default (engine/guard.py)
    validation_noises: int | None  # its fresh noises (None: as many as the published search's rows leave)
    aggregate_given: bool  # the caller chose the aggregation (the guard then searches with it alone)
    refine_rounds: int = 4  # band passes at most, re-centred until the path is stable (not an option)


MODES = ("compat", "exact", "teacher")
JOINT = ("joint", "joint_rms")  # one decision for all samples: on the mean cost, or the mean root cost
AGGREGATES = ("per_sample", "median") + JOINT
OBJECTIVES = ("sum", "max")
INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
# the largest p of the |x - x_teacher|^p cost: costs are float64, where |x|^p of errors between 1e-4
# and 1e4 stays within its normal range (1e-308 .. 1e308) for p <= 64 only; beyond, costs underflow
# to 0 or overflow to inf and the DP's choice among them is arbitrary
MAX_NORM = 64
# the solvers whose steps use the log-SNR of flow time (DESIGN §3.5: as diffusers runs them on flow
# sigmas), which exists on [0, 1] only; the others step in flow time itself, on any grid
LOG_SNR_SOLVERS = tuple(name for name, solver in SOLVERS.items() if solver.log_snr)


def check_solver_reaches(solver: str, s: torch.Tensor, start: int) -> None:
    """The solver can step from grid index `start` (the first, largest flow time it uses)."""
    if solver in LOG_SNR_SOLVERS and s[start] > 1:
        others = " or ".join(repr(name) for name in SOLVERS if name not in LOG_SNR_SOLVERS)
        raise ValueError(f"solver {solver!r} steps in log-SNR log((1 - s) / s), defined for flow times s in [0, 1], "
                         f"but it would start at fm_steps[{start}] = {s[start].item():.6g}: use a grid ending at 1 "
                         f"(fm_steps / fm_steps[-1]) or solver {others}")


def model_grid(model) -> torch.Tensor:
    """model.fm_steps as float64, checked: 1-D, at least two finite, strictly increasing entries."""
    if not hasattr(model, "fm_steps"):
        raise ValueError("the model has no fm_steps attribute (its time grid, fm_steps[0] = 0 ... fm_steps[N])")
    steps = model.fm_steps
    if isinstance(steps, torch.Tensor) and steps.device.type == "meta":
        raise ValueError("model.fm_steps is on the meta device (it holds no values): build the model's grid on the "
                         "CPU or a GPU")
    try:
        s = torch.as_tensor(steps)
    except (TypeError, ValueError, RuntimeError):
        s = None
    if s is None or not (s.is_floating_point() or s.dtype in INTEGER_DTYPES):
        raise ValueError(f"model.fm_steps must be a 1-D tensor of real flow times (fm_steps[0] = 0 ... fm_steps[N]), "
                         f"got {type(steps).__name__ if s is None else s.dtype}")
    s = s.detach().double().cpu()
    if s.dim() != 1 or s.numel() < 2:
        raise ValueError(f"model.fm_steps must be 1-D with at least 2 entries, got shape {tuple(s.shape)}")
    if not torch.isfinite(s).all():
        raise ValueError("model.fm_steps holds NaN or inf")
    if s[0] != 0:
        raise ValueError(f"model.fm_steps must start at 0 (the data end of the flow), got {s[0].item()}")
    if not (s[1:] > s[:-1]).all():
        bad = int((s[1:] <= s[:-1]).nonzero()[0, 0]) + 1
        raise ValueError(f"model.fm_steps must be strictly increasing; fm_steps[{bad}] = {s[bad].item()} "
                         f"<= fm_steps[{bad - 1}] = {s[bad - 1].item()}")
    return s


def _positive_int(name, value, low=1, high=None):
    """value as an int in [low, high]; integers of other types (numpy's) count, bools and floats do not."""
    bound = f"[{low}, {high}]" if high is not None else f">= {low}"
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return number


def _selection_count(name, value, size: int | None):
    if value == "all":
        return "all"
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    _positive_int(name, value, 1, size)
    return value


def check_options(model, z, *, student_steps, teacher_steps=None, mode="compat", aggregate=None, norm=2,
                  channels="all", frames="all", random_channels=False, seed=0, float32=True, max_batch=None,
                  free_start=False, objective="sum", progress=True, solver="euler", refine=None, stride=None,
                  band=None, max_rows=None, validate=None, published: bool = False) -> SearchOptions:
    """The checked options of a search. published=True is the drop-ins' contract: teacher_steps may
    be a prefix of the model's grid and compat may take K >= N, as the published code allows."""
    check_noise(z)  # as oss_fast.sample checks it
    s = model_grid(model)
    check_latent = getattr(model, "check_latent", None)
    if callable(check_latent):  # a model that knows its latent layout (the wrappers, the bundled models)
        check_latent(z)
    N_model = s.numel() - 1
    if published:
        N = N_model if teacher_steps is None else _positive_int("teacher_steps", teacher_steps, 1, N_model)
    else:
        N = N_model
        if teacher_steps is not None and _positive_int("teacher_steps", teacher_steps) != N_model:
            raise ValueError(f"teacher_steps ({teacher_steps!r}) must equal the model's grid, {N_model} steps "
                             f"(len(model.fm_steps) - 1); build the model on a {teacher_steps}-step grid instead")
    if mode == "auto":
        raise ValueError("mode 'auto' is gone: the default is now mode 'compat' refined coarse-to-fine at under half "
                         "the published search's model rows (README, Quality); pass mode='compat', 'exact' or 'teacher'")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_solver_name(solver)
    check_solver_reaches(solver, s, N)
    if mode == "teacher" and SOLVERS[solver].order > 2:
        # engine/pairs.py scores a step from the pair (previous index, current index): one earlier step
        raise ValueError(f"mode 'teacher' scores a {solver} step from the pair (previous grid index, current grid "
                         f"index), which holds one earlier step: it takes solvers of order 2 at most, and {solver!r} "
                         f"is of order {SOLVERS[solver].order}; use mode 'compat' or 'exact'")
    multistep = SOLVERS[solver].history > 0
    aggregate_given = aggregate is not None
    if aggregate is None:
        # multistep: one decision for all samples (the median's path was scored by no sample, whose
        # histories differ), on the mean RMS error: the mean MSE let one badly served search noise
        # steer the schedule (README, Quality with solvers)
        aggregate = "joint_rms" if multistep else "median"
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    K = _positive_int("student_steps", student_steps)
    if mode == "compat" and K >= N and not published:
        raise ValueError(f"student_steps ({K}) must be below teacher_steps ({N}) in mode 'compat': with K >= N "
                         "it returns repeated grid indices")
    if mode != "compat" and K > N:
        raise ValueError(f"student_steps ({K}) must not exceed teacher_steps ({N}) in mode {mode!r}: "
                         "a student of exactly K steps needs K grid jumps")
    if isinstance(norm, bool) or not isinstance(norm, numbers.Real) or not 1 <= norm <= MAX_NORM:
        raise ValueError(f"norm must be a p in [1, {MAX_NORM}] (the cost is mean |x - x_teacher|^p in float64, where "
                         f"errors between 1e-4 and 1e4 keep |x|^p representable only up to p = {MAX_NORM}; a larger p "
                         f"makes costs underflow to 0 or overflow to inf), got {norm!r}")
    if mode == "teacher" and multistep and norm != 2:
        raise ValueError(f"mode 'teacher' with solver {solver!r} computes squared errors from Gram matrices: "
                         f"norm must be 2, got {norm!r}")
    channels = _selection_count("channels", channels, z.shape[1])
    if frames != "all" and z.dim() != 5:
        raise ValueError(f"frames selects along dimension 2 of a video latent [B, C, F, H, W]; z has shape "
                         f"{tuple(z.shape)}")
    # more frames than F is allowed: linspace then repeats frames, as in the published code
    frames = _selection_count("frames", frames, None)
    if random_channels and channels == "all":
        raise ValueError("random_channels needs channels = n (how many to draw per level)")
    if free_start and mode != "exact":
        raise ValueError("free_start applies to mode 'exact' only")
    if refine is None:
        refine = not published and mode != "teacher"  # the drop-ins are the published search
    elif not isinstance(refine, bool):
        raise ValueError(f"refine must be True or False, got {refine!r}")
    elif refine and (published or mode == "teacher"):
        raise ValueError("refine applies to the native modes 'compat' and 'exact' (mode 'teacher' evaluates no "
                         "candidates; the drop-ins are the published full search)")
    if not refine and (stride is not None or band is not None or max_rows is not None):
        if mode == "teacher":
            raise ValueError("stride, band and max_rows shape the refinement, which mode 'teacher' does not do (it "
                             "evaluates no candidates): leave them out, or use mode 'compat' or 'exact'")
        if published:
            raise ValueError("stride, band and max_rows shape the refinement, which the drop-ins (the published full "
                             "search) do not do: leave them out, or use oss_fast.search")
        raise ValueError("stride, band and max_rows shape the refinement: they need refine=True")
    max_rows = None if max_rows is None else _positive_int("max_rows", max_rows)
    stride = None if stride is None else _positive_int("stride", stride, 1, N)
    band = None if band is None else _positive_int("band", band, 1, N)
    chunk = 32 if max_batch is None else _positive_int("max_batch", max_batch)
    seed = _positive_int("seed", seed, 0, SEED_MAX)
    validate, validation_noises = _validation(validate, multistep, refine, mode, aggregate, solver, z)
    return SearchOptions(student_steps=K, teacher_steps=N, mode=mode, aggregate=aggregate, norm=float(norm),
                         channels=channels, frames=frames, random_channels=bool(random_channels), seed=seed,
                         float32=bool(float32), chunk=chunk, free_start=bool(free_start), objective=objective,
                         progress=bool(progress), published=bool(published), solver=solver, refine=refine,
                         stride=stride, band=band, max_rows=max_rows, validate=validate,
                         validation_noises=validation_noises, aggregate_given=aggregate_given)



# a search's options and their defaults, as oss_fast.search and the drop-ins take them: check_options'
# keyword parameters (published is the drop-ins' switch, not an option)
OPTION_DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(check_options).parameters.items()
                   if parameter.kind is parameter.KEYWORD_ONLY and name != "published"}
OPTION_NAMES = tuple(OPTION_DEFAULTS)

def _validation(validate, multistep: bool, refine: bool, mode: str, aggregate: str, solver: str, z):
    """(guard on, its noise count or None for automatic) from the validate option: None is the
    default (on for the refined compat/exact searches of multistep solvers), True/False, or a count."""
    applies = multistep and refine and mode in ("compat", "exact") and aggregate != "per_sample"
    if validate is None:
        if applies and not _standard_normal(z):
            warnings.warn("z is not standard normal, so the validation guard of the multistep default (fresh "
                          "standard-normal noises) is off; pass validate=False to silence this", stacklevel=3)
            return False, None
        return applies, None
    if validate is False:
        return False, None
    count = None if validate is True else _positive_int("validate", validate)
    if not applies:
        raise ValueError(f"validate guards the refined compat/exact search of a multistep solver with one schedule "
                         f"for all noises; got solver {solver!r}, mode {mode!r}, refine={refine}, aggregate {aggregate!r}")
    if not _standard_normal(z):
        raise ValueError("validate draws fresh standard-normal noises like z, but z is not standard normal "
                         f"(mean {z.double().mean().item():.3g}, std {z.double().std().item():.3g}): pass validate=False")
    return True, count


def _standard_normal(z) -> bool:
    """Whether z looks like standard-normal noise (mean 0, std 1 within what its size allows)."""
    n = z.numel()
    if n < 2:
        return True
    z = z.double()
    tolerance = 5 / math.sqrt(n) + 0.02
    return abs(z.mean().item()) < tolerance + 0.05 and abs(z.std().item() - 1) < 2 * tolerance + 0.1
