"""The bundled models' seeded draws (noises, labels, data samples): their count and seed checked
before anything is drawn, so a huge count is one line instead of an allocator's traceback."""

from __future__ import annotations

import operator

import torch

from ..grid import SEED_MAX
from ..models.memory import check_fits


def generator(seed) -> torch.Generator:
    """A CPU generator seeded with seed, an int in [0, 2^63 - 1] (ValueError otherwise)."""
    try:
        number = None if isinstance(seed, bool) else operator.index(seed)
    except TypeError:
        number = None
    if number is None or not 0 <= number <= SEED_MAX:
        raise ValueError(f"seed must be an int in [0, {SEED_MAX}], got {seed!r}")
    return torch.Generator().manual_seed(number)


def check_count(n, element_bytes: int, what: str, device="cpu") -> int:
    """n as an int >= 1 whose draw of n x element_bytes fits in the CPU memory (where it is drawn)
    and on `device`; ValueError naming n and the estimate otherwise."""
    try:
        count = None if isinstance(n, bool) else operator.index(n)
    except TypeError:
        count = None
    if count is None or count < 1:
        raise ValueError(f"the number of {what} must be an int >= 1, got {n!r}")
    for where in {torch.device("cpu"), torch.device(device)}:
        check_fits(count * element_bytes, where, f"drawing {count} {what}", f"draw fewer {what}")
    return count
