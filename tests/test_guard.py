"""The validation guard of the multistep default (engine/guard.py, DESIGN §3.5): its candidates are
the searches they say they are, its sampling is oss_fast.sample's, its judge keeps a searched
schedule only where the standard schedules are not measurably better, and it stays within the
published search's model rows."""

import warnings

import pytest
import torch

import oss_fast
from oss_fast import reference as ref
from oss_fast.engine import guard
from oss_fast.grid import shifted_steps, uniform_steps
from oss_fast.report import teacher_samples
from oss_fast.solvers import SOLVERS

from test_search import SHAPE, make

STANDARDS = ("uniform", "time-shifted (3)", "Euler search")


@pytest.mark.parametrize("solver", SOLVERS)
def test_paths_sampled_together_equal_oss_fast_sample_of_each(solver):
    model, _, cond = make("convnet", 30, 2.0, 3, seed=2)
    z = guard.fresh_noises(SHAPE, 5, 7, torch.float32, "cpu")
    samples = torch.arange(5) % 3  # noise v has the conditioning of search noise v % 3
    cond_rows = cond[samples]
    s = model.fm_steps.double()
    call = lambda x, grid, rows, where: model(x.reshape(-1, *SHAPE), grid, cond[rows]).reshape(x.shape[0], -1)
    paths = [[2, 9, 20, 30], [1, 5, 17, 29], [4, 10, 11, 30]]
    together = guard.sample_paths(call, z.reshape(5, -1), samples, s, paths, solver, True)
    for path, got in zip(paths, together):
        expected = oss_fast.sample(model, z, path, cond_rows, solver=solver).reshape(5, -1)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    teacher = guard.teacher_rollout(call, z.reshape(5, -1), samples, s, True)
    torch.testing.assert_close(teacher, teacher_samples(model, z, cond_rows).reshape(5, -1), rtol=0, atol=1e-6)


def planted(errors):
    """(samples [P, V, 1], teacher [V, 1]) whose per-noise squared errors are `errors` [P, V]
    (the teacher spans [0, 1]: PSNR = -10 log10(error))."""
    errors = torch.as_tensor(errors, dtype=torch.float64)
    V = errors.shape[1]
    teacher = torch.zeros(V, 1, dtype=torch.float64)
    teacher[0] = 1.0
    return teacher[None] + errors.sqrt()[..., None], teacher


def test_the_judge_keeps_a_searched_schedule_that_is_better_on_every_noise():
    base = torch.full((32,), 1e-3) * torch.linspace(1, 3, 32)
    samples, teacher = planted(torch.stack([base, base / 2, base * 4]))
    verdicts = guard.judge(["Euler search", "searched (joint)", "uniform"], [[1], [2], [3]], samples, teacher,
                           STANDARDS)
    assert verdicts[0].name == "searched (joint)" and verdicts[0].shortfall == 0
    assert verdicts[0].mean_psnr == pytest.approx(verdicts[1].mean_psnr + 10 * torch.log10(torch.tensor(2.0)).item())


def test_the_judge_refuses_a_mean_gain_bought_with_a_bad_tail():
    # the searched schedule halves the error on 28 of 32 noises and is 100 times worse on 4: its mean
    # PSNR is higher, its PSNR of the mean MSE and 10th percentile far lower
    base = torch.full((32,), 1e-3) * torch.linspace(1, 3, 32)
    searched = base / 2
    searched[::8] = base[::8] * 100
    samples, teacher = planted(torch.stack([base, searched]))
    verdicts = guard.judge(["Euler search", "searched (joint_rms)"], [[1], [2]], samples, teacher, STANDARDS)
    by = {v.name: v for v in verdicts}
    assert by["searched (joint_rms)"].mean_psnr > by["Euler search"].mean_psnr
    assert verdicts[0].name == "Euler search" and by["searched (joint_rms)"].shortfall > 5


def test_merged_names_and_the_aggregation_they_stand_for():
    assert guard.aggregate_of("searched (joint_rms)") == "joint_rms"
    assert guard.aggregate_of("Euler search = searched (joint)") == "median"
    assert guard.aggregate_of("uniform") == "fixed"


@pytest.mark.parametrize("solver", ["ab2", "unipc"])
def test_the_multistep_default_is_guarded_within_the_published_rows(solver):
    model, z, cond = make("convnet", 40, 2.0, 4, seed=3)
    res = oss_fast.search(model, z, cond, student_steps=4, solver=solver, progress=False)
    report = res.guard
    assert report is not None and res.schedule == report.verdicts[0].steps and res.steps == [res.schedule]
    st = res.stats
    assert st.teacher_rows + st.candidate_rows <= st.published_rows == 40 * 5 * 4
    names = [part for v in report.verdicts for part in v.name.split(" = ")]
    assert set(names) == {"Euler search", "searched (joint)", "searched (joint_rms)", "uniform", "time-shifted (3)"}
    steps = {part: v.steps for v in report.verdicts for part in v.name.split(" = ")}
    # the standards are what they say: the Euler default's schedule, uniform and time-shifted steps
    assert steps["Euler search"] == oss_fast.search(model, z, cond, student_steps=4, progress=False).schedule
    assert steps["uniform"] == uniform_steps(model.fm_steps, 4)
    assert steps["time-shifted (3)"] == shifted_steps(model.fm_steps, 4)
    # the validation's rows: the teacher on every fresh noise, every distinct candidate on every noise
    assert st.validation_rows == report.noises * (40 + 4 * len(report.verdicts))
    assert res.aggregate == guard.aggregate_of(report.chosen)


def test_the_guards_searches_are_the_refinement_begun_around_the_euler_schedule():
    model, z, cond = make("mixture", 40, 2.0, 3, seed=5)
    res = oss_fast.search(model, z, cond, student_steps=4, solver="dpmpp_2m", validate=1, max_batch=5, progress=False)
    steps = {part: v.steps for v in res.guard.verdicts for part in v.name.split(" = ")}
    for aggregate in ("joint", "joint_rms"):
        expected = ref.refined_search(model, z, cond, student_steps=4, aggregate=aggregate, solver="dpmpp_2m",
                                      stride=2, width=2, start=steps["Euler search"])
        assert steps[f"searched ({aggregate})"] == expected
    assert res.guard.noises == 1


def test_validate_options():
    model, z, cond = make("convnet", 30, 2.0, 3, seed=1)
    plain = oss_fast.search(model, z, cond, student_steps=4, solver="ab2", validate=False, progress=False)
    assert plain.guard is None and plain.aggregate == "joint_rms"
    assert plain.schedule == oss_fast.search(model, z, cond, student_steps=4, solver="ab2", aggregate="joint_rms",
                                             validate=False, progress=False).schedule
    assert oss_fast.search(model, z, cond, student_steps=4, solver="ab2", validate=5, progress=False).guard.noises == 5
    only_joint = oss_fast.search(model, z, cond, student_steps=4, solver="ab2", aggregate="joint", progress=False)
    assert not any("joint_rms" in v.name for v in only_joint.guard.verdicts)  # the aggregation asked for, alone
    assert oss_fast.search(model, z, cond, student_steps=4, progress=False).guard is None  # Euler: never by default
    assert oss_fast.search(model, z, cond, student_steps=4, solver="ab2", refine=False, progress=False).guard is None
    for bad, message in [(dict(validate=True), "multistep"), (dict(solver="ab2", validate=2.5), "validate"),
                         (dict(solver="ab2", validate=True, mode="teacher"), "multistep"),
                         (dict(solver="ab2", validate=True, aggregate="per_sample"), "one schedule")]:
        with pytest.raises(ValueError, match=message):
            oss_fast.search(model, z, cond, student_steps=4, progress=False, **bad)
    with pytest.raises(ValueError, match="not standard normal"):
        oss_fast.search(model, 5 * z, cond, student_steps=4, solver="ab2", validate=True, progress=False)
    with pytest.warns(UserWarning, match="not standard normal"):
        res = oss_fast.search(model, 5 * z, cond, student_steps=4, solver="ab2", progress=False)
    assert res.guard is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oss_fast.search(model, 5 * z, cond, student_steps=4, solver="ab2", validate=False, progress=False)


def test_a_guarded_search_resumes_after_the_teacher_to_the_same_verdicts(tmp_path):
    model, z, cond = make("convnet", 30, 2.0, 3, seed=6)
    first = oss_fast.search(model, z, cond, student_steps=4, solver="unipc", checkpoint=tmp_path / "c.pt",
                            progress=False)
    again = oss_fast.search(model, z, cond, student_steps=4, solver="unipc", checkpoint=tmp_path / "c.pt",
                            resume=True, progress=False)
    assert again.stats.resumed_from == "the teacher rollout"
    assert again.schedule == first.schedule and again.guard.verdicts == first.guard.verdicts


def test_the_validation_teacher_names_the_noise_whose_state_overflows():
    s = torch.linspace(0, 1, 11, dtype=torch.float64)
    z = torch.zeros(3, 4, dtype=torch.float16)
    z[2, 1] = 3e4  # noise 2 grows by 6e4 * 0.1 a step: past float16's 65,504 after 6 steps, at grid index 4
    push = lambda x, grid, samples, where: -torch.sign(x) * 6e4  # noqa: E731 - finite velocities, even at inf
    with pytest.raises(FloatingPointError, match=r"^the validation teacher's state overflowed to inf or NaN at grid "
                                                 r"index 4 for fresh noise 2 \(latent float16\): use float32 latents"):
        guard.teacher_rollout(push, z, torch.zeros(3, dtype=torch.long), s, True)
    assert torch.equal(guard.teacher_rollout(push, z.float(), torch.zeros(3, dtype=torch.long), s, True)[2, 1],
                       torch.tensor(3e4 + 6e4))
