"""The one place that imports the compiled module (csrc's `_C`) and hands tensors to it: as DLPack
capsules of contiguous tensors, whose dtype, device, layout and element count the compiled entry
points check against the sizes they are given (never as bare addresses), with the CUDA stream they
run on."""

from __future__ import annotations

import torch
from torch.utils.dlpack import to_dlpack

from . import _C

cpu = _C.cpu  # the compiled CPU functions: the twins of the CUDA ones, and the ops' csrc backend


def build_info() -> dict:
    """How the compiled module was built (version, CUDA twin, OpenMP, visible devices)."""
    return dict(_C.build_info())


def buffer(t: torch.Tensor):
    """A DLPack capsule of a contiguous tensor; a strided one is refused, never reread as dense."""
    if not t.is_contiguous():
        raise ValueError(f"compiled code reads contiguous memory only, got a strided {tuple(t.shape)} tensor")
    return to_dlpack(t)


def backend(device: torch.device):
    """The csrc module for a device, and the trailing stream argument its functions take."""
    if device.type == "cpu":
        return cpu, ()
    if device.type != "cuda":
        raise ValueError(f"tensors on {device} are not supported (cpu or cuda)")
    if not hasattr(_C, "cuda"):
        raise ValueError("tensors are on CUDA but oss_fast was built without CUDA (see oss_fast.build_info())")
    return _C.cuda, (torch.cuda.current_stream(device).cuda_stream,)
