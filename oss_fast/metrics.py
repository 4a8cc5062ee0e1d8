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

def sample_errors(x: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-sample MSEs [n] of samples x [n, ...] against the teacher's, in float64."""
    return ((x.double() - teacher.double()) ** 2).flatten(1).mean(1)


def peak(teacher: torch.Tensor) -> float:
    """R^2: the squared value range of the teacher's samples."""
    return float(teacher.max() - teacher.min()) ** 2


def psnr_measures(errors: torch.Tensor, peak_value: float) -> torch.Tensor:
    """[..., 3]: the mean PSNR, the PSNR of the mean MSE and the 10th-percentile PSNR (linear
    interpolation, numpy's default) of per-sample MSEs [..., n]."""
    psnrs = 10 * torch.log10(peak_value / errors)  # +inf where a sample is exact
    p10 = torch.quantile(psnrs.clamp(max=1e300), 0.1, dim=-1)  # interpolating with +inf would give NaN
    return torch.stack([psnrs.mean(-1), 10 * torch.log10(peak_value / errors.mean(-1)),
                        torch.where(p10 >= 1e300, math.inf, p10)], -1)


def psnr_summary(per_sample: torch.Tensor, peak_value: float) -> dict:
    """From per-sample MSEs [n] and R^2: the MSE, the three psnr_measures and the minimum per-sample PSNR."""
    per_sample = per_sample.double()
    mean_psnr, psnr, p10_psnr = psnr_measures(per_sample, peak_value).tolist()
    return dict(mse=float(per_sample.mean()), psnr=psnr, mean_psnr=mean_psnr, p10_psnr=p10_psnr,
                min_psnr=float(10 * torch.log10(peak_value / per_sample.max())))
