"""How a search's samples combine (DESIGN §3.4): how many DPs it runs, the cost a joint decision
minimises over the samples, and the one schedule of its paths."""

from __future__ import annotations

import torch

from .. import dp
from .options import JOINT


def group_count(aggregate: str, samples: int) -> int:
    """How many DPs a search runs: one for a joint aggregation, else one per sample."""
    return 1 if aggregate in JOINT else samples


def mean_over_samples(per_sample: torch.Tensor) -> torch.Tensor:
    """Mean over dimension 0, summed in sample order as the reference sums (bitwise equal)."""
    total = per_sample[0].clone()
    for b in range(1, per_sample.shape[0]):
        total += per_sample[b]
    return total / per_sample.shape[0]


def joint_cost(per_sample: torch.Tensor, aggregate: str) -> torch.Tensor:
    """The cost a joint decision minimises, over dimension 0 (the samples), in sample order as the
    reference sums (bitwise equal): the mean ("joint"), or the square of the mean root ("joint_rms":
    for the squared norm, the mean RMS error), which one badly served noise steers less."""
    if aggregate == "joint":
        return mean_over_samples(per_sample)
    root = mean_over_samples(per_sample.clamp_min(0).sqrt())  # Gram-form costs can round below 0
    return root * root


def schedule_of(paths: torch.Tensor, aggregate: str):
    """The one schedule of paths [G, K] (median rule or joint), None for per_sample."""
    if aggregate == "median":
        return dp.median_steps(paths).tolist()
    if aggregate in JOINT:
        return paths[0].tolist()
    return None
