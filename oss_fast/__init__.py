"""oss_fast: fast Optimal Stepsize Search (OSS) for diffusion and flow-matching samplers."""

from __future__ import annotations

from . import _C, presets
from ._version import __version__
from .api import SearchResult, sample, search
from .dropin import cal_medium, infer_OSS, search_OSS, search_OSS_batch, search_OSS_video
from .engine.stats import SearchStats
from .schedule import Schedule


def build_info() -> dict:
    """How this copy of oss_fast was built and what it can use here.

    Keys: version, built_with_cuda (the CUDA twin is compiled in), cuda_available (it can run
    here: built with CUDA and a GPU is visible), cuda_device_count, openmp, torch, triton.
    """
    info = dict(_C.build_info())
    info["cuda_available"] = bool(info["built_with_cuda"] and info["cuda_device_count"] > 0)
    import torch

    info["torch"] = torch.__version__
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


__all__ = ["build_info", "presets", "search", "sample", "Schedule", "SearchResult", "SearchStats", "search_OSS", "search_OSS_batch",
           "search_OSS_video", "infer_OSS", "cal_medium", "__version__"]
