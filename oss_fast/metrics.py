"""How close samples are to the teacher's: per-sample errors and the PSNRs reported everywhere.

PSNRs are 10 log10(R^2 / MSE) with R the value range of the teacher's samples: of the MSE over all
noises ("psnr", dominated by the worst samples), the mean of the per-noise PSNRs ("mean psnr", what
a typical sample sees), and the tail of the per-noise PSNRs: their 10th percentile ("p10 psnr",
what one seed in ten is worse than) and minimum ("min psnr", the worst seed). They can rank
schedules differently.
"""

from __future__ import annotations

import math

import torch

MEASURES = ("mean_psnr", "psnr", "p10_psnr")  # what a schedule must not lose on (min_psnr: one seed, reported only)


def sample_errors(x: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-sample MSEs [n] of samples x [n, ...] against the teacher's, in float64."""
    return ((x.double() - teacher.double()) ** 2).flatten(1).mean(1)


def peak(teacher: torch.Tensor) -> float:
    """R^2: the squared value range of the teacher's samples."""
    return float(teacher.max() - teacher.min()) ** 2


def psnr_summary(per_sample: torch.Tensor, peak_value: float) -> dict:
    """From per-sample MSEs [n] and R^2: the MSE, the PSNR of the MSE, and the mean, 10th percentile
    (linear interpolation, numpy's default) and minimum of the per-sample PSNRs."""
    per_sample = per_sample.double()
    mse = float(per_sample.mean())
    psnrs = 10 * torch.log10(peak_value / per_sample)  # +inf where a sample is exact
    p10 = float(torch.quantile(psnrs.clamp(max=1e300), 0.1))  # interpolating with +inf would give NaN
    return dict(mse=mse, psnr=10 * math.log10(peak_value / mse) if mse > 0 else math.inf,
                mean_psnr=float(psnrs.mean()), p10_psnr=math.inf if p10 >= 1e300 else p10,
                min_psnr=float(psnrs.min()))
