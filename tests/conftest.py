import os

import torch

# Triton kernels run on CPU only under its interpreter, which must be chosen before any kernel is
# defined (at import of the module holding it).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import oss_fast  # noqa: E402


def cuda_ready() -> bool:
    return bool(oss_fast.build_info()["cuda_available"] and torch.cuda.is_available())


def pytest_collection_modifyitems(config, items):
    if cuda_ready():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and a build with the CUDA twin")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
