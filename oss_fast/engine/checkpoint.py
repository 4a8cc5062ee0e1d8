"""Search checkpoints: the whole state after the teacher rollout and after each level, written
atomically (a temporary file renamed over the old one), refused when it comes from other inputs.

A checkpoint carries a fingerprint of everything that determines the result: the noises, the
conditioning and model kwargs, the grid, the options, and the model's name or type (not its
weights: a changed checkpoint of the same architecture is not detected)."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import torch


def _feed(h, value):
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"tensor{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, (list, tuple)):
        h.update(f"seq{len(value)}".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, dict):
        for k in sorted(value):
            h.update(str(k).encode())
            _feed(h, value[k])
    else:
        h.update(repr(value).encode())


def fingerprint(model, z, cond, kwargs, grid, opts) -> str:
    h = hashlib.sha256()
    options = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("chunk", "progress")}
    for part in (getattr(model, "name", type(model).__qualname__), z, cond, kwargs, grid, options):
        _feed(h, part)
    return h.hexdigest()


class Checkpoint:
    def __init__(self, path, fingerprint: str, write: bool = True):
        self.path = os.fspath(path)
        self.fingerprint = fingerprint
        self.write = write

    def load(self, device):
        """The saved state, None if there is no checkpoint; ValueError if it is from other inputs."""
        if not os.path.exists(self.path):
            return None
        state = torch.load(self.path, map_location=device, weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(f"checkpoint {self.path} was written by a search with other inputs or options "
                             "(noises, conditioning, grid, model or search options differ); remove it or pass "
                             "another checkpoint path")
        return state

    def save(self, **state):
        if not self.write:
            return
        tmp = f"{self.path}.tmp"
        torch.save(dict(state, fingerprint=self.fingerprint), tmp)
        os.replace(tmp, self.path)
