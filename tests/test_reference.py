"""The oracle itself, checked against hand derivations and brute force on tiny problems."""

import itertools
import math

import pytest
import torch

from oss_fast import reference as ref
from oss_fast.zoo import GaussianMixtureFlow

from models import TinyConvNet


def tiny_mixture(N=6, shift=1.0):
    return GaussianMixtureFlow(shape=(2, 4, 4), components=3, teacher_steps=N, shift=shift, seed=5)


def final_cost(model, z, path, T0, norm=2):
    """Euler along a student path, then the cost to the teacher's end point."""
    x = ref.sample(model, z, path)
    return ref.cost(x[0], T0[0], norm)


def test_median_hand_examples():
    assert ref.median([[1, 5], [3, 7]]) == [2, 6]
    assert ref.median([[9], [2], [4]]) == [3]
    assert ref.median([[4, 8]]) == [4, 8]


def test_compat_single_step_picks_the_best_jump_from_noise():
    model = tiny_mixture()
    z = model.noise(1, seed=1)
    T, _ = ref.teacher(model, z)
    s = ref.grid(model)
    costs = {}
    for i in range(1, 7):  # compat: pure noise may start at any grid index
        v = model(z, torch.tensor([i]))
        costs[i] = ref.cost((z + v * (s[0] - s[i]))[0], T[0][0], 2)
    expected = min(costs, key=lambda i: (costs[i], -i))
    assert ref.search(model, z, student_steps=1, mode="compat") == [[expected]]


def test_exact_two_steps_is_the_best_two_step_path():
    model = tiny_mixture()
    z = model.noise(1, seed=2)
    T, _ = ref.teacher(model, z)
    costs = {(i,): final_cost(model, z, [i, 6], T[0]) for i in range(1, 6)}
    best = min(costs, key=lambda p: costs[p])
    assert ref.search(model, z, student_steps=2, mode="exact") == [[best[0], 6]]


def test_exact_path_cost_is_the_recorded_one_and_at_most_teacher_modes():
    # exact keeps per level only the best way to reach each grid index; its traced path is one
    # the DP recorded, so it can be no worse than any single alternative such as teacher mode's.
    model = tiny_mixture(N=8)
    z = model.noise(1, seed=3)
    T, _ = ref.teacher(model, z)
    exact = ref.search(model, z, student_steps=3, mode="exact")[0]
    teacher = ref.search(model, z, student_steps=3, mode="teacher")[0]
    assert exact[-1] == 8 and teacher[-1] == 8
    assert final_cost(model, z, exact, T[0]) <= final_cost(model, z, teacher, T[0])


def test_teacher_mode_is_the_shortest_path_over_teacher_jumps():
    model = tiny_mixture(N=6)
    z = model.noise(2, seed=4)
    T, V = ref.teacher(model, z)
    s = ref.grid(model)

    def jump(i, j):  # mean over the two samples of the teacher jump i -> j
        return sum(ref.cost((T[i][b] + V[i][b] * (s[j] - s[i])), T[j][b], 2) for b in range(2)) / 2

    for K in (1, 2, 3):
        best = min(itertools.combinations(range(5, 0, -1), K - 1),
                   key=lambda mids: sum(jump(a, b) for a, b in zip((6, *mids), (*mids, 0))))
        assert ref.search(model, z, student_steps=K, mode="teacher", aggregate="joint") == sorted([*best, 6])


def test_sampling_every_grid_index_reproduces_the_teacher():
    model = TinyConvNet(teacher_steps=12)
    z = torch.randn(3, 4, 6, 6)
    cond = torch.tensor([1, 2, 3])
    T, _ = ref.teacher(model, z, cond)
    assert torch.equal(ref.sample(model, z, list(range(1, 13)), cond), T[0])


def test_amplitude_calibration_maps_quantiles():
    class Still:
        fm_steps = torch.linspace(0, 1, 5)

        def __call__(self, x, t, cond, kwargs):
            return torch.zeros_like(x)

    z = torch.randn(2, 3, 8, 8)
    max_amp, min_amp = [1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, -3.0, -4.0]
    x = ref.sample(Still(), z, [2, 4], max_amp=max_amp, min_amp=min_amp)
    flat = x.reshape(2, -1)
    # the last call was at grid index 2: quantiles mapped onto min_amp[1], max_amp[1]
    torch.testing.assert_close(torch.quantile(flat, 0.95, dim=1), torch.full((2,), 2.0))
    torch.testing.assert_close(torch.quantile(flat, 0.05, dim=1), torch.full((2,), -2.0))


def test_joint_with_one_sample_equals_per_sample():
    model = TinyConvNet(teacher_steps=7)
    z = torch.randn(1, 4, 4, 4)
    cond = torch.tensor([3])
    for mode in ("compat", "exact"):
        per = ref.search(model, z, cond, student_steps=3, mode=mode)
        joint = ref.search(model, z, cond, student_steps=3, mode=mode, aggregate="joint")
        assert per == [joint]


def test_channel_and_frame_selection():
    assert ref.frame_indices("all", 9) is None
    assert ref.frame_indices(3, 9) == [0, 4, 8]
    assert ref.channel_indices(2, 16, 0, False, 0) == [0, 1]
    a = ref.channel_indices(4, 16, 0, True, 7)
    assert len(set(a)) == 4 and a == ref.channel_indices(4, 16, 0, True, 7)
    d = torch.zeros(4, 3, 2)
    d[1, 2] = 2.0  # only channel 1, frame 2 differs
    assert ref.cost(d, torch.zeros_like(d), 2, channels=[1], frames=[2]) == pytest.approx(4.0)
    assert ref.cost(d, torch.zeros_like(d), 1) == pytest.approx(4.0 / 24)


def test_bad_arguments():
    model = tiny_mixture()
    z = model.noise(1)
    for kwargs in ({"student_steps": 0}, {"student_steps": 7, "mode": "exact"}, {"student_steps": 2, "mode": "x"},
                   {"student_steps": 2, "aggregate": "mean"}):
        with pytest.raises(ValueError):
            ref.search(model, z, **kwargs)
    assert math.isinf(ref.reduce_candidates([[1.0]], [-1])[0][0])
