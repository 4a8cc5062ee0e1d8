"""The diffusers hand-off of a Schedule: call arguments, schedulers and exports that make a diffusers
pipeline sample exactly a schedule's steps with its solver. Schedule's methods of the same names
(`schedule.to_diffusers(pipe)`, `schedule.applied(pipe)`, `schedule.diffusers_export()`, ...) call
these; the scheduler each solver maps to is data of the solver registry (oss_fast.solvers).

* schedulers with flow sigmas (FlowMatchEulerDiscreteScheduler: FLUX, SD3; UniPCMultistepScheduler
  with use_flow_sigmas: Wan) get the sigmas *before* the scheduler re-applies its shift, so that
  the scheduler ends at exactly the schedule's sigmas;
* DDPM-family models (DiT, parameterization "ddpm") map flow time s to the variance-exploding sigma
  s / (1 - s) for EulerDiscreteScheduler (Euler in that sigma is the same sampler as Euler in s), or
  to their network timesteps for schedulers taking `timesteps` (DDPM, DPM-Solver).

`to_diffusers(schedule, pipe)` returns the call arguments for pipelines that take them (FluxPipeline's
`sigmas`); `applied(schedule, pipe)` is a context manager for those that do not (WanPipeline,
DiTPipeline): inside it, the pipeline's scheduler sets the schedule's steps whatever step count it is
asked for. diffusers itself is imported only where a scheduler is built (diffusers_scheduler).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math

import numpy as np
import torch

from ..grid import (image_seq_len, mu_shift, positive_real, scheduler_mu, scheduler_shift, size_mu, size_shift,
                    time_unshift)
from ..schedule import abbreviated, exportable
from ..solvers import SOLVERS


def scheduler_arguments(schedule, scheduler, mu: float | None = None) -> dict:
    """What to pass to scheduler.set_timesteps so that it lands on the schedule (sigmas as a
    float64 numpy array: some schedulers do arithmetic on it directly)."""
    params = inspect.signature(scheduler.set_timesteps).parameters
    config = scheduler.config
    if schedule.parameterization == "flow":
        flow = "sigmas" in params and (type(scheduler).__name__.startswith("FlowMatch")
                                      or config.get("use_flow_sigmas", False))
        if not flow:
            raise ValueError(f"{type(scheduler).__name__} does not take flow sigmas; use a flow-matching "
                             "scheduler (FlowMatchEulerDiscreteScheduler, or UniPC with use_flow_sigmas)")
        for option in ("shift_terminal", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                       "invert_sigmas"):
            if config.get(option):
                raise ValueError(f"cannot land exactly on a schedule through {option}={config.get(option)}")
        sigmas = np.array(schedule.sigmas[:-1])
        if config.get("use_dynamic_shifting"):
            if mu is None:
                raise ValueError("the scheduler shifts by image size: give mu, or height and width")
            m = mu_shift(mu, config.get("time_shift_type", "exponential"))
            return dict(sigmas=exportable(time_unshift(sigmas, m), f"the scheduler's dynamic shift {m:g} (mu {mu:g})"),
                        mu=mu)
        shift = positive_real(scheduler_shift(config), f"the scheduler's shift ({type(scheduler).__name__})")
        return dict(sigmas=exportable(time_unshift(sigmas, shift), f"the scheduler's shift {shift:g}"))
    # ddpm
    if "sigmas" in params and hasattr(scheduler, "alphas_cumprod") and not config.get("use_flow_sigmas", False):
        with np.errstate(divide="ignore"):
            sigmas = np.array(schedule.sigmas)
            ve = sigmas / (1 - sigmas)  # variance-exploding sigma, final 0 included
        return dict(sigmas=exportable(ve, "the variance-exploding sigmas s / (1 - s)", upper=math.inf))
    if "timesteps" in params:
        if schedule.timesteps is None:
            raise ValueError("this schedule has no network timesteps (build it from a wrapper that knows them)")
        timesteps = [int(round(t)) for t in schedule.timesteps]
        if any(b >= a for a, b in zip(timesteps, timesteps[1:])):
            raise ValueError(f"the timesteps {abbreviated(schedule.timesteps)} collide once rounded to the network's "
                             f"integers ({abbreviated(timesteps)}): two steps would share one timestep")
        return dict(timesteps=timesteps)
    raise ValueError(f"{type(scheduler).__name__} takes neither sigmas nor timesteps")


def to_diffusers(schedule, pipe_or_scheduler, *, mu: float | None = None, height: int | None = None,
                 width: int | None = None) -> dict:
    """Call arguments that make a pipeline (or scheduler.set_timesteps) sample at exactly the
    schedule's sigmas: `pipe(prompt, **schedule.to_diffusers(pipe))`. Where the pipeline shifts
    sigmas by image size (FLUX-style dynamic shifting) the size belongs here, not in the pipeline
    call: the arguments then hold height and width, the size the sigmas were made for (a schedule
    that records its size -- searched through FluxWrapper.from_pipeline -- uses it and refuses
    another: use for_resolution; otherwise give height and width, or mu for a bare scheduler).
    Only Euler schedules go through call arguments; other solvers need `with schedule.applied(pipe)`,
    which also puts the pipeline on a scheduler that runs the solver."""
    scheduler = getattr(pipe_or_scheduler, "scheduler", pipe_or_scheduler)
    is_pipe = scheduler is not pipe_or_scheduler
    if is_pipe and schedule.solver != "euler":
        raise ValueError(f"a {schedule.solver} schedule needs `with schedule.applied(pipe): pipe(...)`: it switches "
                         f"the pipeline to {scheduler_spec(schedule)[0]} on the schedule's sigmas")
    size_args = {}
    if mu is None and scheduler.config.get("use_dynamic_shifting"):
        if schedule.size is not None:
            if (height or width) and [height, width] != schedule.size:
                raise ValueError(_other_size(schedule, height, width))
            height, width = schedule.size
        if height and width:
            factor = getattr(pipe_or_scheduler, "vae_scale_factor", 8)
            mu = scheduler_mu(scheduler.config, image_seq_len(height, width, factor))
            size_args = dict(height=height, width=width) if is_pipe else {}  # the size the sigmas are for
    args = scheduler_arguments(schedule, scheduler, mu)
    if not is_pipe:
        return args
    call = inspect.signature(pipe_or_scheduler.__call__).parameters
    missing = [name for name in args if name not in call and name != "mu"]
    if missing:
        raise ValueError(f"{type(pipe_or_scheduler).__name__} takes no {missing[0]!r}: use "
                         "`with schedule.applied(pipe): pipe(...)` instead")
    if not runs_on(schedule, scheduler):
        raise ValueError(f"{type(scheduler).__name__} does not run Euler on these sigmas: use "
                         "`with schedule.applied(pipe): pipe(...)`")
    args.pop("mu", None)  # the pipeline computes mu itself from height and width
    return dict(args, num_inference_steps=len(schedule), **size_args)


def diffusers_export(schedule, strength: float | None = None) -> dict:
    """What a diffusers pipeline needs to sample the schedule, without the pipeline at hand
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
    if schedule.solver != "euler" or schedule.parameterization != "flow":
        what = f"a {schedule.solver} schedule" if schedule.solver != "euler" else "a DDPM-family (DiT) schedule"
        raise ValueError(f"{what} cannot be handed to a diffusers pipeline as call arguments (its scheduler takes "
                         "no such sigmas); in Python: `with oss_fast.Schedule.load(FILE).applied(pipe): pipe(...)`")
    chosen = schedule if strength is None else schedule.for_denoise(strength)
    name, config = scheduler_spec(schedule)
    out = dict(scheduler=name, num_inference_steps=len(chosen))
    call = "sigmas=sigmas, num_inference_steps=num_inference_steps"
    if schedule.dynamic_shift is not None:  # the pipeline's own dynamic shift, at the recorded size
        shift = size_shift(schedule.dynamic_shift, schedule.size)
        out.update(scheduler_config=config, height=schedule.size[0], width=schedule.size[1],
                   mu=size_mu(schedule.dynamic_shift, schedule.size))
        call += ", height=height, width=width"
    else:  # a static shift, the recorded one (1 when unknown: the sigmas are then passed as they are)
        shift = schedule.shift or 1.0
        out["scheduler_config"] = dict(config, use_dynamic_shifting=False, shift=shift)
    setup = f"pipe.scheduler = diffusers.{name}.from_config(pipe.scheduler.config, **scheduler_config)"
    if strength is None:
        out["usage"] = (f"pipelines whose call takes sigmas (FLUX, SD3): {setup}; pipe(..., {call}); others (Wan): "
                        "with oss_fast.Schedule.load(FILE).applied(pipe): pipe(...)")
    else:
        out.update(strength=1.0, usage=(
            f"img2img pipelines (FluxImg2ImgPipeline, StableDiffusion3Img2ImgPipeline): {setup}; pipe(..., "
            f"image=image, strength=strength, {call}): strength 1.0 runs these sigmas, the last {len(chosen)} of "
            f"{len(schedule)} steps (for_denoise({strength:g})), from the image noised to the first"))
    return dict(out, sigmas=exportable(time_unshift(np.array(chosen.sigmas[:-1]), shift), f"shift {shift:g}").tolist())


def _other_size(schedule, height, width) -> str:
    h, w = schedule.size
    return (f"this schedule was searched at {h}x{w}; at {height}x{width} the pipeline shifts sigmas by "
            f"image size, so use schedule.for_resolution({height}, {width}) (moves the sigmas as the pipeline "
            "does) or search at that size")


def scheduler_spec(schedule) -> tuple[str, dict]:
    """(diffusers scheduler class name, the config entries that make it run the schedule's solver), from
    the solver registry; ValueError where diffusers has no such scheduler."""
    solver = SOLVERS[schedule.solver]
    if not solver.diffusers:
        article = "an" if solver.name[0] in "aeiou" else "a"
        elsewhere = (f", or in ComfyUI/k-diffusion with sampler {solver.kdiffusion!r} (order {solver.order}) on "
                     "schedule.to_sigmas()" if solver.kdiffusion else "")
        raise ValueError(f"diffusers has no {solver.method} scheduler on flow sigmas: sample {article} {solver.name} "
                         f"schedule with oss_fast.sample{elsewhere}")
    name, config = solver.diffusers[schedule.parameterization]
    return name, copy.deepcopy(config)  # the registry's entries stay as they are, whatever a scheduler does


def runs_on(schedule, scheduler) -> bool:
    """Whether a diffusers scheduler runs the schedule's solver (its class and configuration)."""
    name, config = scheduler_spec(schedule)
    return type(scheduler).__name__ == name and all(scheduler.config.get(k) == v for k, v in config.items())


def diffusers_scheduler(schedule, like=None):
    """A new diffusers scheduler that runs the schedule's solver, with the training schedule
    (num_train_timesteps, betas) of the scheduler `like` where given."""
    import diffusers

    name, config = scheduler_spec(schedule)
    base = {} if like is None else dict(like.config)
    keep = ("num_train_timesteps",) if schedule.parameterization == "flow" else (
        "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
    config = dict({k: base[k] for k in keep if base.get(k) is not None}, **config)
    if schedule.parameterization == "flow" and name != "FlowMatchEulerDiscreteScheduler":
        config["flow_shift"] = 1.0  # the schedule's sigmas are installed as they are
    return getattr(diffusers, name)(**config)


def install(schedule, scheduler, device=None) -> None:
    """Puts a scheduler, reset by its own set_timesteps, on exactly the schedule: its sigmas and
    the timesteps the network sees (flow: 1000 sigma as floats, as oss_fast's wrappers feed the
    network; DDPM family: the network timesteps)."""
    n_train = scheduler.config.get("num_train_timesteps", 1000)
    if schedule.parameterization == "flow":
        sigmas = np.array(schedule.sigmas, dtype=np.float64)
        if type(scheduler).__name__ == "UniPCMultistepScheduler" and abs(sigmas[0] - 1) < 1e-6:
            sigmas[0] -= 1e-6  # UniPC's own nudge away from log-SNR -inf
        timesteps = torch.tensor(sigmas[:-1] * n_train, dtype=torch.float32)
    else:
        if schedule.timesteps is None:
            raise ValueError("this schedule has no network timesteps (build it from a wrapper that knows them)")
        steps = [int(round(t)) for t in schedule.timesteps]
        acp = scheduler.alphas_cumprod[steps].double().numpy()
        sigmas = np.concatenate([((1 - acp) / acp) ** 0.5, [0.0]])
        timesteps = torch.tensor(steps, dtype=torch.int64)
    scheduler.sigmas = torch.from_numpy(sigmas.astype(np.float32))
    scheduler.timesteps = timesteps.to(device) if device is not None else timesteps
    scheduler.num_inference_steps = len(schedule)
    for attribute in ("_step_index", "_begin_index"):
        if hasattr(scheduler, attribute):
            setattr(scheduler, attribute, None)


@contextlib.contextmanager
def applied(schedule, pipe_or_scheduler):
    """Within the block, the pipeline samples the schedule with its solver: its scheduler is
    replaced by one that runs the solver (unless it already does) and, whatever step count it is
    asked for, lands on the schedule's sigmas. A bare scheduler is only put on the sigmas."""
    is_pipe = hasattr(pipe_or_scheduler, "scheduler")
    original_scheduler = pipe_or_scheduler.scheduler if is_pipe else pipe_or_scheduler
    scheduler = original_scheduler
    if is_pipe and not runs_on(schedule, scheduler):
        scheduler = diffusers_scheduler(schedule, like=original_scheduler)
        pipe_or_scheduler.scheduler = scheduler
    original = scheduler.set_timesteps

    @functools.wraps(original)  # keeps the signature pipelines inspect (e.g. for `sigmas`)
    def set_timesteps(num_inference_steps=None, device=None, **kwargs):
        reset = {"mu": kwargs.get("mu", 0.0)} if scheduler.config.get("use_dynamic_shifting") else {}
        if schedule.dynamic_shift is not None and "mu" in kwargs:  # a pipeline at another size: never silently
            (height, width), factor = schedule.size, schedule.dynamic_shift["vae_scale_factor"]
            expected = scheduler_mu(scheduler.config, image_seq_len(height, width, factor))
            if abs(kwargs["mu"] - expected) > 1e-9:
                raise ValueError(f"the pipeline runs at another image size than the {height}x{width} "
                                 f"this schedule was searched at (mu {kwargs['mu']:.4f}, not {expected:.4f}): "
                                 "use schedule.for_resolution(height, width) for that size")
        original(num_inference_steps=len(schedule), device=device, **reset)  # resets the step state
        install(schedule, scheduler, device)

    scheduler.set_timesteps = set_timesteps
    try:
        yield scheduler
    finally:
        del scheduler.set_timesteps  # back to the class's method
        if scheduler is not original_scheduler:
            pipe_or_scheduler.scheduler = original_scheduler
