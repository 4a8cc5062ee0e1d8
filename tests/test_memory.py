"""Huge sizes are refused before the first model call (issue 19): the estimate of a search's own
buffers, and the bundled models' draws. The available memory is injected, never the machine's."""

import pytest
import torch

import oss_fast
from oss_fast.engine.memory import search_bytes
from oss_fast.engine.options import check_options
from oss_fast.models import memory
from oss_fast.zoo import GaussianMixtureFlow, digits, noises

SHAPE = (2, 4, 4)


class NoCalls:
    """A model on a given grid that fails the test if it is called at all."""

    def __init__(self, fm_steps):
        self.fm_steps = fm_steps

    def __call__(self, x, t, cond, kwargs):
        raise AssertionError("no model call may happen before the memory check")


class Called(Exception):
    """The first model call: the search got past its checks."""


class FirstCall(NoCalls):
    def __call__(self, x, t, cond, kwargs):
        raise Called


@pytest.fixture
def available(monkeypatch):
    """Sets the memory every device has free (bytes)."""

    def set_to(n):
        monkeypatch.setattr(memory, "available_bytes", lambda device: n)

    return set_to


def grid(N):
    return torch.linspace(0, 1, N + 1, dtype=torch.float64)


def test_the_estimate_counts_the_engines_buffers():
    # B = 2 float32 latents of D = 32 elements, N = 10, K = 3, the full exact search, one DP per sample
    z = torch.zeros(2, *SHAPE)
    opts = check_options(NoCalls(grid(10)), z, student_steps=3, mode="exact", aggregate="per_sample", refine=False)
    parts = {what.split(" (")[0]: size for what, size, _ in search_bytes(opts, 2, SHAPE, 4)}
    assert parts == {
        "the teacher trajectory": 11 * 2 * 32 * 4,  # T [N+1, B, D] float32
        "the levels' states": 2 * 11 * 32 * 4,  # state [B, N+1, D]
        "the DP's predecessors": 2 * 5 * 11 * 8,  # from_ [B, K+1, N+1] int64 and best [B, N+1] float64
        # a level's 22 rows: state, velocity, the winners' gathered copies and new states [22, D], and
        # the costs [22, N+1] float64 twice (the rows', the DP's grouped copy)
        "a level's rows and costs": 22 * 5 * 32 * 4 + 22 * 11 * 8 * 2,
    }
    teacher = check_options(NoCalls(grid(10)), z, student_steps=3, mode="teacher", aggregate="per_sample")
    parts = {what.split(" (")[0]: size for what, size, _ in search_bytes(teacher, 2, SHAPE, 4)}
    assert parts == {"the teacher trajectory": 2 * 11 * 2 * 32 * 4,  # T and its velocities V
                     "mode teacher's jump costs": 2 * 2 * 11 * 11 * 8}  # C [B, N+1, N+1] float64, and its aggregate


def test_a_search_that_cannot_fit_is_refused_before_the_first_model_call(available):
    z = torch.zeros(16, 4, 16, 16)
    available(160 * 2**20)
    # before: the search ran the teacher, then failed in the allocator (N = 10^5) or after minutes (10^6)
    with pytest.raises(ValueError, match=r"^this search \(N = 400, K = 5, B = 16, latent 4x16x16\) needs about "
                                         r"[0-9.]+ MiB of CPU memory but 160.0 MiB are available: its largest part, a "
                                         r"level's rows and costs \(R x \(N\+1\) = 6416 x 401\), takes [0-9.]+ MiB; use "
                                         r"refine=True"):
        oss_fast.search(NoCalls(grid(400)), z, student_steps=5, refine=False, progress=False)
    with pytest.raises(Called):  # the option the message names lowers the estimate below what is free
        oss_fast.search(FirstCall(grid(400)), z, student_steps=5, refine=True, progress=False)
    with pytest.raises(ValueError, match=r"mode teacher's pair costs with solver unipc .* use fewer teacher steps"):
        oss_fast.search(NoCalls(grid(400)), z, student_steps=5, mode="teacher", solver="unipc", progress=False)
    available(2**40)
    with pytest.raises(ValueError, match=r"needs about [0-9.]+ GiB of CPU memory but 1024.0 GiB are available"):
        oss_fast.search(NoCalls(grid(10**6)), z, student_steps=5, progress=False)


def test_a_huge_frame_selection_is_refused_before_it_is_allocated(available):
    available(2**30)
    model = NoCalls(grid(10))
    # before: linspace of 10^9 frame indices (8 GB) and their gather, before any check; 2 channels x
    # 10^9 frames x 2 x 4 elements are compared per latent
    with pytest.raises(ValueError, match=r"its largest part, the compared channels/frames \(16000000000 of 48 elements "
                                         r"per latent\), takes [0-9.]+ GiB; use fewer channels or frames compared"):
        oss_fast.search(model, torch.zeros(2, 2, 3, 2, 4), student_steps=3, frames=10**9, progress=False)


def test_bundled_draws_refuse_counts_beyond_memory_and_bad_seeds(available):
    available(2**30)
    # 10^7 digits noises: 64 elements drawn in float64, then float32: 12 bytes each, 7.2 GiB
    with pytest.raises(ValueError, match=r"^drawing 10000000 noises needs about 7.2 GiB of CPU memory but 1.0 GiB "
                                         r"are available: draw fewer noises"):
        noises(digits(), 10**7, 0)
    with pytest.raises(ValueError, match="drawing 10000000 data samples needs about"):
        GaussianMixtureFlow(shape=SHAPE).sample_data(10**7)
    with pytest.raises(ValueError, match="drawing 200000000 labels needs about 1.5 GiB"):
        digits().labels(2 * 10**8)
    z, cond = noises(digits(), 5, 0)  # what fits is drawn as before
    assert z.shape == (5, 1, 8, 8) and cond.shape == (5,)
    for seed in (10**30, -1, 1.5, None):
        with pytest.raises(ValueError, match=r"seed must be an int in \[0, 9223372036854775807\]"):
            noises(digits(), 3, seed)
    for n in (0, 2.5, "3"):
        with pytest.raises(ValueError, match="the number of noises must be an int >= 1"):
            GaussianMixtureFlow(shape=SHAPE).noise(n)
