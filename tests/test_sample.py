"""oss_fast.sample checks its inputs as the search does (engine/velocity.py): noises, every velocity
(named by its step), the steps (operator.index, strictly ascending, on the grid), and a schedule's
own sigmas against the model's grid."""

import math

import numpy as np
import pytest
import torch

import oss_fast
from oss_fast import Schedule
from oss_fast import reference as ref
from oss_fast.zoo import GaussianMixtureFlow

SHAPE = (2, 4, 4)


def mixture(N=10, shift=1.0):
    return GaussianMixtureFlow(shape=SHAPE, components=3, teacher_steps=N, shift=shift, seed=3)


class Altered:
    """The mixture's velocity, changed by `out(v, t)`."""

    def __init__(self, out, N=10):
        self.inner = mixture(N)
        self.fm_steps = self.inner.fm_steps
        self.out = out

    def __call__(self, x, t, cond, kwargs):
        return self.out(self.inner(x, t), t)


def nan_in_sample_1_at(index):
    def out(v, t):
        v = v.clone()
        if int(t[0]) == index:
            v[1, 0, 0, 0] = math.nan
        return v
    return out


def test_a_nan_velocity_is_named_by_step_grid_index_and_sample():
    z = mixture().noise(2, seed=1)
    with pytest.raises(FloatingPointError, match=r"NaN or inf at step 2 of 3 \(grid index 5, sample 1\)$"):
        oss_fast.sample(Altered(nan_in_sample_1_at(5)), z, [2, 5, 9])
    inf = Altered(lambda v, t: v / 0 if int(t[0]) == 2 else v)
    with pytest.raises(FloatingPointError, match=r"at step 3 of 3 \(grid index 2, sample 0\)"):
        oss_fast.sample(inf, z, [2, 5, 9], solver="unipc")


@pytest.mark.parametrize("out,error,message", [
    (lambda v, t: v[:, :1], ValueError, r"shape \(2, 1, 4, 4\) at step 1 of 2 \(grid index 9\) for an input of shape "
                                        r"\(2, 2, 4, 4\): a velocity must have exactly its input's shape"),
    (lambda v, t: v[:1], ValueError, r"shape \(1, 2, 4, 4\) at step 1 of 2 \(grid index 9\)"),
    (lambda v, t: v.reshape(2, -1), ValueError, r"shape \(2, 32\)"),
    (lambda v, t: [v], ValueError, r"returned a list at step 1 of 2 \(grid index 9\), not a tensor"),
    (lambda v, t: v.long(), TypeError, r"torch.int64 velocities at step 1 of 2"),
    (lambda v, t: v.to(torch.complex64), TypeError, r"torch.complex64 velocities"),
])
def test_a_velocity_that_is_not_a_real_tensor_of_the_inputs_shape_is_refused(out, error, message):
    with pytest.raises(error, match=message):
        oss_fast.sample(Altered(out), mixture().noise(2, seed=1), [4, 9])


def test_the_search_refuses_the_same_velocities_naming_the_grid_index():
    z = mixture().noise(2, seed=1)
    with pytest.raises(ValueError, match=r"shape \(2, 1, 4, 4\) at grid index 10 for an input of shape \(2, 2, 4, 4\): "
                                         "a velocity must have exactly its input's shape"):
        oss_fast.search(Altered(lambda v, t: v[:, :1]), z, student_steps=3, progress=False)
    with pytest.raises(TypeError, match="torch.complex64 velocities at grid index 10"):
        oss_fast.search(Altered(lambda v, t: v.to(torch.complex64)), z, student_steps=3, progress=False)


@pytest.mark.parametrize("z,message", [
    (torch.zeros(2, *SHAPE, dtype=torch.int64), "real floating-point tensor .* got a torch.int64 tensor"),
    (torch.zeros(2, *SHAPE, dtype=torch.complex64), "got a torch.complex64 tensor"),
    (torch.full((2, *SHAPE), math.nan), "z holds NaN or inf"),
    (torch.zeros(0, *SHAPE), "z holds no sample"),
    (torch.zeros(2, *SHAPE, device="meta"), "meta device"),
    ([[0.0]], "got a list"),
])
def test_noises_that_are_not_finite_real_tensors_are_refused(z, message):
    with pytest.raises(ValueError, match=message):
        oss_fast.sample(mixture(), z, [4, 9])


@pytest.mark.parametrize("steps,message", [
    ("25", r"steps must be a list of ints \(grid indices\), got '25'"),
    ([2.7, 5.9], r"steps must be ints \(grid indices\), got 2.7"),
    ([True, 5], "got True"),
    (np.array([2.0, 5.0]), "got 2.0"),
    (torch.tensor([2.0, 5.0]), "must be ints"),
    (5, "must be a list of ints"),
    ({2, 5}, "must be a list of ints"),
    ([3, 3, 5], r"steps repeat grid index 3 \(\[3, 3, 5\]\)"),
    ([5, 2], "ascending"),
    ([0, 3], r"in \[1, 10\]"),
    ([3, 11], r"in \[1, 10\]"),
    ([], r"in \[1, 10\]"),
])
def test_steps_are_distinct_ascending_integers_on_the_grid(steps, message):
    with pytest.raises(ValueError, match=message):
        oss_fast.sample(mixture(), mixture().noise(2, seed=1), steps, solver="ab2")


def test_integer_steps_of_any_kind_sample_alike():
    model, z = mixture(), mixture().noise(2, seed=1)
    expected = ref.sample(model, z, [2, 5, 9])
    for steps in ([2, 5, 9], (2, 5, 9), np.array([2, 5, 9]), [np.int64(2), np.int32(5), 9], torch.tensor([2, 5, 9])):
        torch.testing.assert_close(oss_fast.sample(model, z, steps), expected, rtol=1e-6, atol=0)


def test_infer_oss_keeps_the_published_repeated_indices():
    """The published compat search returns repeated grid indices for K >= N; its infer_OSS samples
    them (a zero-length step), and so does the drop-in."""
    model, z = mixture(), mixture().noise(2, seed=1)
    got = oss_fast.infer_OSS([3, 3, 5], model, z, None, "cpu")
    torch.testing.assert_close(got, ref.sample(model, z, [3, 3, 5]), rtol=1e-6, atol=0)


def test_a_schedule_with_indices_but_no_grid_must_match_the_models_grid():
    model = mixture()
    z = model.noise(2, seed=1)
    # the file: sigmas [0.99, 0.5] at indices whose model-grid sigmas are [0.6, 0.2]
    stray = Schedule([0.99, 0.5, 0.0], indices=[2, 6])
    with pytest.raises(ValueError, match=r"^the schedule's sigmas \[0.99, 0.5\] are not the model grid's at its indices "
                                         r"\[2, 6\] \(\[0.6, 0.2\]\); the model's grid has 10 steps, uniform: .*"
                                         r"for_shift\(1, teacher_steps=10\) \(`oss-fast export --shift 1`"):
        oss_fast.sample(model, z, stray)
    with pytest.raises(ValueError, match=r"indices \[2, 12\] reach beyond the model's 10-step grid"):
        oss_fast.sample(model, z, Schedule([0.99, 0.5, 0.0], indices=[2, 12]))
    fits = Schedule([0.6, 0.2, 0.0], indices=[2, 6])
    torch.testing.assert_close(oss_fast.sample(model, z, fits), ref.sample(model, z, [2, 6]), rtol=1e-6, atol=0)


def test_the_grid_mismatch_message_names_both_grids_and_the_transfer():
    schedule = Schedule.from_indices([4, 12, 20], mixture(20, shift=3.0))
    with pytest.raises(ValueError, match=r"^the schedule was made on a grid of 20 steps, shifted by 3; the model's grid "
                                         r"has 10 steps, uniform: carry the schedule over with schedule.for_shift\(1, "
                                         r"teacher_steps=10\) \(`oss-fast export --shift 1`.*schedule.snap"):
        oss_fast.sample(mixture(), mixture().noise(1), schedule)
    carried = schedule.for_shift(1.0, teacher_steps=10)
    assert oss_fast.sample(mixture(), mixture().noise(1), carried).shape == (1, *SHAPE)
