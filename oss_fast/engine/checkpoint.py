"""Search checkpoints: the whole state after the teacher rollout and after each level.

A checkpoint carries a fingerprint of everything that determines the result and a checksum of the
state itself. On load both are checked and the state's structure is validated (shapes, dtypes,
ranges, finite values), so an edited or damaged file, or one from other inputs, is refused with a
one-line reason, never resumed.

The fingerprint hashes the exact bytes (with dtype and shape) of every tensor and numpy array in the
noises, the conditioning and the model kwargs -- nested in lists, tuples and dicts -- and plain
values (None, bools, numbers, strings, bytes, torch dtypes and devices) with their type; the grid;
the options; and the model's `fingerprint`. Anything else (an object whose repr need not show its
content) is refused before any model call: pass tensors, arrays, numbers or strings instead.

The model's `fingerprint` attribute (a string, or tensors and plain values nested as above; a
property is fine) describes what determines its output beyond the grid: its weights or the
arguments that built them, guidance, shift, dtype. The bundled models (oss_fast.zoo) and wrappers
(oss_fast.models) provide it. A model without one is known by its `name` attribute, else its class
name: then a checkpoint of other weights of the same class is not detected -- give a custom model
a `fingerprint` (e.g. a hash of its weights, or the name and version of its checkpoint).

Writes are atomic and never follow a link (files.write_atomic, as every file oss_fast writes). A
path that holds a file which is not an oss_fast checkpoint is refused, never overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os

import numpy as np
import torch

from ..files import open_regular, write_atomic

PHASES = ("teacher", "levels")
# the first bytes of every checkpoint file: what tells an oss_fast checkpoint from any other file
MAGIC = b"oss_fast.checkpoint/2\n"
# plain values hashed as their type and repr (which is exact for these types)
PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)


def _refuse(where: str, value):
    raise ValueError(f"{where} is a {type(value).__qualname__}: the checkpoint cannot fingerprint it; pass tensors, "
                     "arrays, numbers or strings, or run without checkpoint")


def _feed(h, value, where: str = "value"):
    """Feeds value to the hash h faithfully: tensors and arrays by their bytes, dtype and shape;
    plain values by type and repr; lists, tuples and dicts element by element. ValueError naming
    `where` for anything else."""
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.device.type == "meta" or value.is_quantized:
            _refuse(where, value)
        t = value.detach().cpu().contiguous()
        if t.is_conj() or t.is_neg():
            t = t.resolve_conj().resolve_neg()
        h.update(f"tensor{tuple(t.shape)}{t.dtype};".encode())
        if t.numel():  # the bytes in place (hashlib reads the buffer): no copy of a large trajectory
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, (np.ndarray, np.generic)):
        a = np.ascontiguousarray(value)
        if a.dtype.hasobject:
            _refuse(where, value)
        h.update(f"ndarray{a.shape}{a.dtype.str}{a.dtype.descr};".encode())
        if a.size:
            h.update(a.reshape(-1).view(np.uint8))
    elif type(value) in PLAIN:
        h.update(f"{type(value).__qualname__}:{value!r};".encode())
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__qualname__}[{len(value)}];".encode())
        for n, v in enumerate(value):
            _feed(h, v, f"{where}[{n}]")
    elif isinstance(value, dict):
        h.update(f"dict[{len(value)}];".encode())
        for key in sorted(value, key=lambda k: (type(k).__qualname__, repr(k))):
            _feed(h, key, f"a key of {where}")
            _feed(h, value[key], f"{where}[{key!r}]")
    else:
        _refuse(where, value)


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        _feed(h, part)
    return h.hexdigest()


def model_identity(model):
    """What the fingerprint knows of a model: its `fingerprint`, else its `name`, else its class."""
    identity = getattr(model, "fingerprint", None)
    if identity is not None:
        return "fingerprint", identity
    return "name", getattr(model, "name", type(model).__qualname__)


def fingerprint(model, z, cond, kwargs, grid, opts) -> str:
    """The hash of everything that determines a search's result (see the module's docstring);
    ValueError naming an input it cannot hash faithfully."""
    options = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("chunk", "progress")}
    h = hashlib.sha256()
    for where, value in (("model.fingerprint", model_identity(model)), ("z", z), ("cond", cond),
                         ("model_kwargs", kwargs), ("the grid", grid), ("the options", options)):
        _feed(h, value, where)
    return h.hexdigest()


def _magic(f) -> bool | None:
    """Whether an open file starts with MAGIC; None for an empty file (nothing to lose)."""
    head = f.read(len(MAGIC))
    return None if not head else head == MAGIC


def is_checkpoint(path) -> bool | None:
    """True if path holds an oss_fast checkpoint (its first bytes are MAGIC), None if there is
    nothing at path or an empty file (nothing to lose), False for any other file."""
    f = open_regular(path, "checkpoint", missing_ok=True)
    if f is None:
        return None
    with f:
        return _magic(f)


class _After(io.RawIOBase):
    """A seekable view of a binary file from `offset` on (torch.load reads the body after MAGIC)."""

    def __init__(self, f, offset: int):
        self.f, self.offset = f, offset
        f.seek(offset)

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, b):
        return self.f.readinto(b)

    def seek(self, pos, whence=io.SEEK_SET):
        return self.f.seek(pos + self.offset if whence == io.SEEK_SET else pos, whence) - self.offset

    def tell(self):
        return self.f.tell() - self.offset


def read_file(path, device="cpu") -> dict | None:
    """The raw content of a checkpoint file (nothing checked beyond its first bytes), None if
    there is none (or an empty file); ValueError for a file that is not an oss_fast checkpoint or
    cannot be read."""
    f = open_regular(path, "checkpoint", missing_ok=True)
    if f is None:
        return None
    with f:
        kind = _magic(f)
        if kind is None:
            return None
        if not kind:
            raise ValueError(f"checkpoint {path} is not an oss_fast checkpoint (or one from an older oss_fast); "
                             "remove it or pass another checkpoint path")
        try:
            return torch.load(_After(f, len(MAGIC)), map_location=device, weights_only=True)
        except Exception as err:  # torch raises many kinds on a damaged file
            raise ValueError(f"checkpoint {path} is unreadable ({type(err).__name__}); remove it") from None


def write_file(path, body: dict) -> None:
    """Writes a checkpoint file: MAGIC, then body as torch.save writes it (atomically)."""

    def write(f):
        f.write(MAGIC)
        torch.save(body, f)

    write_atomic(path, write)


def check_checkpoint_path(path) -> None:
    """Before any model call: the checkpoint's folder exists and is writable, and the path is free,
    an empty file, or an oss_fast checkpoint (which a search without resume overwrites): any other
    file is refused, never overwritten."""
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
    if is_checkpoint(path) is False:
        raise ValueError(f"checkpoint {path} exists and is not an oss_fast checkpoint (or one from an older oss_fast): "
                         "it is not overwritten; remove it or pass another checkpoint path")


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
        state = read_file(self.path, device)
        if state is None:
            return None
        if not isinstance(state, dict) or not isinstance(state.get("checksum"), str):
            raise ValueError(f"checkpoint {self.path} is not an oss_fast checkpoint")
        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(f"checkpoint {self.path} was written by a search with other inputs or options "
                             "(noises, conditioning, grid, model or search options differ); remove it or pass "
                             "another checkpoint path")
        body = {k: v for k, v in state.items() if k != "checksum"}
        try:
            checksum = _digest(body)
        except ValueError:  # an entry of a type no checkpoint holds
            checksum = None
        if checksum != state["checksum"]:
            raise ValueError(f"checkpoint {self.path} is damaged or was edited (its checksum does not match)")
        return body

    def save(self, **state):
        if not self.write:
            return
        body = dict(state, fingerprint=self.fingerprint)
        body["checksum"] = _digest(body)
        write_file(self.path, body)
