"""Whole searches on latents of more than 1,024 elements through the compiled cost op, against the
plain reference: integer outputs equal.

The compiled kernels sum a pair's cost in blocks of elements and, in mode compat, stop early once a
partial sum reaches the running best (the pruning bound); the smaller latents of test_search.py fit
in one or two blocks, so a wrong bound only shows on latents this large.
"""

import pytest

from oss_fast import reference as ref
from oss_fast.zoo import GaussianMixtureFlow

from models import full_search

SHAPE = (3, 25, 25)  # 1,875 elements: several blocks and a partial last one


@pytest.mark.parametrize("solver", ["euler", "ab2"])
@pytest.mark.parametrize("mode", ["compat", "exact"])
def test_search_on_large_latents_equals_reference(mode, solver, monkeypatch):
    monkeypatch.setenv("OSS_FAST_BACKEND", "csrc")  # the compiled path, not the torch fallback
    model = GaussianMixtureFlow(shape=SHAPE, components=4, teacher_steps=16, shift=2.0, seed=3)
    z = model.noise(3, seed=4)
    for K in (2, 5):
        expected = ref.search(model, z, student_steps=K, mode=mode, solver=solver)
        res = full_search(model, z, student_steps=K, mode=mode, aggregate="per_sample", solver=solver,
                          progress=False)
        assert res.stats.cost_backend == "csrc"
        assert res.steps == expected
