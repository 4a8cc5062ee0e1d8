"""The Euler update x + v * ds with a step per row, rounded exactly as the reference's
`x + v * ds` with a Python float ds (DESIGN §3.4 precision rules)."""

from __future__ import annotations

import torch


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype torch computes `tensor * python_float` in: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def euler_rows(x: torch.Tensor, v: torch.Tensor, ds: torch.Tensor, float32: bool) -> torch.Tensor:
    """x + v * ds[r] for every row r of x (first dimension), in x's dtype.

    float32=True computes in float32 and casts back (the published video/inference default);
    otherwise the product and the sum are each rounded to x's dtype, as eager torch does.
    """
    shape = (-1,) + (1,) * (x.dim() - 1)
    if float32:
        return (x.float() + v.float() * ds.to(torch.float32).reshape(shape)).to(x.dtype)
    step = ds.to(opmath_dtype(x.dtype)).reshape(shape)
    if x.dtype in (torch.float32, torch.float64):
        return x + v.to(x.dtype) * step
    product = (v.to(x.dtype).to(step.dtype) * step).to(x.dtype)
    return (x.to(step.dtype) + product.to(step.dtype)).to(x.dtype)
