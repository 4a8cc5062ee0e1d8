"""Coarse-to-fine refinement (DESIGN §3.6) against the plain reference's, and its contract: under
half the published search's model rows, and no state evaluated twice."""

import pytest
import torch

import oss_fast
from oss_fast import reference as ref
from oss_fast.engine.refine import band, coarse
from oss_fast.zoo import GaussianMixtureFlow

from models import full_search
from test_search import make


@pytest.mark.parametrize("kind,mode,aggregate,solver", [
    ("mixture", "compat", "median", "euler"),
    ("mixture", "exact", "joint_rms", "unipc"),
    ("mixture", "compat", "per_sample", "dpmpp_2m"),
    ("convnet", "compat", "joint_rms", "ab2"),
    ("convnet", "exact", "median", "euler"),
    ("convnet", "compat", "joint", "euler"),
])
def test_refined_search_equals_reference(kind, mode, aggregate, solver):
    model, z, cond = make(kind, 24, 2.0, 3, seed=1)
    expected = ref.refined_search(model, z, cond, student_steps=4, mode=mode, aggregate=aggregate, solver=solver,
                                  stride=3, width=2)
    res = oss_fast.search(model, z, cond, student_steps=4, mode=mode, aggregate=aggregate, solver=solver, stride=3,
                          band=2, max_rows=10**9, max_batch=7, validate=False, progress=False)  # no row budget there
    assert (res.steps if aggregate == "per_sample" else res.schedule) == expected
    assert len(res.stats.rows_per_pass) >= 2 and sum(res.stats.rows_per_pass) == res.stats.candidate_rows


def test_restrictions_are_the_coarse_grid_and_bands_around_the_path():
    grid = coarse(1, 2, 10, 4, "cpu")
    assert grid.starts[0].nonzero().flatten().tolist() == [4, 8, 10]
    assert grid.targets[0, 1].nonzero().flatten().tolist() == [0, 4, 8, 10]
    near = band(torch.tensor([[3, 7]]), 10, 1)
    assert near.starts[0].nonzero().flatten().tolist() == [6, 7, 8]
    assert near.targets[0, 0].nonzero().flatten().tolist() == [2, 3, 4]
    assert near.targets[0, 1].nonzero().flatten().tolist() == [0]  # the last jump lands on the data


class RowLog(torch.nn.Module):
    """A model that records every row it is asked for: (grid index, the row's bytes)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.fm_steps, self.rows = model, model.fm_steps, []

    def forward(self, x, t, cond=None, kwargs=None):
        self.rows += [(int(i), row.numpy().tobytes()) for i, row in zip(t, x)]
        return self.model(x, t, cond, kwargs)


@pytest.mark.parametrize("solver", ["euler", "unipc"])
def test_no_state_is_evaluated_twice(solver):
    model = RowLog(GaussianMixtureFlow(shape=(2, 4, 4), components=4, teacher_steps=40, shift=2.0, seed=3))
    z = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    # one row per call: no padding rows
    res = oss_fast.search(model, z, student_steps=5, stride=3, band=3, solver=solver, max_rows=10**9, max_batch=1,
                          validate=False, progress=False)
    candidates = model.rows[res.stats.teacher_rows:]
    assert len(candidates) == res.stats.candidate_rows
    assert len(set(candidates)) == len(candidates)  # re-centred passes took what they met before from the cache
    assert res.stats.velocity_cache_hits > 0


@pytest.mark.parametrize("K", [5, 10])
@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m"])
def test_default_model_rows_against_the_published_search(K, solver):
    # Euler: at most half; a multistep solver: its searches and the guard's validation within all of it
    model = GaussianMixtureFlow(shape=(2, 4, 4), components=4, teacher_steps=100, shift=3.0, seed=1)
    z = model.noise(4, seed=2)
    res = oss_fast.search(model, z, student_steps=K, solver=solver, progress=False)
    assert res.stats.published_rows == 100 * (K + 1) * 4
    share = 0.5 if solver == "euler" else 1.0
    assert res.stats.teacher_rows + res.stats.candidate_rows <= res.stats.published_rows * share
    assert (res.guard is None) == (solver == "euler")
    if res.guard is not None:
        assert res.guard.noises >= 4 and res.stats.validation_rows >= 4 * 100


def test_a_grid_too_short_to_coarsen_runs_the_full_search():
    model, z, cond = make("convnet", 12, 2.0, 2, seed=4)
    res = oss_fast.search(model, z, cond, student_steps=4, progress=False)  # stride capped at N // 2K = 1
    full = full_search(model, z, cond, student_steps=4, progress=False)
    assert res.schedule == full.schedule and res.stats.rows_per_pass == []


def test_band_passes_stop_at_the_row_budget():
    model = GaussianMixtureFlow(shape=(2, 4, 4), components=4, teacher_steps=60, shift=3.0, seed=1)
    z = model.noise(3, seed=2)
    free = oss_fast.search(model, z, student_steps=6, max_rows=10**9, progress=False)
    assert not free.stats.refine_stopped_by_budget and len(free.stats.rows_per_pass) >= 3
    budget = free.stats.teacher_rows + free.stats.rows_per_pass[0] + free.stats.rows_per_pass[1] // 2
    capped = oss_fast.search(model, z, student_steps=6, max_rows=budget, progress=False)
    assert capped.stats.refine_stopped_by_budget
    assert capped.stats.teacher_rows + capped.stats.candidate_rows <= budget
