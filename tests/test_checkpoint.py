"""Checkpoints and resume: interrupted searches resume to the same result; checkpoints of other
inputs, damaged, edited or foreign files are refused; files are never written through links."""

import copy
import os

import numpy as np

import pytest
import torch

import oss_fast
import oss_fast.solvers
from oss_fast.solvers import SOLVERS
from oss_fast.engine.checkpoint import MAGIC, read_file, write_file

from oss_fast.zoo import GaussianMixtureFlow

from models import full_search
from small_search import problem, search


class Bomb:
    """A model that raises after a number of calls (an interrupted search)."""

    def __init__(self, model, calls_before):
        self.model, self.calls_before, self.calls = model, calls_before, 0
        self.fm_steps = model.fm_steps
        self.name = type(model).__qualname__  # the same model to the checkpoint's fingerprint

    def __call__(self, x, t, cond, kwargs):
        self.calls += 1
        if self.calls > self.calls_before:
            raise KeyboardInterrupt("simulated interruption")
        return self.model(x, t, cond, kwargs)


def interrupted_checkpoint(tmp_path, mode="compat", levels=2):
    """A checkpoint written after `levels` levels of a search interrupted (Ctrl-C) in the next one,
    and the uninterrupted search's result."""
    model, z, cond = problem()
    fresh = search(mode, "per_sample")
    # calls of the teacher (one per grid index at max_batch >= B) and of the levels done
    calls = 24 + sum(-(-r // 5) for r in fresh.stats.rows_per_level[:levels])
    path = tmp_path / "search.ckpt"
    with pytest.raises(KeyboardInterrupt):
        full_search(Bomb(model, calls), z, cond, student_steps=4, mode=mode, aggregate="per_sample",
                        max_batch=5, progress=False, checkpoint=path)
    return path, fresh


def test_a_refined_search_resumes_after_the_teacher(tmp_path):
    model, z, cond = problem()
    refined = lambda m, **kw: oss_fast.search(m, z, cond, student_steps=4, max_batch=5, progress=False, **kw)
    fresh = refined(model)
    path = tmp_path / "search.ckpt"
    with pytest.raises(KeyboardInterrupt):  # interrupted in the band passes, after the teacher's 24 calls
        refined(Bomb(model, 24 + fresh.stats.candidate_calls - 1), checkpoint=path)
    assert read_file(path)["phase"] == "teacher"
    resumed = refined(model, checkpoint=path, resume=True)
    assert resumed.steps == fresh.steps and resumed.schedule == fresh.schedule
    assert resumed.stats.teacher_calls == 0 and resumed.stats.resumed_from == "the teacher rollout"


@pytest.mark.parametrize("mode", ["compat", "exact"])
def test_resume_after_an_interruption_gives_the_same_result(tmp_path, mode):
    path, fresh = interrupted_checkpoint(tmp_path, mode, levels=3)
    assert read_file(path)["level"] == 3
    resumed = search(mode, "per_sample", checkpoint=path, resume=True)
    assert resumed.steps == fresh.steps
    assert resumed.stats.resumed_from == "level 2"
    assert resumed.stats.teacher_calls == 0
    assert resumed.stats.candidate_rows == sum(fresh.stats.rows_per_level[3:]) < fresh.stats.candidate_rows


def test_checkpoint_from_other_inputs_is_refused(tmp_path):
    path = tmp_path / "search.ckpt"
    search("compat", "per_sample", checkpoint=path)
    model, z, cond = problem()
    with pytest.raises(ValueError, match="other inputs or options"):
        full_search(model, z + 1, cond, student_steps=4, mode="compat", aggregate="per_sample", max_batch=5,
                        progress=False, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="other inputs or options"):
        search("exact", "per_sample", checkpoint=path, resume=True)
    # without resume the file is simply overwritten by a fresh search
    assert search("exact", "per_sample", checkpoint=path).steps == search("exact", "per_sample").steps


class Weighted:
    """The mixture plus w[600] * s^3 x, with w a 1,200-element numpy array in model_kwargs (numpy
    abbreviates such an array's repr to its ends)."""

    def __init__(self, **mixture):
        self.inner = GaussianMixtureFlow(shape=(2, 4, 4), components=3, teacher_steps=10, seed=1, **mixture)
        self.fm_steps = self.inner.fm_steps
        self.fingerprint = self.inner.fingerprint

    def __call__(self, x, t, cond, kwargs):
        return self.inner(x, t) + kwargs["w"][600] * x * self.fm_steps[t].reshape(-1, 1, 1, 1) ** 3


def weighted_search(model, middle: float, **kwargs):
    w = np.zeros(1200)
    w[600] = middle
    z = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    return oss_fast.search(model, z, student_steps=3, model_kwargs={"w": w}, mode="exact", refine=False,
                           progress=False, **kwargs)


def test_inputs_that_differ_only_inside_a_large_array_do_not_resume_each_other(tmp_path):
    path = tmp_path / "search.ckpt"
    assert weighted_search(Weighted(), 3.0, checkpoint=path).schedule == [4, 8, 10]
    # before: the fingerprint hashed the array's abbreviated repr, and this resumed to [4, 8, 10]
    assert weighted_search(Weighted(), 10.0).schedule == [6, 9, 10]
    with pytest.raises(ValueError, match="other inputs or options"):
        weighted_search(Weighted(), 10.0, checkpoint=path, resume=True)
    assert weighted_search(Weighted(), 3.0, checkpoint=path, resume=True).schedule == [4, 8, 10]
    for cond in (np.arange(1200.0), [np.arange(1200.0)], {"c": np.arange(1200.0)}):  # nested too
        other = copy.deepcopy(cond)
        (other if isinstance(other, np.ndarray) else other[0] if isinstance(other, list) else other["c"])[600] = -1
        assert fingerprint_of(cond) != fingerprint_of(other)
        assert fingerprint_of(cond) == fingerprint_of(copy.deepcopy(cond))


def fingerprint_of(cond, kwargs=None, model=None):
    from oss_fast.engine.checkpoint import fingerprint
    from oss_fast.engine.options import check_options

    model = model or Weighted()
    z = torch.zeros(2, 2, 4, 4)
    return fingerprint(model, z, cond, kwargs, model.fm_steps, check_options(model, z, student_steps=3))


def test_mixtures_that_differ_only_in_mean_scale_do_not_resume_each_other(tmp_path):
    path = tmp_path / "search.ckpt"
    weighted_search(Weighted(mean_scale=1.0), 0.0, checkpoint=path)
    # before: both mixtures had the same name, the fingerprint's only knowledge of the model
    with pytest.raises(ValueError, match="other inputs or options"):
        weighted_search(Weighted(mean_scale=2.0), 0.0, checkpoint=path, resume=True)
    assert weighted_search(Weighted(mean_scale=1.0), 0.0, checkpoint=path, resume=True).stats.resumed_from


class Opaque:
    """A kwarg whose repr does not show its content."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "Opaque()"


@pytest.mark.parametrize("cond,kwargs,where", [
    (None, {"foo": Opaque(1)}, r"model_kwargs\['foo'\] is a Opaque"),
    (None, {"foo": [1, {"bar": Opaque(1)}]}, r"model_kwargs\['foo'\]\[1\]\['bar'\] is a Opaque"),
    ([torch.ones(2), Opaque(2)], None, r"cond\[1\] is a Opaque"),
    (np.array([Opaque(1), Opaque(2)], dtype=object), None, "cond is a ndarray"),
    (torch.ones(2, device="meta"), None, "cond is a Tensor"),
])
def test_inputs_the_checkpoint_cannot_hash_are_refused_before_any_model_call(tmp_path, cond, kwargs, where):
    class NoCalls(Weighted):
        def __call__(self, *args):
            raise AssertionError("the model was called")

    z = torch.randn(2, 2, 4, 4)
    with pytest.raises(ValueError, match=where + ": the checkpoint cannot fingerprint it; pass tensors, arrays, "
                       "numbers or strings, or run without checkpoint"):
        oss_fast.search(NoCalls(), z, cond, student_steps=3, model_kwargs=kwargs, checkpoint=tmp_path / "c",
                        progress=False)
    assert not (tmp_path / "c").exists()


def test_plain_values_are_hashed_with_their_type():
    assert fingerprint_of(None, {"a": 1}) != fingerprint_of(None, {"a": 1.0})
    assert fingerprint_of(None, {"a": 1}) != fingerprint_of(None, {"a": True})
    assert fingerprint_of(None, {"a": "1"}) != fingerprint_of(None, {"a": 1})
    assert fingerprint_of(None, {"a": (1, 2)}) != fingerprint_of(None, {"a": [1, 2]})
    assert fingerprint_of(torch.ones(2)) != fingerprint_of(torch.ones(2, dtype=torch.float64))
    assert fingerprint_of(np.ones(2)) != fingerprint_of(np.ones((1, 2)))
    assert fingerprint_of(None, {"a": 1, "b": 2}) == fingerprint_of(None, {"b": 2, "a": 1})


def edited(path, **changes):
    """Rewrites a checkpoint with changed entries; with checksum=True the checksum is recomputed (an
    edit by someone who knows the format), else the old one is kept."""
    from oss_fast.engine.checkpoint import _digest

    state = read_file(path)
    rehash = changes.pop("checksum", False)
    for key, change in changes.items():
        state[key] = change(state[key]) if callable(change) else change
    if rehash:
        state["checksum"] = _digest({k: v for k, v in state.items() if k != "checksum"})
    write_file(path, state)


@pytest.mark.parametrize("damage,message", [
    (dict(level=lambda v: v + 1), "checksum does not match"),  # edited, fingerprint kept
    (dict(level=7, checksum=True), r"level must be an int in \[1, 4\]"),
    (dict(level=True, checksum=True), "level must be an int"),
    (dict(from_=lambda f: f.fill_(7), checksum=True), "predecessor is not a larger grid index"),
    (dict(from_=lambda f: f.fill_(-1), checksum=True), "predecessor lies outside the grid"),
    (dict(from_=lambda f: f + 100, checksum=True), "predecessor lies outside the grid"),
    (dict(state=lambda s: s.fill_(float("nan")), checksum=True), "state holds NaN or inf"),
    (dict(best=lambda b: b.fill_(-1.0), checksum=True), "best costs must be >= 0"),
    (dict(best=lambda b: b[:, :3], checksum=True), r"best must be torch.float64 \(3, 25\)"),
    (dict(T=lambda x: x.double(), checksum=True), "T must be torch.float32"),
    (dict(phase="later", checksum=True), "unknown phase"),
])
def test_a_damaged_or_edited_checkpoint_is_refused(tmp_path, damage, message):
    path, _ = interrupted_checkpoint(tmp_path)
    edited(path, **damage)
    with pytest.raises(ValueError, match=message):
        search("compat", "per_sample", checkpoint=path, resume=True)


def test_a_flipped_byte_or_a_foreign_file_is_refused(tmp_path):
    path, _ = interrupted_checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checkpoint .* (is unreadable|is damaged)"):
        search("compat", "per_sample", checkpoint=path, resume=True)
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="not an oss_fast checkpoint"):
        search("compat", "per_sample", checkpoint=path, resume=True)
    write_file(path, [1, 2, 3])  # our first bytes, then no state
    with pytest.raises(ValueError, match="not an oss_fast checkpoint"):
        search("compat", "per_sample", checkpoint=path, resume=True)
    path.write_bytes(MAGIC + b"not a checkpoint")
    with pytest.raises(ValueError, match="is unreadable"):
        search("compat", "per_sample", checkpoint=path, resume=True)


@pytest.mark.parametrize("resume", [False, True])
def test_a_file_that_is_not_a_checkpoint_is_never_overwritten(tmp_path, resume):
    path = tmp_path / "notes.txt"
    path.write_text("precious")
    torch.save({"weights": torch.ones(3)}, tmp_path / "model.pt")  # a torch file of someone else's
    for target in (path, tmp_path / "model.pt"):
        before = target.read_bytes()
        with pytest.raises(ValueError, match="is not an oss_fast checkpoint"):
            search("compat", "per_sample", checkpoint=target, resume=resume)
        assert target.read_bytes() == before
    # an empty file holds nothing to lose: the search writes its checkpoint there
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    assert search("compat", "per_sample", checkpoint=empty, resume=resume).steps == search("compat", "per_sample").steps
    assert empty.read_bytes().startswith(MAGIC)


def test_checkpoints_are_not_written_through_links_and_leave_no_temporary_files(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = tmp_path / "search.ckpt"
    # a planted link at the old temporary name, and one at a guessable unique-looking name
    os.symlink(victim, tmp_path / "search.ckpt.tmp")
    interrupted_checkpoint(tmp_path)  # Ctrl-C (KeyboardInterrupt) during the search
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.ckpt", "search.ckpt.tmp", "victim.txt"]
    assert os.path.islink(tmp_path / "search.ckpt.tmp") and not os.path.islink(path)


def test_an_interrupted_save_removes_its_temporary_file(tmp_path, monkeypatch):
    from oss_fast.engine import checkpoint as ckpt

    def interrupted_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        search("compat", "per_sample", checkpoint=tmp_path / "search.ckpt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("solver", [name for name, solver in SOLVERS.items() if solver.history])
def test_multistep_search_resumes_to_the_same_result(tmp_path, solver):
    model, z, cond = problem()
    fresh = search("exact", "joint", solver=solver)
    calls = 24 + sum(-(-r // 5) for r in fresh.stats.rows_per_level[:2])
    path = tmp_path / "search.ckpt"
    with pytest.raises(KeyboardInterrupt):
        full_search(Bomb(model, calls), z, cond, student_steps=4, mode="exact", aggregate="joint",
                        max_batch=5, progress=False, checkpoint=path, solver=solver)
    assert read_file(path)["hist"].shape[2] == oss_fast.solvers.get_solver(solver).history
    resumed = search("exact", "joint", checkpoint=path, resume=True, solver=solver)
    assert resumed.schedule == fresh.schedule and resumed.stats.resumed_from == "level 1"
    edited(path, depth=lambda d: d + 5, checksum=True)
    with pytest.raises(ValueError, match="depth must lie in"):
        search("exact", "joint", checkpoint=path, resume=True, solver=solver)
