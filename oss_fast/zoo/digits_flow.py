"""A small learned flow-matching model: class-conditional 8x8 digits (scikit-learn's `load_digits`).

Unlike the Gaussian mixture its velocity is a trained network, so it has the errors and the
curvature of a real model while still running in seconds on a CPU. Pixels 0..16 map to [-1, 1]
(x / 8 - 1). Labels 0..9 are the digits and 10 is the null label used for classifier-free guidance.

The weights ship as `digits_weights.pt` next to this file; `scripts/train_zoo.py digits` remakes them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .unet import ImageFlow, load_unet

NULL_LABEL = 10
WEIGHTS_PATH = Path(__file__).with_name("digits_weights.pt")


class DigitsFlow(ImageFlow):
    """The digits SmallUNet on [R, 1, 8, 8] images (see ImageFlow)."""

    def __init__(self, net, teacher_steps: int = 100, shift: float = 1.0, guidance_scale: float = 1.0,
                 dtype=torch.float32):
        super().__init__(net, (1, 8, 8), "digits", teacher_steps, shift, guidance_scale, dtype)

    @staticmethod
    def data(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n (default all 1797) real digits in model space [n, 1, 8, 8] and their labels."""
        from sklearn.datasets import load_digits

        digits_set = load_digits()
        x = torch.tensor(digits_set.images[:n], dtype=torch.float32)[:, None] / 8 - 1
        return x, torch.tensor(digits_set.target[:n], dtype=torch.long)


def digits(teacher_steps: int = 100, shift: float = 1.0, guidance_scale: float = 1.0,
           dtype=torch.float32, device="cpu") -> DigitsFlow:
    """The bundled trained digits model (weights in digits_weights.pt) as a DigitsFlow."""
    return DigitsFlow(load_unet(WEIGHTS_PATH, device), teacher_steps, shift, guidance_scale, dtype)
