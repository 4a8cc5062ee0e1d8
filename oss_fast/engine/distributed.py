"""Sharing a search over the ranks of a torch.distributed process group (NCCL on GPUs, gloo on
CPU). Every rank holds the whole DP state; the model calls are split: the teacher rollout by
sample, each level's candidate rows in contiguous shards. Velocities and costs are all-gathered,
so every rank runs the same deterministic DP on the same numbers and ends with the same result."""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed_ready() -> bool:
    """torch.distributed is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def _dist():
    return dist if distributed_ready() else None


class Comm:
    """The ranks of a search; a world of one when no process group is initialised."""

    def __init__(self, group=None):
        self.dist = _dist()
        self.group = group
        self.rank = self.dist.get_rank(group) if self.dist else 0
        self.size = self.dist.get_world_size(group) if self.dist else 1

    def _bounds(self, n: int, rank: int) -> tuple[int, int]:
        base, extra = divmod(n, self.size)
        start = rank * base + min(rank, extra)
        return start, start + base + (rank < extra)

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of n items."""
        return slice(*self._bounds(n, self.rank))

    def gather_rows(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """The n rows of all ranks' shards (local: this rank's shard of dimension 0), on every rank."""
        if self.size == 1 or n == 0:
            return local
        longest = -(-n // self.size)
        padded = local.new_zeros((longest,) + tuple(local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        self.dist.all_gather(parts, padded, group=self.group)
        lengths = [end - start for start, end in (self._bounds(n, r) for r in range(self.size))]
        return torch.cat([part[:length] for part, length in zip(parts, lengths)])

    def first_report(self, report):
        """The first rank's (grid, sample) report of a NaN, or None when no rank has one."""
        if self.size == 1:
            return report
        device = torch.device("cuda", torch.cuda.current_device()) if self.dist.get_backend(self.group) == "nccl" \
            else torch.device("cpu")
        mine = torch.tensor([1, *report] if report else [0, 0, 0], dtype=torch.int64, device=device)
        parts = [torch.empty_like(mine) for _ in range(self.size)]
        self.dist.all_gather(parts, mine, group=self.group)
        for part in parts:
            if part[0]:
                return int(part[1]), int(part[2])
        return None
