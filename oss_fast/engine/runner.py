"""Calling the model on rows: fixed chunk shapes, per-sample inputs, timing, checked outputs."""

from __future__ import annotations

import gc
import time

import torch

from .inputs import SampleInputs
from .velocity import check_velocity, grid_text


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ModelRunner:
    """Evaluates the model on any number of rows in chunks of at most `chunk` rows.

    The last chunk is padded (repeating its last row) up to the next power of two, capped at
    `chunk`: a search sees only log2(chunk) + 1 distinct shapes, so a compiled model stops
    recompiling after warm-up, while small levels do not pay for a full chunk.
    """

    def __init__(self, model, inputs: SampleInputs, chunk: int, device: torch.device):
        self.model = model
        self.inputs = inputs
        self.chunk = chunk
        self.device = device
        self.calls = 0
        self.rows = 0
        self.padded_rows = 0
        self.seconds = 0.0
        self.oom_backoffs = 0

    def bucket(self, n: int) -> int:
        size = 1
        while size < n:
            size *= 2
        return min(size, self.chunk)

    def __call__(self, x: torch.Tensor, grid: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """Velocities for rows x [R, ...] at grid indices grid [R] of samples samples [R].

        A CUDA out-of-memory error halves the chunk, frees the cached memory and retries; the
        smaller chunk is kept for the rest of the search.
        """
        R = x.shape[0]
        if R == 0:  # a level where no state changed
            return torch.empty_like(x)
        out = None
        start = 0
        while start < R:
            n = min(self.chunk, R - start)
            size = self.bucket(n)
            idx = slice(start, start + n)
            if size > n:
                idx = torch.arange(start, start + size, device=x.device).clamp_(max=start + n - 1)
            cond, kwargs = self.inputs.rows(samples[idx])
            begin = time.perf_counter()
            try:
                v = self.model(x[idx], grid[idx], cond, kwargs)
                synchronize(self.device)
            except torch.cuda.OutOfMemoryError as err:
                self.seconds += time.perf_counter() - begin
                self._back_off(err)
                continue
            self.seconds += time.perf_counter() - begin
            check_velocity(v, (size,) + tuple(x.shape[1:]), lambda: grid_text(grid[idx]))
            if out is None:
                out = torch.empty((R,) + tuple(v.shape[1:]), dtype=v.dtype, device=x.device)
            out[start:start + n] = v[:n]
            self.calls += 1
            self.rows += n
            self.padded_rows += size - n
            start += n
        return out

    def _back_off(self, err):
        if self.chunk == 1:
            raise RuntimeError("CUDA out of memory with one row per model call: the model does not fit; "
                               "free memory or use a smaller latent") from err
        self.chunk //= 2
        self.oom_backoffs += 1
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

