"""Model inputs that follow the rows of a batched call (DESIGN §2).

A search evaluates rows that belong to different samples; the conditioning and any per-sample
model kwargs must be gathered to follow them. An input is per-sample when its first dimension is
the search batch B (tensors, lists, tuples); anything else is shared and passed unchanged. A model
may declare `per_sample_kwargs` (names); a declared kwarg whose first dimension is neither B nor 1
is an error, not a guess.
"""

from __future__ import annotations

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
        kwargs = dict(kwargs or {})
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
