"""A second learned flow-matching model, on richer data: 16x16 RGB patches of photographs.

The data are the two photographs scikit-learn ships (`load_sample_images`: a Chinese temple and a
flower, 427 x 640), halved in size, cut into random 16x16 patches; the label is the photograph
(0 temple, 1 flower, 2 = null, for classifier-free guidance). Pixels 0..255 map to [-1, 1]. Its
samples mix flat regions, edges and fine texture, so one noise can need a very different step
schedule than another: the model where a schedule that serves its search noises well on average
can fail some unseen ones (README, Quality with solvers).

The weights ship as `patches_weights.pt` next to this file; `scripts/train_zoo.py patches` remakes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .unet import ImageFlow, load_unet

WEIGHTS_PATH = Path(__file__).with_name("patches_weights.pt")
PATCH = 16


class PatchesFlow(ImageFlow):
    """The patches SmallUNet on [R, 3, 16, 16] images (see ImageFlow)."""

    def __init__(self, net, teacher_steps: int = 100, shift: float = 1.0, guidance_scale: float = 1.0,
                 dtype=torch.float32):
        super().__init__(net, (3, PATCH, PATCH), "patches", teacher_steps, shift, guidance_scale, dtype)

    @staticmethod
    def photographs() -> torch.Tensor:
        """The two photographs in model space, halved in size: [2, 3, 213, 320]."""
        from sklearn.datasets import load_sample_images

        images = torch.tensor(np.stack(load_sample_images().images), dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1
        return F.avg_pool2d(images, 2)

    @staticmethod
    def crops(photographs: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n random 16x16 patches (mirrored at random) [n, 3, 16, 16] and the photograph of each."""
        count, _, height, width = photographs.shape
        labels = torch.randint(0, count, (n,), generator=gen)
        top = torch.randint(0, height - PATCH + 1, (n,), generator=gen)
        left = torch.randint(0, width - PATCH + 1, (n,), generator=gen)
        mirror = torch.rand(n, generator=gen) < 0.5
        patches = torch.stack([photographs[b, :, y:y + PATCH, x:x + PATCH]
                               for b, y, x in zip(labels.tolist(), top.tolist(), left.tolist())])
        return torch.where(mirror[:, None, None, None], patches.flip(-1), patches), labels


def patches(teacher_steps: int = 100, shift: float = 1.0, guidance_scale: float = 1.0,
            dtype=torch.float32, device="cpu") -> PatchesFlow:
    """The bundled trained patches model (weights in patches_weights.pt) as a PatchesFlow."""
    return PatchesFlow(load_unet(WEIGHTS_PATH, device), teacher_steps, shift, guidance_scale, dtype)
