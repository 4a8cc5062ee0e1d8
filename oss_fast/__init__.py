"""oss_fast: fast Optimal Stepsize Search (OSS) for diffusion and flow-matching samplers.

The public names are imported when first used (PEP 562): `import oss_fast` costs nothing until
then, so the `oss-fast` command can handle Ctrl-C before torch is imported (oss_fast/__main__.py).
"""

from __future__ import annotations

import importlib

from ._version import __version__

# public name -> the module that defines it (relative to this package)
_PUBLIC = {
    "search": ".api", "sample": ".api", "SearchResult": ".api",
    "search_OSS": ".dropin", "search_OSS_batch": ".dropin", "search_OSS_video": ".dropin", "infer_OSS": ".dropin",
    "cal_medium": ".dropin",
    "SearchStats": ".engine.stats", "Schedule": ".schedule",
}
_SUBMODULES = ("_C", "presets")


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def build_info() -> dict:
    """How this copy of oss_fast was built and what it can use here.

    Keys: version, built_with_cuda (the CUDA twin is compiled in), cuda_available (it can run
    here: built with CUDA and a GPU is visible), cuda_device_count, openmp, torch, triton.
    """
    from .native import build_info as compiled_build_info

    info = compiled_build_info()
    info["cuda_available"] = bool(info["built_with_cuda"] and info["cuda_device_count"] > 0)
    import torch

    info["torch"] = torch.__version__
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


__all__ = ["build_info", "presets", "search", "sample", "Schedule", "SearchResult", "SearchStats", "search_OSS",
           "search_OSS_batch", "search_OSS_video", "infer_OSS", "cal_medium", "__version__"]
