"""Search checkpoints: the whole state after the teacher rollout and after each level.

A checkpoint carries a fingerprint of everything that determines the result (the noises, the
conditioning and model kwargs, the grid, the options, and the model's name or type -- not its
weights: a changed checkpoint of the same architecture is not detected) and a checksum of the state
itself. On load both are checked and the state's structure is validated (shapes, dtypes, ranges,
finite values), so an edited or damaged file is refused with a one-line reason, never resumed.

Writes are atomic and never follow a link (files.write_atomic, as every file oss_fast writes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import torch

from ..files import write_atomic

PHASES = ("teacher", "levels")


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


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        _feed(h, part)
    return h.hexdigest()


def fingerprint(model, z, cond, kwargs, grid, opts) -> str:
    options = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("chunk", "progress")}
    return _digest(getattr(model, "name", type(model).__qualname__), z, cond, kwargs, grid, options)


def check_checkpoint_path(path) -> None:
    """Before any model call: the checkpoint's folder exists and is writable, and the path is a
    regular file or free."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(f"checkpoint must be a file path, got {type(path).__name__}") from None
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise ValueError(f"checkpoint folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"checkpoint folder {folder} is not writable")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"checkpoint {path} exists and is not a regular file")


def _tensor(state, key, shape, dtype, name):
    value = state.get(key)
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(shape) or value.dtype != dtype:
        got = f"{tuple(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name}: {key} must be {dtype} {tuple(shape)}, got {got}")
    return value


def validate_state(state: dict, name: str, *, B: int, J: int, D: int, K: int, G: int, dtype, H: int = 0) -> None:
    """Structure of a loaded state (after its checksum matched): ValueError naming what is wrong."""
    phase = state.get("phase")
    if phase not in PHASES:
        raise ValueError(f"{name}: unknown phase {phase!r}")
    for key in ("T", "V") if "V" in state else ("T",):
        if not bool(torch.isfinite(_tensor(state, key, (J, B, D), dtype if key == "T" else state[key].dtype,
                                           name)).all()):
            raise ValueError(f"{name}: {key} holds NaN or inf")
    if phase == "teacher":
        return
    level = state.get("level")
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= K:
        raise ValueError(f"{name}: level must be an int in [1, {K}], got {level!r}")
    best = _tensor(state, "best", (G, J), torch.float64, name)
    if bool(torch.isnan(best).any()) or bool((best < 0).any()):
        raise ValueError(f"{name}: best costs must be >= 0 (or +inf)")
    from_ = _tensor(state, "from_", (G, K + 1, J), torch.int64, name)
    if bool(((from_ < 0) | (from_ > J - 1)).any()):
        raise ValueError(f"{name}: a predecessor lies outside the grid [0, {J - 1}]")
    # a jump goes from a larger grid index to a smaller one (N, the noise, is its own start)
    targets = torch.arange(J, device=from_.device)
    if bool(((from_ <= targets) & (targets < J - 1)).any()) or bool((from_[:, :, J - 1] != J - 1).any()):
        raise ValueError(f"{name}: a predecessor is not a larger grid index than its target")
    _tensor(state, "live", (G, J), torch.bool, name)
    if not bool(torch.isfinite(_tensor(state, "state", (B, J, D), dtype, name)).all()):
        raise ValueError(f"{name}: state holds NaN or inf")
    if H:  # a multistep solver's history
        if not bool(torch.isfinite(_tensor(state, "hist", (B, J, H, D), torch.float64, name)).all()):
            raise ValueError(f"{name}: hist holds NaN or inf")
        times = _tensor(state, "hist_times", (B, J, 2), torch.float64, name)
        if not bool(((times >= 0) & (times <= 1)).all()):
            raise ValueError(f"{name}: hist_times must be flow times in [0, 1]")
        depth = _tensor(state, "depth", (B, J), torch.int64, name)
        if not bool(((depth >= 0) & (depth <= 2)).all()):
            raise ValueError(f"{name}: depth must lie in [0, 2]")


class Checkpoint:
    def __init__(self, path, fingerprint: str, write: bool = True):
        self.path = os.fspath(path)
        self.fingerprint = fingerprint
        self.write = write

    def load(self, device):
        """The saved state (checksum and fingerprint checked), None if there is no checkpoint;
        ValueError if it is unreadable, damaged, or from other inputs."""
        if not os.path.exists(self.path):
            return None
        try:
            state = torch.load(self.path, map_location=device, weights_only=True)
        except Exception as err:  # torch raises many kinds on a damaged file
            raise ValueError(f"checkpoint {self.path} is unreadable ({type(err).__name__}); remove it") from None
        if not isinstance(state, dict) or not isinstance(state.get("checksum"), str):
            raise ValueError(f"checkpoint {self.path} is not an oss_fast checkpoint")
        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(f"checkpoint {self.path} was written by a search with other inputs or options "
                             "(noises, conditioning, grid, model or search options differ); remove it or pass "
                             "another checkpoint path")
        body = {k: v for k, v in state.items() if k != "checksum"}
        if _digest(body) != state["checksum"]:
            raise ValueError(f"checkpoint {self.path} is damaged or was edited (its checksum does not match)")
        return body

    def save(self, **state):
        if not self.write:
            return
        body = dict(state, fingerprint=self.fingerprint)
        body["checksum"] = _digest(body)
        write_atomic(self.path, lambda f: torch.save(body, f))
