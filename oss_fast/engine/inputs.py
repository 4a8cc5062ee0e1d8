"""Model inputs that follow the rows of a batched call (DESIGN §2).

A search evaluates rows that belong to different samples; the conditioning and any per-sample
model kwargs must be gathered to follow them. An input is per-sample when its first dimension is
the search batch B (tensors, lists, tuples); anything else is shared and passed unchanged. A model
may declare `per_sample_kwargs` (names); a declared kwarg whose first dimension is neither B nor 1
is an error, not a guess.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def _length(value):
    if isinstance(value, torch.Tensor):
        return value.shape[0] if value.dim() > 0 else None
    if isinstance(value, (list, tuple)):
        return len(value)
    return None


def _gather(value, rows: torch.Tensor):
    if isinstance(value, torch.Tensor):
        return value.index_select(0, rows.to(value.device))
    idx = rows.tolist()
    return type(value)(value[r] for r in idx)


class SampleInputs:
    """cond and kwargs of a search, split into per-sample and shared parts."""

    def __init__(self, cond, kwargs: dict | None, batch: int, per_sample_kwargs=None):
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise ValueError(f"model_kwargs must be a dict of further model inputs (name: value), got "
                             f"{type(kwargs).__name__}")
        kwargs = dict(kwargs or {})
        for name in kwargs:
            if not isinstance(name, str):
                raise ValueError(f"model_kwargs must be keyed by argument names (strings), got the key {name!r}")
        if per_sample_kwargs is not None and (isinstance(per_sample_kwargs, str) or not all(
                isinstance(n, str) for n in per_sample_kwargs)):
            raise ValueError(f"per_sample_kwargs must be a list of model_kwargs names, got {per_sample_kwargs!r}")
        n = _length(cond)
        if cond is not None and n is not None and n not in (batch, 1):
            raise ValueError(f"cond has {n} entries but the search batch is {batch} (expected {batch} or 1)")
        declared = set(per_sample_kwargs or ())
        for name in sorted(declared & set(kwargs)):
            m = _length(kwargs[name])
            if m not in (batch, 1):
                raise ValueError(f"model_kwargs[{name!r}] is per-sample: expected first dimension {batch} "
                                 f"(or 1 to share it), got {m}")
        self.batch = batch
        self.cond = cond
        self.cond_per_sample = n == batch and cond is not None
        self.kwargs = kwargs
        self.per_sample = {k for k, v in kwargs.items() if _length(v) == batch}

    def rows(self, samples: torch.Tensor):
        """(cond, kwargs) for rows belonging to the given samples (int64 [R])."""
        cond = _gather(self.cond, samples) if self.cond_per_sample else self.cond
        kwargs = {k: (_gather(v, samples) if k in self.per_sample else v) for k, v in self.kwargs.items()}
        return cond, kwargs
