"""Which implementation runs an op (DESIGN §4): `triton` (CUDA, or CPU under TRITON_INTERPRET=1;
float32/bf16/fp16, p in {1, 2}), `csrc` (the compiled CPU code: float32, p in {1, 2}; OpenMP) or
`torch` (the op's pure-torch reference: any dtype, any p). A backend states what it supports; the
first that supports the inputs runs; OSS_FAST_BACKEND forces one and raises if it cannot run.
"""

from __future__ import annotations

import os

import torch

BACKENDS = ("triton", "csrc", "torch")
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _triton_usable() -> str | None:
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    return None


def unsupported(backend: str, x, v, targets, norm) -> str | None:
    """Why a backend cannot run a cost op on these inputs, or None if it can."""
    if backend == "torch":
        return None
    if norm not in (1, 2):
        return f"norm {norm} (only 1 and 2)"
    if backend == "csrc":
        if x.device.type != "cpu":
            return "csrc runs on CPU tensors"
        if not (x.dtype == v.dtype == targets.dtype == torch.float32):
            return "csrc needs float32 latents and velocities"
        return None
    if backend == "triton":
        reason = _triton_usable()
        if reason:
            return reason
        if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            return "triton needs CUDA tensors (or TRITON_INTERPRET=1)"
        if x.dtype not in TRITON_DTYPES or v.dtype not in TRITON_DTYPES or targets.dtype != x.dtype:
            return "triton needs float32/bfloat16/float16 latents with targets of the same dtype"
        return None
    return f"unknown backend {backend!r} (choose from {BACKENDS})"


def _runnable(backend: str, asked_by: str, x, v, targets, norm) -> str:
    """backend, when it can run a cost op on these inputs; RuntimeError naming who asked for it otherwise."""
    reason = unsupported(backend, x, v, targets, norm)
    if reason:
        raise RuntimeError(f"{asked_by} cannot run the cost op here: {reason}")
    return backend


def pick_backend(x, v, targets, norm) -> str:
    """The backend a cost op runs on these inputs unless one is asked for: OSS_FAST_BACKEND's, else
    the first of BACKENDS that supports them."""
    forced = os.environ.get("OSS_FAST_BACKEND")
    if forced:
        return _runnable(forced, f"OSS_FAST_BACKEND={forced}", x, v, targets, norm)
    for name in BACKENDS:
        # the interpreter runs CPU tensors only when asked for: it is slow and miscomputes bfloat16
        if name == "triton" and x.device.type != "cuda":
            continue
        if unsupported(name, x, v, targets, norm) is None:
            return name
    return "torch"


def cost_backend(requested: str | None, x, v, targets, norm) -> str:
    """The backend a cost op runs: the requested one (raising if it cannot run these inputs), else
    pick_backend's choice."""
    if requested is None:
        return pick_backend(x, v, targets, norm)
    return _runnable(requested, f"backend {requested}", x, v, targets, norm)


def step_rows_backend(x, v, hist, outputs=()) -> str:
    """`csrc` for CPU float32 rows with 1 to 3 history vectors (and contiguous outputs, if given),
    else `torch`; OSS_FAST_BACKEND=torch forces the reference (step_rows has no Triton version)."""
    fits = (x.device.type == "cpu" and x.dtype == v.dtype == torch.float32 and 0 < hist.shape[1] <= 3
            and all(t.is_contiguous() for t in outputs))
    return "csrc" if fits and os.environ.get("OSS_FAST_BACKEND") != "torch" else "torch"
