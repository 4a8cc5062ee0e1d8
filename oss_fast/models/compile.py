"""torch.compile on a wrapper's forward path, with an escape hatch.

`maybe_compile(fn, True)` returns a callable that runs `torch.compile(fn)`; `OSS_FAST_COMPILE=0`
turns compilation off everywhere; a compilation failure warns once and falls back to eager for
the rest of the process. The search engine calls models with a handful of fixed chunk shapes,
so after a warm-up nothing recompiles.
"""

from __future__ import annotations

import os
import warnings

import torch


def compile_enabled() -> bool:
    return os.environ.get("OSS_FAST_COMPILE", "1") != "0"


class CompiledCall:
    """Calls the compiled version of fn, or fn itself once compilation has failed."""

    def __init__(self, fn, **options):
        self.eager = fn
        self.compiled = torch.compile(fn, **options)

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure: fall back, say so once
                warnings.warn(f"oss_fast: torch.compile failed ({type(err).__name__}: {err}); running eager",
                              RuntimeWarning, stacklevel=2)
                self.compiled = None
        return self.eager(*args, **kwargs)


def maybe_compile(fn, enabled: bool, **options):
    """fn compiled with torch.compile when enabled (and OSS_FAST_COMPILE is not 0), else fn."""
    if not enabled or not compile_enabled():
        return fn
    return CompiledCall(fn, **options)


def maybe_compile_blocks(model, enabled: bool, attribute: str = "blocks"):
    """Regional compilation: compile each module of model.<attribute> (a ModuleList of repeated
    blocks) in place and return the model; without such a list, fall back to maybe_compile(model).

    For networks whose forward takes Python lists (Wan's native API), compiling the whole forward
    would guard on the lists' lengths and recompile per chunk size; the blocks see plain tensors.
    """
    blocks = getattr(model, attribute, None)
    if not enabled or not compile_enabled() or not isinstance(blocks, torch.nn.ModuleList):
        return maybe_compile(model, enabled)
    for block in blocks:
        block.compile()
    return model
