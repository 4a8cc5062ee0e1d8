"""Searches shared by torch.distributed ranks, out-of-memory back-off."""

import dataclasses
import os

import pytest
import torch
import torch.multiprocessing as mp

from models import full_search
from small_search import problem, search

CASES = [("compat", "per_sample"), ("exact", "per_sample"), ("compat", "joint"), ("exact", "median"),
         ("compat", "median", True),  # refined (the velocity cache decides what the ranks share)
         ("compat", None, True, "unipc")]  # the guarded multistep default (its validation rows shared too)


def guard_of(result):
    """The guard's report as plain values (torch.load reads no classes of ours)."""
    return None if result.guard is None else dataclasses.asdict(result.guard)


def _rank_main(rank, world, init_file, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {case: (r.steps, r.schedule, r.stats.candidate_rows, guard_of(r)) for case in CASES
                   for r in [search(*case)]}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_give_the_single_process_result(tmp_path):
    mp.spawn(_rank_main, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for case in CASES:
        single = search(*case)
        for rank in ranks:
            steps, schedule, rows, report = rank[case]
            assert steps == single.steps and schedule == single.schedule and report == guard_of(single), case
        # the ranks shared the candidate rows between them
        assert ranks[0][case][2] + ranks[1][case][2] == single.stats.candidate_rows


class OutOfMemoryAbove:
    """Raises CUDA's out-of-memory error for calls of more than `rows` rows."""

    def __init__(self, model, rows):
        self.model, self.rows, self.fm_steps = model, rows, model.fm_steps

    def __call__(self, x, t, cond, kwargs):
        if x.shape[0] > self.rows:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.model(x, t, cond, kwargs)


def test_out_of_memory_halves_the_chunk_and_gives_the_same_result():
    model, z, cond = problem()
    plain = full_search(model, z, cond, student_steps=4, mode="compat", max_batch=16, progress=False)
    backed_off = full_search(OutOfMemoryAbove(model, 4), z, cond, student_steps=4, mode="compat", max_batch=16,
                                 progress=False)
    assert backed_off.schedule == plain.schedule
    assert backed_off.stats.oom_backoffs == 2 and backed_off.stats.chunk == 4
    assert "out-of-memory back-offs to chunk 4" in backed_off.stats.summary()
    with pytest.raises(RuntimeError, match="one row per model call"):
        full_search(OutOfMemoryAbove(model, 0), z, cond, student_steps=4, progress=False)
