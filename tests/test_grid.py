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
    with pytest.raises(ValueError, match="shift must be > 0"):
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
