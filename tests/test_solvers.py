"""Multistep solvers (DESIGN §3.5): the step rules against the samplers people run (diffusers'
schedulers, k-diffusion), and the solver-aware search against the plain reference."""

import diffusers
import numpy as np
import pytest
import torch
from diffusers import UniPCMultistepScheduler

import oss_fast
from oss_fast import reference as ref
from oss_fast.solvers import SOLVERS, Trajectory
from oss_fast.zoo import GaussianMixtureFlow

from kdiffusion import load_sampling
from models import TinyConvNet, full_search

SIGMAS = [
    [1.0, 0.8, 0.55, 0.3, 0.1, 0.0],           # from pure noise (log-SNR -inf at the start)
    [0.9, 0.6, 0.2, 0.0],
    [1.0, 0.5, 0.0],
    [0.97, 0.0],                                 # one step: first order only
    [1.0, 0.9, 0.7, 0.5, 0.35, 0.2, 0.1, 0.05, 0.0],
]
MULTISTEP = [name for name, solver in SOLVERS.items() if solver.history]
# (solver, the diffusers scheduler it maps to on flow sigmas) and (solver, its k-diffusion sampler)
DIFFUSERS = [(name, getattr(diffusers, solver.diffusers["flow"][0]))
             for name, solver in SOLVERS.items() if solver.history and solver.diffusers]
KDIFFUSION = [(name, solver.kdiffusion) for name, solver in SOLVERS.items() if solver.kdiffusion]
W = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3


def velocity(x, s):
    """A nonlinear velocity field, so that multistep corrections matter."""
    return torch.tanh(x @ W) * (1 + s) + 0.5 * x - s


def ours(solver, sigmas, x):
    trajectory = Trajectory(solver, x.clone(), sigmas[0], float32=False)
    for s, t in zip(sigmas, sigmas[1:]):
        trajectory.step(velocity(trajectory.x, s), t)
    return trajectory.x


def diffusers_loop(scheduler_cls, sigmas, x):
    scheduler = scheduler_cls(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=1.0)
    if scheduler_cls is UniPCMultistepScheduler:
        scheduler.set_timesteps(sigmas=np.array(sigmas[:-1]))
    else:  # DPMSolverMultistepScheduler takes no sigmas: they are set as schedule.applied does
        scheduler.set_timesteps(len(sigmas) - 1)
        scheduler.sigmas = torch.tensor(sigmas, dtype=torch.float64)
        scheduler.timesteps = torch.tensor(sigmas[:-1]) * 1000
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(velocity(x, float(scheduler.sigmas[i])), t, x).prev_sample
    return x


@pytest.mark.parametrize("sigmas", SIGMAS, ids=lambda s: f"{len(s) - 1}steps")
@pytest.mark.parametrize("solver,scheduler", DIFFUSERS)
def test_multistep_solvers_step_as_diffusers_schedulers_do(solver, scheduler, sigmas):
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = diffusers_loop(scheduler, sigmas, x)
    # diffusers keeps its sigmas and some coefficients in float32
    torch.testing.assert_close(ours(solver, sigmas, x), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(ours("euler", sigmas, x), expected, atol=1e-3) or len(sigmas) <= 3


@pytest.mark.parametrize("sigmas", SIGMAS, ids=lambda s: f"{len(s) - 1}steps")
@pytest.mark.parametrize("solver,sampler", KDIFFUSION)
def test_solvers_step_as_their_k_diffusion_samplers(solver, sampler, sigmas):
    k = load_sampling()
    if k is None:
        pytest.skip("k-diffusion is not installed (run.sh installs it)")
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    denoiser = lambda x, sigma: x - sigma[:, None] * velocity(x, float(sigma[0]))  # D(x, s) = x - s v on flow sigmas
    sig = torch.tensor(sigmas, dtype=torch.float64)
    extra = dict(order=SOLVERS[solver].order) if sampler == "lms" else {}
    torch.testing.assert_close(ours(solver, sigmas, x), getattr(k, f"sample_{sampler}")(
        denoiser, x.clone(), sig, disable=True, **extra), rtol=0, atol=1e-12)


def test_the_reference_names_the_registry_s_solvers():
    assert ref.SOLVERS == tuple(SOLVERS)  # the oracle keeps its own list


@pytest.mark.parametrize("solver", SOLVERS.values(), ids=lambda solver: solver.name)
def test_every_registered_solver_steps_its_history(solver):
    M = solver.matrix(torch.tensor([0.9, 0.5]), torch.tensor([0.5, 0.0]), 1.0, 1.0, torch.tensor([0, 2]))
    assert M.shape == (2, 1 + solver.history, 2 + solver.history)


def test_reference_solver_steps_agree_with_the_matrices():
    # the reference keeps histories the samplers' way (past data predictions, UniPC's corrected
    # sample); the package's matrices are a different bookkeeping of the same arithmetic
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for solver in SOLVERS:
        for sigmas in SIGMAS:
            state = ref.start_state(x, sigmas[0])
            for s, t in zip(sigmas, sigmas[1:]):
                state = ref.solver_step(solver, state, velocity(state["x"], s), t)
            torch.testing.assert_close(state["x"], ours(solver, sigmas, x), rtol=0, atol=1e-12)


def make(kind, N, B, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, 2, 4, 4, generator=g)
    if kind == "mixture":
        return GaussianMixtureFlow(shape=(2, 4, 4), components=4, teacher_steps=N, shift=2.0, seed=seed), z, None
    return TinyConvNet(channels=2, teacher_steps=N, seed=seed), z, torch.randint(0, 10, (B,), generator=g)


@pytest.mark.parametrize("solver", MULTISTEP)
@pytest.mark.parametrize("mode", ["compat", "exact"])
@pytest.mark.parametrize("aggregate", ["per_sample", "median", "joint", "joint_rms"])
@pytest.mark.parametrize("kind", ["mixture", "convnet"])
def test_solver_search_equals_reference(solver, mode, aggregate, kind):
    model, z, cond = make(kind, 12, 3, seed=1)
    for K in (1, 4, 11):
        expected = ref.search(model, z, cond, student_steps=K, mode=mode, aggregate=aggregate, solver=solver)
        search = lambda: full_search(model, z, cond, student_steps=K, mode=mode, aggregate=aggregate,
                                         solver=solver, max_batch=7, progress=False)
        traced = expected if aggregate == "per_sample" else [expected]
        if any(len(set(path)) < K for path in traced):  # compat's trace reached the noise early
            with pytest.raises(ValueError, match="repeated grid indices"):
                search()
            continue
        res = search()
        assert (res.steps if aggregate == "per_sample" else res.schedule) == expected, (K, solver)
        assert res.solver == solver


@pytest.mark.parametrize("solver", MULTISTEP)
def test_recorded_cost_is_the_error_of_sampling_along_the_path(solver):
    model = GaussianMixtureFlow(shape=(2, 4, 4), components=4, teacher_steps=20, shift=3.0, seed=4)
    z = model.noise(3, seed=5, dtype=torch.float64)
    res = full_search(model, z, student_steps=5, mode="exact", aggregate="per_sample", solver=solver,
                          float32=False, progress=False)
    teacher = oss_fast.sample(model, z, list(range(1, 21)), float32=False)
    for b, (path, cost) in enumerate(zip(res.steps, res.costs)):
        x = oss_fast.sample(model, z[b:b + 1], path, solver=solver, float32=False)
        error = float(((x.float() - teacher[b:b + 1].float()).double() ** 2).mean())
        assert cost == pytest.approx(error, rel=1e-12, abs=0)


def test_model_rows_are_those_of_the_euler_search():
    model, z, cond = make("convnet", 30, 4, seed=2)
    euler = full_search(model, z, cond, student_steps=6, mode="exact", aggregate="joint", progress=False)
    for solver in MULTISTEP:
        res = full_search(model, z, cond, student_steps=6, mode="exact", solver=solver, progress=False)
        assert res.aggregate == "joint_rms"  # the default for multistep solvers
        assert res.stats.candidate_rows == euler.stats.candidate_rows


def test_unknown_solver_is_refused_before_any_model_call():
    model = GaussianMixtureFlow(shape=(2, 4, 4), teacher_steps=10)
    with pytest.raises(ValueError, match="solver must be one of"):
        full_search(model, model.noise(2), student_steps=3, solver="heun")
    with pytest.raises(ValueError, match="solver must be one of"):
        oss_fast.sample(model, model.noise(2), [3, 10], solver="rk4")


@pytest.mark.parametrize("solver", MULTISTEP)
@pytest.mark.parametrize("aggregate,objective", [("per_sample", "sum"), ("joint", "sum"), ("median", "max"),
                                                 ("joint", "max"), ("joint_rms", "sum")])
def test_teacher_mode_pair_dp_equals_reference(solver, aggregate, objective):
    model = GaussianMixtureFlow(shape=(2, 4, 4), components=4, teacher_steps=10, shift=2.0, seed=1)
    z = model.noise(3, seed=2, dtype=torch.float64)  # float64: the Gram form rounds nothing
    expected = ref.search(model, z, student_steps=4, mode="teacher", aggregate=aggregate, solver=solver,
                          objective=objective)
    res = full_search(model, z, student_steps=4, mode="teacher", aggregate=aggregate, solver=solver,
                          objective=objective, progress=False)
    assert (res.steps if aggregate == "per_sample" else res.schedule) == expected
    assert res.stats.candidate_rows == 0  # the teacher's calls only


def test_teacher_mode_pair_costs_equal_the_reference_jump_errors():
    from oss_fast.engine import pairs
    from oss_fast.solvers import get_solver

    model = GaussianMixtureFlow(shape=(2, 4, 4), components=4, teacher_steps=7, shift=2.0, seed=3)
    z = model.noise(2, seed=4, dtype=torch.float64)
    T, V = ref.teacher(model, z, float32=False)
    s = ref.grid(model)
    V[0] = torch.zeros_like(V[1])
    Tt, Vt = torch.stack(T).reshape(8, 2, -1), torch.stack(V).reshape(8, 2, -1)
    for solver in ("ab2", "unipc"):
        C = pairs.pair_costs(pairs.gram(Tt, Vt), torch.tensor(s, dtype=torch.float64), get_solver(solver), 32)
        expected = ref._teacher_pair_costs(T, V, s, 1, solver)
        for (p, j, i), c in expected.items():
            assert float(C[1, 8 if p is None else p, j, i]) == pytest.approx(c, rel=1e-9, abs=1e-15)


def test_teacher_mode_with_a_multistep_solver_needs_the_squared_error():
    model = GaussianMixtureFlow(shape=(2, 4, 4), teacher_steps=10)
    with pytest.raises(ValueError, match="norm must be 2"):
        full_search(model, model.noise(2), student_steps=3, mode="teacher", solver="ab2", norm=1)


@pytest.mark.parametrize("solver,sampler", KDIFFUSION)
def test_to_sigmas_drives_k_diffusion_samplers_to_oss_fast_samples(solver, sampler):
    k = load_sampling()
    if k is None:
        pytest.skip("k-diffusion is not installed (run.sh installs it)")
    model = GaussianMixtureFlow(shape=(2, 4, 4), components=3, teacher_steps=30, shift=3.0, seed=6)
    schedule = oss_fast.Schedule.from_indices([4, 11, 19, 30], model, solver=solver)
    grid = model.fm_steps

    def denoiser(x, sigma):  # ComfyUI's flow models: D(x, s) = x - s v(x, s), at the schedule's grid points
        i = int(torch.argmin((grid - float(sigma[0])).abs()))
        return x - sigma[:, None, None, None].to(x.dtype) * model(x, torch.full((x.shape[0],), i), None, {})

    z = model.noise(3, seed=7, dtype=torch.float64)
    extra = dict(order=SOLVERS[solver].order) if sampler == "lms" else {}
    got = getattr(k, f"sample_{sampler}")(denoiser, z.clone(), schedule.to_sigmas().double(), disable=True, **extra)
    expected = oss_fast.sample(model, z, schedule, float32=False)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("solver", MULTISTEP)
@pytest.mark.parametrize("mode", ["compat", "exact"])
def test_solver_search_on_gpu_equals_reference(solver, mode):
    model = GaussianMixtureFlow(shape=(4, 16, 16), components=4, teacher_steps=30, shift=3.0, seed=1, device="cuda")
    z = model.noise(3, seed=2)
    expected = ref.search(model, z, student_steps=5, mode=mode, aggregate="joint", solver=solver)
    res = full_search(model, z, student_steps=5, mode=mode, aggregate="joint", solver=solver, progress=False)
    assert res.stats.cost_backend == "triton"
    assert res.schedule == expected
