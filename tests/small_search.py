"""The small class-conditional search the distributed and checkpoint tests share."""

import torch

import oss_fast

from models import TinyConvNet


def problem():
    model = TinyConvNet(teacher_steps=24, shift=2.0, seed=3)
    z = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(4))
    cond = torch.tensor([2, 5, 7])  # per-sample conditioning
    return model, z, cond


def search(mode, aggregate, refine=False, solver="euler", **kwargs):
    model, z, cond = problem()
    return oss_fast.search(model, z, cond, student_steps=4, mode=mode, aggregate=aggregate, max_batch=5,
                           refine=refine, solver=solver, progress=False, **kwargs)
