import pytest
import torch

import oss_fast


def pytest_collection_modifyitems(config, items):
    if oss_fast.build_info()["cuda_available"] and torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and a build with the CUDA twin")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
