"""Drop-in replacements for the published OSS functions: same names, signatures and answers
(mode "compat"), computed by the fast engine."""

from __future__ import annotations

import numpy as np
import torch

from . import dp
from .api import published_sample, published_search


def _check_batch(z, batch_size):
    if batch_size != z.shape[0]:
        raise ValueError(f"batch_size ({batch_size}) must equal z.shape[0] ({z.shape[0]})")


def _to(z, device):
    return z if device is None else z.to(device)


def search_OSS(model, z, batch_size, class_emb, device, teacher_steps=200, student_steps=5, model_kwargs=None):
    """One list of student_steps grid indices per sample, as the published search_OSS returns."""
    _check_batch(z, batch_size)
    return published_search(model, _to(z, device), class_emb, student_steps=student_steps,
                            teacher_steps=teacher_steps, mode="compat", aggregate="per_sample", float32=False,
                            model_kwargs=model_kwargs, progress=False).steps


def search_OSS_batch(model, z, batch_size, class_emb, device, teacher_steps=200, student_steps=5,
                     model_kwargs=None):
    """Same answers as search_OSS (the published batched variant), for any conditioning."""
    return search_OSS(model, z, batch_size, class_emb, device, teacher_steps, student_steps, model_kwargs)


def search_OSS_video(model, z, batch_size, class_emb, device, teacher_steps=200, student_steps=5, norm=2,
                     model_kwargs=None, frame_type="6", channel_type="4", random_channel=False, float32=True):
    """The first sample's list, with the cost on channel_type channels and frame_type frames.

    random_channel draws the channels anew per level; the draws are seeded from numpy's global
    generator, so np.random.seed makes them repeatable (the published code also uses it).
    """
    _check_batch(z, batch_size)
    seed = int(np.random.randint(0, 2**31 - 1)) if random_channel else 0
    steps = published_search(model, _to(z, device), class_emb, student_steps=student_steps,
                             teacher_steps=teacher_steps, mode="compat", aggregate="per_sample", norm=norm,
                             channels=channel_type, frames=frame_type,
                             random_channels=random_channel and channel_type != "all", seed=seed, float32=float32,
                             model_kwargs=model_kwargs, progress=False).steps
    return steps[0]


def infer_OSS(oss_steps, model, z, class_emb, device, renorm_flag=False, max_amp=None, min_amp=None,
              float32=True, model_kwargs=None):
    """Euler along [0] + oss_steps from the noise z (with amplitude calibration if renorm_flag)."""
    amps = (max_amp, min_amp) if renorm_flag else (None, None)
    return published_sample(model, _to(z, device), oss_steps, class_emb, float32=float32, model_kwargs=model_kwargs,
                  max_amp=amps[0], min_amp=amps[1])


def cal_medium(oss_steps_all):
    """Per position: sort, then (l[n//2] + l[n//2 - 1]) // 2."""
    rows = [list(r) for r in oss_steps_all]
    if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("cal_medium needs one or more step lists of one length")
    if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for r in rows for i in r):
        raise ValueError("cal_medium needs lists of integer grid indices")
    if any(not -2**63 <= int(i) < 2**63 for r in rows for i in r):
        raise ValueError("cal_medium: grid indices must fit in int64")
    return dp.median_steps(torch.tensor(rows, dtype=torch.int64)).tolist()
