"""Time-grid math (oss_fast.grid) against independent statements of the same rules."""

import numpy as np
import pytest
import torch

from oss_fast import grid


@pytest.mark.parametrize("shift", [0.5, 1.0, 3.0, 8.0])
def test_unshift_inverts_shift_on_floats_arrays_and_tensors(shift):
    s = np.linspace(0, 1, 11)
    np.testing.assert_allclose(grid.time_unshift(grid.time_shift(s, shift), shift), s, rtol=0, atol=1e-15)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(grid.time_shift(t, shift), torch.from_numpy(grid.time_shift(s, shift)))
    assert grid.time_shift(0.5, shift) == pytest.approx(shift / (1 + shift))  # the shift's definition


def test_shifted_grid_and_descriptions():
    g = grid.shifted_grid(4, 3.0)
    assert g.dtype == torch.float64 and g[0] == 0 and g[-1] == 1
    assert grid.describe_grid(g) == {"teacher_steps": 4, "first": 0.0, "last": 1.0, "kind": "shifted", "shift": 3.0}
    assert grid.describe_grid(grid.shifted_grid(5))["kind"] == "uniform"
    assert grid.describe_grid([0.0, 0.1, 0.7, 1.0])["kind"] == "custom"
    for N, shift in [(7, 3.0), (101, 5.0), (9, 0.25)]:  # odd N too: a schedule's diffusers export needs the shift
        assert grid.describe_grid(grid.shifted_grid(N, shift))["shift"] == shift
    with pytest.raises(ValueError, match="shift must be a number > 0"):
        grid.shifted_grid(4, 0.0)


def test_steps_on_a_grid():
    g = grid.shifted_grid(100)
    assert grid.uniform_steps(g, 4) == [25, 50, 75, 100]
    # shift 3 of 1, 3/4, 1/2, 1/4: 1, 9/10, 3/4, 1/2
    assert grid.shifted_steps(g, 4, 3.0) == [50, 75, 90, 100]
    assert grid.snap_to_grid(g, [0.004, 0.333]) == [33]  # 0 is never a step
    assert grid.grid_index(g, 0.25) == 25 and grid.grid_index(g, 0.255) is None


def test_dynamic_shift_matches_the_flux_pipeline():
    flux = pytest.importorskip("diffusers.pipelines.flux.pipeline_flux")
    for seq_len in (256, 1024, 4096, 777):
        assert grid.calculate_shift(seq_len) == pytest.approx(flux.calculate_shift(seq_len), rel=1e-15)
    config = {"base_image_seq_len": 128, "max_image_seq_len": 2048, "base_shift": 0.3, "max_shift": 1.0}
    assert grid.scheduler_mu(config, 512) == pytest.approx(flux.calculate_shift(512, 128, 2048, 0.3, 1.0))
    assert grid.image_seq_len(1024, 768, 8) == (1024 // 16) * (768 // 16)


def test_grid_from_descending_scheduler_timesteps():
    timesteps, fm_steps = grid.grid_from_descending(torch.tensor([1000.0, 750.0, 250.0]), 1000)
    assert timesteps.tolist() == [0.0, 250.0, 750.0, 1000.0]
    assert fm_steps.tolist() == [0.0, 0.25, 0.75, 1.0]


def test_whole_numbers_and_index_lists_follow_operator_index():
    assert grid.whole_number(np.int64(7), "steps") == 7 and type(grid.whole_number(np.int32(7), "steps")) is int
    assert grid.whole_number(torch.tensor(3), "steps") == 3
    for bad in (7.0, True, "7", None, np.float32(7), 0):
        with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
            grid.whole_number(bad, "steps")
    assert grid.index_list(np.array([1, 3])) == [1, 3] and grid.index_list(torch.tensor([2, 5])) == [2, 5]
    for bad in ("13", b"13", {1: 2}, {1, 3}, 13, [1.0, 3], [np.float64(1), 3], [True, 3], np.zeros((2, 2), int)):
        with pytest.raises(ValueError, match="indices must be"):
            grid.index_list(bad)
    assert grid.positive_real(np.float32(3)) == 3.0
    for bad in (0, -1.0, float("nan"), float("inf"), "3", True, 2j):
        with pytest.raises(ValueError, match="shift must be a number > 0"):
            grid.positive_real(bad)


def test_a_shift_too_large_or_small_for_a_grid_is_named():
    with pytest.raises(ValueError, match=r"^shift 1e\+308 is too large to represent a 10-step grid: its flow times at "
                                         r"indices 2 and 3 \(1, 1\) are not distinct"):
        grid.shifted_grid(10, 1e308)
    with pytest.raises(ValueError, match=r"^shift 1e-300 is too small to represent a 10-step grid"):
        grid.shifted_grid(10, 1e-300)
    with pytest.raises(ValueError, match="steps must be a whole number >= 1, got 10.0"):
        grid.shifted_grid(10.0)
    g = grid.shifted_grid(np.int64(1000), np.float32(1e6))  # extreme, still distinct flow times
    assert bool((g[1:] > g[:-1]).all())


def test_the_dynamic_shift_is_a_finite_positive_number_at_every_size_it_serves():
    rule = grid.dynamic_shift_rule({})
    assert grid.size_shift(rule, (1024, 1024)) == pytest.approx(np.exp(grid.calculate_shift(4096)), rel=1e-15)
    with pytest.raises(ValueError, match=r"dynamic shift at 100000x100000 is exp\(mu\) = inf"):
        grid.size_shift(rule, (100000, 100000))
    linear = dict(rule, time_shift_type="linear")
    assert grid.size_shift(linear, (1024, 1024)) == pytest.approx(1.15, rel=1e-12)  # the shift is mu itself
    # 1 token: mu = -0.5 + (1 - 256) (1.15 + 0.5) / (4096 - 256) = -0.60957...
    with pytest.raises(ValueError, match=r"dynamic shift at 16x16 is mu \(time_shift_type linear\) = -0.60957"):
        grid.size_shift(dict(linear, base_shift=-0.5), (16, 16))
    with pytest.raises(ValueError, match="max_image_seq_len .* must exceed"):
        grid.dynamic_shift_rule({"base_image_seq_len": 4096})
    with pytest.raises(ValueError, match="vae_scale_factor must be a whole number >= 1"):
        grid.dynamic_shift_rule({}, vae_scale_factor=0)
