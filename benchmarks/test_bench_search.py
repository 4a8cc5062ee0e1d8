"""pytest-benchmark cases: `pytest benchmarks --benchmark-only` (not part of the test suite).

Each pairs oss_fast with the slow path it replaces, on the same inputs; the ratios of the printed
means are the speed-ups. The full-size comparisons (issue 3 cases a, b, xl) are in bench_search.py.
"""

import math
import os
import sys

import pytest
import torch

import oss_fast
from oss_fast import dp
from oss_fast import reference as ref
from oss_fast.ops import euler_costs, euler_costs_torch
from oss_fast.zoo import GaussianMixtureFlow

sys.path.insert(0, os.path.dirname(__file__))
from baselines import search_oss_batch_style  # noqa: E402


def one_level(B=4, N=200, D=4096):
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(B * N, D, generator=g), torch.randn(B * N, D, generator=g)
    targets = torch.randn(N + 1, B, D, generator=g)
    row_sample = torch.arange(B).repeat_interleave(N)
    row_grid = torch.arange(1, N + 1).repeat(B)
    return x, v, targets, row_sample, row_grid, torch.linspace(0, 1, N + 1, dtype=torch.float64)


@pytest.mark.parametrize("backend", ["csrc", "torch"])
def test_cost_op_one_level(benchmark, backend):
    args = one_level()
    benchmark.group = "cost op: one level, B=4, N=200, D=4096"
    costs = benchmark.pedantic(euler_costs, args, dict(backend=backend), rounds=3, warmup_rounds=1)
    assert costs.shape == (800, 201)


@pytest.mark.parametrize("impl", ["csrc", "reference"])
def test_dp_level_update(benchmark, impl):
    g = torch.Generator().manual_seed(0)
    costs = torch.rand(4, 200, 201, generator=g, dtype=torch.float64)
    cand = torch.arange(1, 201).repeat(4, 1)
    benchmark.group = "DP level update: 4 groups x 200 candidates x 201 targets"

    def csrc():
        best = torch.full((4, 201), math.inf, dtype=torch.float64)
        from_ = torch.full((4, 11, 201), 200, dtype=torch.int64)
        return dp.level_update("compat", best, from_, 0, costs=costs, cand=cand)

    def reference():
        out = []
        for gi in range(4):
            mins, args = ref.reduce_candidates(costs[gi].tolist(), cand[gi].tolist())
            out.append(ref.level_update("compat", [math.inf] * 201, [[200] * 201 for _ in range(11)], 0, mins, args))
        return out

    benchmark.pedantic(csrc if impl == "csrc" else reference, rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["oss_fast", "search_OSS_batch-style"])
def test_search_gaussian_mixture(benchmark, impl):
    model = GaussianMixtureFlow(shape=(4, 32, 32), teacher_steps=100)
    z = model.noise(4, seed=0)
    benchmark.group = "compat search: Gaussian mixture 4x32x32, N=100, K=10, B=4"

    def fast():
        return oss_fast.search(model, z, student_steps=10, mode="compat", aggregate="per_sample", float32=False,
                               max_batch=64, progress=False).steps

    def baseline():
        return search_oss_batch_style(model, z, None, 10)

    steps = benchmark.pedantic(fast if impl == "oss_fast" else baseline, rounds=2, warmup_rounds=0)
    assert len(steps) == 4
