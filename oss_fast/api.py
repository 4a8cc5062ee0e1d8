"""The native API: `search` for a schedule, `sample` along one."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .engine.checkpoint import Checkpoint, check_checkpoint_path, fingerprint
from .engine.distributed import Comm, distributed_ready
from .engine.guard import GuardReport
from .engine.inputs import SampleInputs
from .engine.options import OPTION_NAMES, check_options, check_solver_reaches, model_grid
from .engine.search import Engine
from .engine.stats import SearchStats
from .engine.velocity import check_noise, check_velocity, first_non_finite
from .grid import index_list
from .schedule import Schedule
from .solvers import Trajectory, get_solver


@dataclass
class SearchResult:
    """steps: one list of K grid indices per sample (ascending; the last is where sampling
    starts), or [schedule] for a joint aggregate. schedule: the aggregated list (median or joint),
    None for aggregate="per_sample". stats: model calls, time per phase, peak memory."""

    steps: list
    schedule: list | None
    stats: SearchStats
    mode: str  # the mode that produced the steps
    aggregate: str
    teacher_steps: int
    solver: str = "euler"  # the sampler the schedule was searched for
    # per entry of steps: the cost the DP recorded for reaching grid index 0 (mode exact: the
    # error of sampling along that path on its noises; compat: a trace can differ from it; teacher:
    # the path objective)
    costs: list | None = None
    # the validation guard of the multistep default (engine/guard.py): the candidate kept, the fresh
    # noises, every candidate's PSNRs on them; None when it did not run
    guard: GuardReport | None = None


@torch.no_grad()
def search(model, z: torch.Tensor, cond=None, *, student_steps: int, teacher_steps: int | None = None,
           mode: str = "compat", aggregate: str | None = None, norm: float = 2, channels="all", frames="all",
           random_channels: bool = False, seed: int = 0, float32: bool = True, max_batch: int | None = None,
           model_kwargs: dict | None = None, per_sample_kwargs=None, free_start: bool = False,
           objective: str = "sum", progress: bool = True, checkpoint=None, resume: bool = False,
           process_group=None, solver: str = "euler", refine: bool | None = None, stride: int | None = None,
           band: int | None = None, max_rows: int | None = None, validate=None) -> SearchResult:
    """Find the K grid indices a K-step student with the given solver should visit (DESIGN §3, §3.5).

    model: a velocity model `model(x, t, cond, kwargs)` with `model.fm_steps` (DESIGN §2); optionally
        `check_latent(z)`, which raises ValueError for latents that do not fit it (called on z before
        any model call; the wrappers check rank, channels and patch sizes against their network's
        config), and `fingerprint` (see checkpoint).
    Before the first model call the search also estimates its own buffers from the sizes and refuses
    in one line a search that cannot fit in the memory free on z's device (engine/memory.py).
    z: initial noises [B, ...]; cond: per-sample conditioning (first dimension B) or shared.
    student_steps: K, the steps of the schedule. teacher_steps: N, the model's grid (len(model.fm_steps) - 1,
        the default; another value is refused: build the model on that grid).
    mode: "compat" (the default: the DP of the published search_OSS), "exact" (the paper's
        Algorithm 1) or "teacher" (shortest path over the teacher's own jumps: no extra model calls).
    refine: modes compat/exact, True by default (DESIGN §3.6): a pass of the DP on every stride-th
        grid index, then passes confined to within `band` indices of the last path, re-centred until
        it is stable, no state evaluated twice; the band passes stop before the model rows, teacher
        included, pass max_rows (default half the published search's N (K + 1) per sample).
        Measured within 0.2 dB of the full search on digits and the mixture, 0.6 dB on patches (README, Quality);
        refine=False is the full search. stride: default N / 25 (capped so that K jumps fit twice);
        band: default the stride.
    aggregate: "per_sample", "median" (published cal_medium rule), "joint" (one decision per
        level and grid index minimising the mean cost over samples) or "joint_rms" (the same on the
        mean root cost: the mean RMS error for norm 2, which one badly served noise steers less);
        default "median" for Euler, "joint_rms" for multistep solvers.
    norm: p of the |.|^p cost. channels / frames: "all" or how many to compare (frames: dimension 2
        of [B, C, F, H, W]); random_channels draws the channels anew each level (seeded by seed).
    float32: do the Euler update in float32 whatever the latent dtype.
    max_batch: rows per model call (default 32); rows of all samples and grid indices share calls.
    model_kwargs: further model inputs; per_sample_kwargs names those that follow the samples
        (default: the model's `per_sample_kwargs`, else any tensor or list of length B).
    free_start: mode exact only: the noise may enter at any grid index at level 0, as in compat.
    objective: mode teacher's path objective, "sum" or "max" of the jump costs.
    progress: progress bars on long phases (rank 0 only).
    checkpoint: a file the search state is written to (atomically) after the teacher rollout and,
        for the full search (refine=False), after each level (a refined search resumes after the
        teacher: its passes cost about as much as the teacher); with resume=True a search continues from it (or starts afresh if it does
        not exist yet) and a checkpoint from other inputs or options is refused. An existing file
        that is not an oss_fast checkpoint is refused, never overwritten. The checkpoint knows the
        inputs by the bytes of every tensor and array in z, cond and model_kwargs (and plain values
        by type; other objects are refused, before any model call), and the model by its
        `fingerprint` attribute: what determines its output beyond the grid (weights or the
        arguments that made them, guidance, dtype), a string or tensors and plain values in lists
        and dicts. Bundled models and wrappers have one; a model without one is known only by its
        `name` or class, so give a custom model a fingerprint (engine/checkpoint.py).
    process_group: with torch.distributed initialised (e.g. under torchrun), the model calls are
        shared by the ranks of this group (default: the world); every rank returns the same result.
    solver: the sampler the schedule is for, a name of the registry oss_fast.solvers.SOLVERS: "euler"
        (the published search), or a multistep solver "ab2" (k-diffusion/ComfyUI lms at order 2),
        "dpmpp_2m" or "unipc" (as diffusers runs them on flow sigmas). A state carries the solver history of the predecessor that reached it, so the
        model calls are those of the Euler search.
    validate: the guard of the multistep default (on by default for multistep solvers with
        refinement; False turns it off, an int sets its number of fresh noises): the Euler search's
        schedule, the solver's refined searches begun around it (aggregations joint and joint_rms, or
        the one asked for) and the grid's uniform and time-shifted steps are sampled with the solver
        from fresh standard-normal noises (seed + 1,000,000; the conditioning of the search noises in
        turn), and the one that is not measurably below the standard ones on mean PSNR, PSNR of the
        mean MSE or 10th-percentile PSNR, and best overall, is returned (result.guard says which, and
        how each did). All of it within the published search's model rows N (K + 1) B.
    """
    given = locals()  # check_options defines the options; tests/test_options.py holds this signature to it
    opts = check_options(model, z, **{name: given[name] for name in OPTION_NAMES})
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint= (the file to resume from)")
    if checkpoint is not None:
        check_checkpoint_path(checkpoint)
    if process_group is not None and not distributed_ready():
        raise ValueError("process_group given but torch.distributed is not initialised "
                         "(call torch.distributed.init_process_group first, e.g. under torchrun)")
    return _execute(model, z, cond, opts, model_kwargs, per_sample_kwargs, checkpoint, resume, process_group)


@torch.no_grad()
def published_search(model, z: torch.Tensor, cond=None, *, model_kwargs: dict | None = None, **options) -> SearchResult:
    """The drop-ins' search: as `search`, with the published code's indexing (teacher_steps may be a
    prefix of the model's grid; compat may take K >= N and then repeats grid indices)."""
    return _execute(model, z, cond, check_options(model, z, published=True, **options), model_kwargs)


def _execute(model, z, cond, opts, model_kwargs, per_sample_kwargs=None, checkpoint=None, resume=False,
             process_group=None) -> SearchResult:
    if per_sample_kwargs is None:
        per_sample_kwargs = getattr(model, "per_sample_kwargs", None)
    inputs = SampleInputs(cond, model_kwargs, z.shape[0], per_sample_kwargs)
    comm = Comm(process_group)
    saver = None
    if checkpoint is not None:
        key = fingerprint(model, z, cond, model_kwargs, model_grid(model), opts)
        saver = Checkpoint(checkpoint, key, write=comm.rank == 0)
    engine = Engine(model, z, inputs, opts, comm, saver, resume)
    paths, costs, schedule, mode, aggregate, stats = engine.run()
    return SearchResult(steps=paths, schedule=schedule, stats=stats, mode=mode, aggregate=aggregate,
                        teacher_steps=opts.teacher_steps, solver=opts.solver, costs=costs, guard=engine.guard_report)


def schedule_steps(schedule: Schedule, grid: torch.Tensor) -> list[int]:
    """The grid indices of a Schedule, checked against the model's grid (float64 [N + 1]): the
    schedule's own grid must be it; a schedule that records indices but no grid must have its sigmas
    at those indices of the model's grid (Schedule.misfit says which fails, and how to carry it over)."""
    problem = schedule.misfit(grid)
    if problem is not None:
        raise ValueError(problem)
    return schedule.indices


def _checked_steps(steps, N: int, repeats: bool) -> list[int]:
    """steps as grid indices in [1, N], strictly ascending (non-decreasing where repeats are allowed)."""
    steps = index_list(steps, "steps")
    if not steps or steps[0] < 1 or steps[-1] > N:
        raise ValueError(f"steps must be grid indices in [1, {N}], got {steps}")
    if any(b < a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"steps must be ascending grid indices (as a search returns them), got {steps}")
    if not repeats and any(b == a for a, b in zip(steps, steps[1:])):
        repeated = next(a for a, b in zip(steps, steps[1:]) if a == b)
        raise ValueError(f"steps repeat grid index {repeated} ({steps}): a repeated index is a zero-length step "
                         "(multistep solvers divide by it); give distinct ascending grid indices")
    return steps


@torch.no_grad()
def sample(model, z: torch.Tensor, steps, cond=None, *, solver: str | None = None, float32: bool = True,
           model_kwargs: dict | None = None, max_amp=None, min_amp=None) -> torch.Tensor:
    """The solver from the noise z along [0] + steps, last index first (DESIGN §3.4, §3.5).

    steps: distinct grid indices in [1, N], ascending (as a search returns them; each an integer:
        Python or numpy ints, not floats or strings), or a Schedule made on the model's grid.
    solver: a name of oss_fast.solvers.SOLVERS (default: the Schedule's solver, else "euler").
    With max_amp/min_amp (sequences indexed by grid index - 1), each sample's 5% and 95% quantiles
    are mapped affinely onto min_amp[i-1], max_amp[i-1] before the call at grid index i.
    The inputs are checked as the search checks them (engine/velocity.py): z a finite real floating
    tensor [B, ...], and every velocity a finite real floating tensor of z's exact shape; a step whose
    velocity fails is named.
    """
    return _sample(model, z, steps, cond, solver, float32, model_kwargs, max_amp, min_amp, repeats=False)


@torch.no_grad()
def published_sample(model, z: torch.Tensor, steps, cond=None, *, solver: str | None = None, float32: bool = True,
                     model_kwargs: dict | None = None, max_amp=None, min_amp=None) -> torch.Tensor:
    """The drop-ins' sampling (infer_OSS): as `sample`, except that steps may repeat a grid index, as
    the published compat search returns them for K >= N (a zero-length step)."""
    return _sample(model, z, steps, cond, solver, float32, model_kwargs, max_amp, min_amp, repeats=True)


def _sample(model, z, steps, cond, solver, float32, model_kwargs, max_amp, min_amp, repeats: bool) -> torch.Tensor:
    check_noise(z)
    s = model_grid(model)
    if isinstance(steps, Schedule):
        solver = solver or steps.solver
        steps = schedule_steps(steps, s)
    solver = get_solver(solver or "euler")
    steps = _checked_steps(steps, s.numel() - 1, repeats)
    check_solver_reaches(solver.name, s, steps[-1])
    if (max_amp is None) != (min_amp is None):
        raise ValueError("give both max_amp and min_amp, or neither")
    B = z.shape[0]
    inputs = SampleInputs(cond, model_kwargs, B)
    cond, kwargs = inputs.rows(torch.arange(B, device=z.device))
    s = s.to(z.device)
    path = [0] + steps
    K = len(steps)
    trajectory = Trajectory(solver, z, s[path[-1]], float32)
    x = z
    for n in range(K, 0, -1):
        i, j = path[n], path[n - 1]
        step = f"at step {K - n + 1} of {K} (grid index {i}"
        if max_amp is not None:
            flat = x.reshape(B, -1)
            hi = torch.quantile(flat, 0.95, dim=1)
            lo = torch.quantile(flat, 0.05, dim=1)
            scale = (max_amp[i - 1] - min_amp[i - 1]) / (hi - lo)
            shift = min_amp[i - 1] - scale * lo
            view = (B,) + (1,) * (x.dim() - 1)
            x = trajectory.x = scale.reshape(view) * x + shift.reshape(view)
        v = model(x, torch.full((B,), i, dtype=torch.long, device=z.device), cond, kwargs)
        check_velocity(v, x.shape, lambda: step + ")")
        bad = first_non_finite(v)
        if bad is not None:
            raise FloatingPointError(f"the model returned NaN or inf {step}, sample {bad})")
        x = trajectory.step(v, s[j])
    return x
