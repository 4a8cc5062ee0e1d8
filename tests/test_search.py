"""The fast search (drop-ins and native API) against the plain reference: integer outputs equal."""

import numpy as np
import pytest
import torch

import oss_fast
from oss_fast import reference as ref
from oss_fast.engine.options import LOG_SNR_SOLVERS
from oss_fast.solvers import SOLVERS
from oss_fast.zoo import GaussianMixtureFlow

from models import TinyConvNet, full_search

SHAPE = (2, 4, 4)


def make(kind, N, shift, B, seed=0):
    """(model, z, cond) of a test problem: the Gaussian mixture, or a conv net with class labels."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, *SHAPE, generator=g)
    if kind == "mixture":
        model = GaussianMixtureFlow(shape=SHAPE, components=4, teacher_steps=N, shift=shift, seed=seed)
        return model, z, None
    model = TinyConvNet(channels=SHAPE[0], teacher_steps=N, shift=shift, seed=seed)
    return model, z, torch.randint(0, 10, (B,), generator=g)


def dropin_cases():
    for kind in ("mixture", "convnet"):
        for N in (7, 50):
            for K in (1, 5, 10):
                for B in (1, 4):
                    for shift in (1.0, 3.0):
                        yield kind, N, K, B, shift
    # N = 200 is slow in the reference (one batch-1 call and a Python loop per candidate): a few
    yield "mixture", 200, 10, 1, 3.0
    yield "convnet", 200, 5, 4, 1.0


@pytest.mark.parametrize("kind,N,K,B,shift", list(dropin_cases()))
def test_dropins_equal_reference(kind, N, K, B, shift):
    model, z, cond = make(kind, N, shift, B)
    expected = ref.search(model, z, cond, student_steps=K, mode="compat", float32=False)
    got = oss_fast.search_OSS(model, z, B, cond, "cpu", teacher_steps=N, student_steps=K)
    assert got == expected
    assert oss_fast.search_OSS_batch(model, z, B, cond, "cpu", teacher_steps=N, student_steps=K) == expected
    assert oss_fast.cal_medium(got) == ref.median(expected)
    x = oss_fast.infer_OSS(got[0], model, z, cond, "cpu")
    torch.testing.assert_close(x, ref.sample(model, z, got[0], cond), rtol=1e-5, atol=0)


@pytest.mark.parametrize("mode", ["compat", "exact", "teacher"])
@pytest.mark.parametrize("aggregate", ["per_sample", "median", "joint", "joint_rms"])
@pytest.mark.parametrize("kind", ["mixture", "convnet"])
def test_modes_and_aggregations_equal_reference(mode, aggregate, kind):
    model, z, cond = make(kind, 30, 2.0, 3, seed=1)
    for K in (1, 4, 30 if mode != "compat" else 29):  # compat needs K < N (drop-ins: any K)
        expected = ref.search(model, z, cond, student_steps=K, mode=mode, aggregate=aggregate)
        res = full_search(model, z, cond, student_steps=K, mode=mode, aggregate=aggregate, progress=False)
        assert (res.steps if aggregate == "per_sample" else res.schedule) == expected
        if aggregate == "median":
            assert res.schedule == ref.median(res.steps)


def test_joint_rms_weighs_samples_by_root_cost():
    from oss_fast.engine.aggregation import joint_cost

    # sample 0 prefers candidate 0 (errors 100 < 121), sample 1 candidate 1 (1 < 9): the mean cost
    # follows the larger errors (54.5 < 61), the mean root cost both (6.5**2 > 6**2)
    per_sample = torch.tensor([[100.0, 121.0], [9.0, 1.0]], dtype=torch.float64)
    assert joint_cost(per_sample, "joint").tolist() == [54.5, 61.0]
    assert joint_cost(per_sample, "joint_rms").tolist() == [42.25, 36.0]
    assert ref.group_cost([100.0, 9.0], "joint_rms") == 42.25
    # the teacher's Gram-form costs can round to just below zero: counted as zero, not NaN
    assert joint_cost(torch.tensor([[-1e-18], [4.0]], dtype=torch.float64), "joint_rms").tolist() == [1.0]


@pytest.mark.parametrize("objective", ["sum", "max"])
def test_teacher_objectives_equal_reference(objective):
    model, z, cond = make("mixture", 40, 3.0, 2)
    for aggregate in ("per_sample", "joint"):
        expected = ref.search(model, z, cond, student_steps=6, mode="teacher", aggregate=aggregate, objective=objective)
        res = full_search(model, z, cond, student_steps=6, mode="teacher", aggregate=aggregate,
                              objective=objective, progress=False)
        assert (res.steps if aggregate == "per_sample" else res.schedule) == expected


def test_exact_free_start_equals_reference():
    model, z, cond = make("convnet", 25, 1.0, 2)
    for aggregate in ("per_sample", "joint"):
        expected = ref.search(model, z, cond, student_steps=5, mode="exact", aggregate=aggregate, free_start=True)
        res = full_search(model, z, cond, student_steps=5, mode="exact", aggregate=aggregate, free_start=True,
                              progress=False)
        assert (res.steps if aggregate == "per_sample" else res.schedule) == expected


@pytest.mark.parametrize("norm", [1, 2])
def test_video_dropin_with_channel_and_frame_selection(norm):
    model = GaussianMixtureFlow(shape=(4, 7, 3, 3), components=3, teacher_steps=20, seed=2)
    z = model.noise(2, seed=3)
    for frames, channels in (("3", "2"), ("all", "all"), ("7", "1")):
        expected = ref.search(model, z, student_steps=4, mode="compat", norm=norm, channels=channels,
                              frames=frames)[0]
        got = oss_fast.search_OSS_video(model, z, 2, None, "cpu", teacher_steps=20, student_steps=4, norm=norm,
                                        frame_type=frames, channel_type=channels)
        assert got == expected


def test_random_channels_per_level_equal_reference():
    model = GaussianMixtureFlow(shape=(6, 4, 2, 2), components=3, teacher_steps=15, seed=4)
    z = model.noise(2, seed=5)
    for mode in ("compat", "exact"):
        expected = ref.search(model, z, student_steps=4, mode=mode, channels=3, random_channels=True, seed=9)
        res = full_search(model, z, student_steps=4, mode=mode, aggregate="per_sample", channels=3,
                              random_channels=True, seed=9, progress=False)
        assert res.steps == expected
    np.random.seed(0)
    a = oss_fast.search_OSS_video(model, z, 2, None, "cpu", 15, 4, channel_type="3", random_channel=True)
    np.random.seed(0)
    assert oss_fast.search_OSS_video(model, z, 2, None, "cpu", 15, 4, channel_type="3", random_channel=True) == a


@pytest.mark.parametrize("float32", [True, False])
def test_bfloat16_latents_equal_reference(float32):
    model, _, _ = make("mixture", 20, 2.0, 2)
    z = model.noise(2, seed=6, dtype=torch.bfloat16)
    for mode in ("compat", "exact"):
        expected = ref.search(model, z, student_steps=4, mode=mode, float32=float32)
        res = full_search(model, z, student_steps=4, mode=mode, aggregate="per_sample", float32=float32,
                              progress=False)
        assert res.steps == expected


def test_chunk_size_and_backend_do_not_change_the_answer(monkeypatch):
    model, z, cond = make("convnet", 40, 1.0, 3, seed=7)
    answers = set()
    for max_batch in (1, 3, 7, 200):
        res = full_search(model, z, cond, student_steps=6, mode="compat", aggregate="per_sample",
                              max_batch=max_batch, progress=False)
        answers.add(str(res.steps))
    monkeypatch.setenv("OSS_FAST_BACKEND", "torch")
    res = full_search(model, z, cond, student_steps=6, mode="compat", aggregate="per_sample", progress=False)
    assert res.stats.cost_backend == "torch"
    answers.add(str(res.steps))
    assert len(answers) == 1


def test_compat_skips_unchanged_candidates():
    model, z, cond = make("mixture", 50, 1.0, 4, seed=8)
    K = 10
    res = full_search(model, z, cond, student_steps=K, mode="compat", aggregate="per_sample", progress=False)
    assert res.stats.rows_per_level[0] == 4 * 50
    assert res.stats.candidate_rows / 4 < K * 50
    assert res.stats.teacher_calls == 50


class PerSampleScale:
    """Velocity of a mixture times a per-sample kwarg: wrong if kwargs do not follow the rows."""

    per_sample_kwargs = ("scale",)

    def __init__(self, N=12):
        self.inner = GaussianMixtureFlow(shape=SHAPE, components=3, teacher_steps=N, seed=3)
        self.fm_steps = self.inner.fm_steps

    def __call__(self, x, t, cond, kwargs):
        assert kwargs["scale"].shape[0] == x.shape[0]
        return self.inner(x, t) * kwargs["scale"][:, None, None, None] * kwargs["shared"]


def test_per_sample_kwargs_follow_the_rows():
    model = PerSampleScale()
    z = model.inner.noise(3, seed=1)
    kwargs = {"scale": torch.tensor([0.5, 1.0, 1.5]), "shared": 0.9}
    expected = ref.search(model, z, student_steps=3, mode="compat", model_kwargs=kwargs)
    res = full_search(model, z, student_steps=3, mode="compat", aggregate="per_sample", model_kwargs=kwargs,
                          max_batch=5, progress=False)
    assert res.steps == expected


# ----------------------------------------------------------------------------- bad inputs

class NoCalls:
    """A model on a given grid that fails the test if it is called at all."""

    def __init__(self, fm_steps, per_sample_kwargs=()):
        self.fm_steps = fm_steps
        self.per_sample_kwargs = per_sample_kwargs

    def __call__(self, x, t, cond, kwargs):
        raise AssertionError("no model call may happen before validation")


@pytest.mark.parametrize("kwargs,message", [
    (dict(student_steps=0), "student_steps must be an int"),
    (dict(student_steps=11, mode="exact"), r"student_steps \(11\) must not exceed teacher_steps \(10\)"),
    (dict(student_steps=11, mode="teacher"), r"student_steps \(11\) must not exceed"),
    (dict(student_steps=10), r"student_steps \(10\) must be below teacher_steps \(10\) in mode 'compat'"),
    (dict(student_steps=3, mode="fast"), "mode must be one of"),
    (dict(student_steps=3, mode="compat", aggregate="mean"), "aggregate must be one of"),
    (dict(student_steps=3, mode="teacher", objective="min"), "objective must be one of"),
    (dict(student_steps=3, norm=0), r"norm must be a p in \[1, 64\]"),
    (dict(student_steps=3, norm=0.5), r"norm must be a p in \[1, 64\]"),
    (dict(student_steps=3, norm=float("inf")), r"norm must be a p in \[1, 64\]"),
    (dict(student_steps=3, norm=float("nan")), r"norm must be a p in \[1, 64\]"),
    (dict(student_steps=3, norm="2"), r"norm must be a p in \[1, 64\]"),
    (dict(student_steps=10, mode="compat"), r"student_steps \(10\) must be below teacher_steps \(10\) in mode 'compat'"),
    (dict(student_steps=3, teacher_steps=5), r"teacher_steps \(5\) must equal the model's grid, 10 steps"),
    (dict(student_steps=3, resume=True), "resume=True needs checkpoint="),
    (dict(student_steps=3, process_group=object()), "torch.distributed is not initialised"),
    (dict(student_steps=3, mode="exact", checkpoint="/no/such/folder/x.ckpt"), "checkpoint folder /no/such/folder does not exist"),
    (dict(student_steps=3, mode="exact", checkpoint="/"), "exists and is not a regular file"),
    (dict(student_steps=3.0), "student_steps must be an int"),
    (dict(student_steps=3, teacher_steps=10.0), "teacher_steps must be an int"),
    (dict(student_steps=True), "student_steps must be an int"),
    (dict(student_steps=3, channels=9), r"channels must be an int \[1, 2\]"),
    (dict(student_steps=3, frames=2), "frames selects along dimension 2"),
    (dict(student_steps=3, max_batch=0), "max_batch must be an int"),
    (dict(student_steps=3, free_start=True, mode="compat"), "free_start applies to mode 'exact' only"),
    (dict(student_steps=3, teacher_steps=11), r"teacher_steps \(11\) must equal the model's grid"),
    (dict(student_steps=3, mode="auto"), "mode 'auto' is gone: the default is now mode 'compat' refined"),
    (dict(student_steps=3, random_channels=True), "random_channels needs channels"),
    (dict(student_steps=3, mode="teacher", refine=True), "refine applies to the native modes 'compat' and 'exact'"),
    (dict(student_steps=3, refine=1), "refine must be True or False"),
    (dict(student_steps=3, refine=False, stride=2), "stride, band and max_rows shape the refinement: they need refine=True"),
    (dict(student_steps=3, band=0), r"band must be an int \[1, 10\]"),
    (dict(student_steps=3, stride=11), r"stride must be an int \[1, 10\]"),
    # issue 19: messages that name the problem, before any model call
    (dict(student_steps=3, solver=["euler"]), r"solver must be one of \['ab2', 'dpmpp_2m', 'euler', 'unipc'\] \(a name\), "
                                              r"got \['euler'\]"),
    (dict(student_steps=3, seed=None), r"seed must be an int \[0, 9223372036854775807\], got None"),
    (dict(student_steps=3, seed=-1, channels=1, random_channels=True), r"seed must be an int \[0, .*\], got -1"),
    (dict(student_steps=3, seed=1.7), r"seed must be an int \[0, .*\], got 1.7"),
    (dict(student_steps=3, seed=1e30), r"seed must be an int \[0, .*\], got 1e\+30"),
    (dict(student_steps=3, seed=2**64), r"seed must be an int \[0, .*\], got 18446744073709551616"),
    (dict(student_steps=3, model_kwargs=[1, 2]), "model_kwargs must be a dict of further model inputs .*, got list"),
    (dict(student_steps=3, model_kwargs={1: 2}), "model_kwargs must be keyed by argument names .*, got the key 1"),
    (dict(student_steps=3, norm=1e308), r"norm must be a p in \[1, 64\] \(the cost is mean \|x - x_teacher\|\^p in float64"),
    (dict(student_steps=3, norm=65), r"norm must be a p in \[1, 64\]"),
    (dict(student_steps=3, mode="teacher", stride=2), "which mode 'teacher' does not do"),
    (dict(student_steps=3, mode="teacher", band=2), "which mode 'teacher' does not do"),
])
def test_bad_options_raise_before_any_model_call(kwargs, message):
    model = NoCalls(GaussianMixtureFlow(shape=SHAPE, teacher_steps=10).fm_steps)
    with pytest.raises(ValueError, match=message):
        oss_fast.search(model, torch.zeros(2, *SHAPE), **kwargs)


def test_bad_inputs_raise_before_any_model_call():
    grid = GaussianMixtureFlow(shape=SHAPE, teacher_steps=10).fm_steps
    z = torch.zeros(2, *SHAPE)
    with pytest.raises(ValueError, match="strictly increasing"):
        full_search(NoCalls(torch.tensor([0.0, 0.5, 0.4, 1.0])), z, student_steps=2)
    with pytest.raises(ValueError, match="must start at 0"):
        full_search(NoCalls(torch.tensor([0.1, 0.5, 1.0])), z, student_steps=1)
    with pytest.raises(ValueError, match="no fm_steps"):
        full_search(object(), z, student_steps=2)
    for steps in (None, "0 0.5 1", ["0", "1"], torch.tensor([0, 1j])):
        with pytest.raises(ValueError, match="model.fm_steps must be a 1-D tensor of real flow times"):
            full_search(NoCalls(steps), z, student_steps=1)
    with pytest.raises(ValueError, match="model.fm_steps is on the meta device"):
        full_search(NoCalls(grid.to("meta")), z, student_steps=1)
    with pytest.raises(ValueError, match="z is on the meta device"):
        full_search(NoCalls(grid), z.to("meta"), student_steps=1)
    with pytest.raises(ValueError, match="z holds NaN or inf"):
        full_search(NoCalls(grid), torch.full((2, *SHAPE), float("nan")), student_steps=2)
    with pytest.raises(ValueError, match="z must be a real floating-point tensor"):
        full_search(NoCalls(grid), torch.zeros(2, *SHAPE, dtype=torch.long), student_steps=2)
    with pytest.raises(ValueError, match=r"cond has 3 entries but the search batch is 2"):
        full_search(NoCalls(grid), z, torch.tensor([1, 2, 3]), student_steps=2)
    with pytest.raises(ValueError, match=r"batch_size \(3\) must equal z.shape\[0\] \(2\)"):
        oss_fast.search_OSS(NoCalls(grid), z, 3, None, "cpu", teacher_steps=10, student_steps=2)
    with pytest.raises(ValueError, match=r"model_kwargs\['scale'\] is per-sample: expected first dimension 2"):
        full_search(NoCalls(grid, per_sample_kwargs=("scale",)), z, student_steps=2,
                        model_kwargs={"scale": torch.ones(3), "shared": 1.0})


def test_a_strided_grid_gives_the_schedule_of_its_values():
    # the reproducer of issue 10: the same 21 values as a strided view changed the compiled paths' answer
    m = GaussianMixtureFlow(shape=(4, 8, 8), teacher_steps=20)
    z = m.noise(4, seed=0)
    dense = full_search(m, z, student_steps=5, mode="compat", aggregate="per_sample", progress=False).steps
    m.fm_steps = torch.linspace(0, 1, 41, dtype=torch.float64)[::2]
    assert not m.fm_steps.is_contiguous()
    strided = full_search(m, z, student_steps=5, mode="compat", aggregate="per_sample", progress=False).steps
    assert strided == dense == ref.search(m, z, student_steps=5, mode="compat")


def test_integer_or_complex_velocities_are_a_type_error():
    inner = GaussianMixtureFlow(shape=SHAPE, teacher_steps=10)
    for dtype in (torch.int64, torch.complex64):
        class Cast:
            fm_steps = inner.fm_steps

            def __call__(self, x, t, cond, kwargs):
                return inner(x, t).to(dtype)

        with pytest.raises(TypeError, match=f"returned {dtype} velocities"):
            full_search(Cast(), inner.noise(2), student_steps=3, progress=False)


def test_nan_from_the_model_names_level_and_grid_index():
    inner, z, _ = make("mixture", 10, 1.0, 2)

    class NanAt:
        fm_steps = inner.fm_steps

        def __init__(self, after_calls):
            self.calls, self.after = 0, after_calls

        def __call__(self, x, t, cond, kwargs):
            self.calls += 1
            v = inner(x, t)
            if self.calls > self.after:
                v[t == 7] = float("nan")
            return v

    with pytest.raises(FloatingPointError, match="teacher rollout at grid index 7"):
        full_search(NanAt(0), z, student_steps=2, progress=False)
    with pytest.raises(FloatingPointError, match="at level 0 at grid index 7"):
        full_search(NanAt(10), z, student_steps=2, mode="compat", progress=False)


class Pushed:
    """Velocity -6e4 sign(x) (plus a little of the mixture's, on x clamped): finite in float16, and
    finite even for an infinite x, while the state grows by 6e4 |ds| per step of a uniform grid."""

    def __init__(self):
        self.inner = GaussianMixtureFlow(shape=SHAPE, components=3, teacher_steps=10)
        self.fm_steps = self.inner.fm_steps

    def __call__(self, x, t, cond, kwargs):
        return (self.inner(x.float().clamp(-3e4, 3e4) / 3e4, t) * 100 - torch.sign(x) * 6e4).to(x.dtype)


@pytest.mark.parametrize("mode", ["compat", "exact", "teacher"])
def test_a_teacher_state_that_overflows_names_grid_index_and_sample(mode):
    model = Pushed()
    z = (model.inner.noise(2).clamp(-1, 1) * 3e4).half()  # sample 0 holds an entry of 3e4
    # 3e4 + 6 steps of 6e4 * 0.1 = 66,000 > 65,504, float16's largest: grid index 10 - 6 = 4
    # (before: "found a path with repeated grid indices", or "no path of K finite-cost jumps")
    with pytest.raises(FloatingPointError, match=r"^the teacher's state overflowed to inf or NaN at grid index 4 "
                                                 r"for sample 0 \(latent float16\): use float32 latents"):
        oss_fast.search(model, z, student_steps=3, mode=mode, progress=False)


@pytest.mark.parametrize("solver", LOG_SNR_SOLVERS)
def test_log_snr_solvers_need_a_grid_within_0_and_1(solver):
    grid = 2 * GaussianMixtureFlow(shape=SHAPE, teacher_steps=10).fm_steps
    # before: "found a path with repeated grid indices", or a schedule scored on NaN costs
    with pytest.raises(ValueError, match=r"solver '.*' steps in log-SNR log\(\(1 - s\) / s\), defined for flow "
                                         r"times s in \[0, 1\], but it would start at fm_steps\[10\] = 2"):
        oss_fast.search(NoCalls(grid), torch.zeros(2, *SHAPE), student_steps=3, solver=solver, validate=False)
    # sample shares the check, at the step it starts from (before: a NaN sample)
    with pytest.raises(ValueError, match=r"but it would start at fm_steps\[9\] = 1\.8"):
        oss_fast.sample(NoCalls(grid), torch.zeros(2, *SHAPE), [2, 9], solver=solver)


@pytest.mark.parametrize("solver", [name for name in SOLVERS if name not in LOG_SNR_SOLVERS])
def test_flow_time_solvers_run_on_a_grid_ending_above_1(solver):
    inner = GaussianMixtureFlow(shape=SHAPE, components=3, teacher_steps=10)

    class Doubled:
        fm_steps = 2 * inner.fm_steps

        def __call__(self, x, t, cond, kwargs):
            return inner(x, t) / 2

    z = inner.noise(2)
    res = full_search(Doubled(), z, student_steps=3, mode="exact", aggregate="per_sample", solver=solver,
                      validate=False, progress=False)
    assert res.steps == ref.search(Doubled(), z, student_steps=3, mode="exact", solver=solver)


# ----------------------------------------------------------------------------- GPU

@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["compat", "exact", "teacher"])
def test_search_on_gpu_equals_reference(mode):
    model = GaussianMixtureFlow(shape=(4, 16, 16), components=4, teacher_steps=60, shift=3.0, seed=1, device="cuda")
    z = model.noise(3, seed=2)
    expected = ref.search(model, z, student_steps=6, mode=mode, aggregate="per_sample")
    res = full_search(model, z, student_steps=6, mode=mode, aggregate="per_sample", progress=False)
    assert res.stats.cost_backend == "triton"
    assert res.steps == expected


@pytest.mark.cuda
def test_strided_grid_on_gpu_gives_the_reference_schedule():
    model = GaussianMixtureFlow(shape=(4, 8, 8), teacher_steps=20, device="cuda")
    z = model.noise(4, seed=0)
    model.fm_steps = torch.linspace(0, 1, 41, dtype=torch.float64, device="cuda")[::2]
    res = full_search(model, z, student_steps=5, mode="compat", aggregate="per_sample", progress=False)
    assert res.stats.cost_backend == "triton"
    assert res.steps == ref.search(model, z, student_steps=5, mode="compat")
