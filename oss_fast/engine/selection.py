"""Which latent elements a cost compares (DESIGN §3.4): all, the first n channels or n random ones
per level, and n frames of a video latent [C, F, H, W] at linspace(0, F-1, n) truncated."""

from __future__ import annotations

import numpy as np
import torch


def channel_indices(channels, num_channels: int, level: int, random_channels: bool, seed: int):
    """Channels the cost compares at a level: None (all), the first n, or a random n per level."""
    if channels == "all":
        return None
    n = int(channels)
    if random_channels:
        rng = np.random.default_rng([seed, level])
        return sorted(rng.choice(num_channels, size=n, replace=False).tolist())
    return list(range(n))


def frame_indices(frames, num_frames: int):
    """Frames the cost compares: None (all) or n at linspace(0, F-1, n) truncated (published rule)."""
    if frames == "all":
        return None
    return torch.linspace(0, num_frames - 1, int(frames), dtype=torch.long).tolist()


class CostSelection:
    """The flat indices of a latent of `shape` that a search's costs compare, level by level."""

    def __init__(self, shape: tuple, opts, device):
        self.shape = shape
        self.opts = opts
        self.device = device
        self.frames = frame_indices(opts.frames, shape[1]) if len(shape) >= 2 else None
        self._static = None if opts.random_channels else (self._indices(0),)

    def _indices(self, level: int):
        o = self.opts
        chans = channel_indices(o.channels, self.shape[0], level, o.random_channels, o.seed)
        if chans is None and self.frames is None:
            return None
        idx = torch.arange(int(np.prod(self.shape))).reshape(self.shape)
        if chans is not None:
            idx = idx[chans]
        if self.frames is not None:
            idx = idx[:, self.frames]
        return idx.reshape(-1).to(self.device)

    def at(self, level: int):
        """Flat indices compared at a level, or None for all."""
        return self._static[0] if self._static is not None else self._indices(level)

    @staticmethod
    def targets(T: torch.Tensor, sel):
        """The teacher trajectory [J, B, D] restricted to the selection (contiguous)."""
        return T if sel is None else T[:, :, sel].contiguous()
