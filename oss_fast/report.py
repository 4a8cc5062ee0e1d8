"""How good is a schedule: samples against the teacher's on held-out noises, tables and pictures.

The teacher is the model's own N-step Euler sampler on its grid; a schedule's error is the mean
squared difference between its samples and the teacher's from the same noises, and its PSNR is
10 log10(R^2 / MSE) with R the value range of the teacher's samples.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .api import sample
from .schedule import snap_to_grid


def uniform_steps(grid, K: int) -> list[int]:
    """K steps uniform in flow time (sigma = 1, (K-1)/K, ..., 1/K), on the grid."""
    return snap_to_grid(grid, np.linspace(1, 0, K + 1)[:-1])


def shifted_steps(grid, K: int, shift: float = 3.0) -> list[int]:
    """K steps uniform in flow time then time-shifted, s' = a s / (1 + (a - 1) s) (SD3/FLUX style)."""
    s = np.linspace(1, 0, K + 1)[:-1]
    return snap_to_grid(grid, shift * s / (1 + (shift - 1) * s))


@torch.no_grad()
def teacher_samples(model, z, cond=None, **kwargs) -> torch.Tensor:
    N = len(model.fm_steps) - 1
    return sample(model, z, list(range(1, N + 1)), cond, **kwargs)


@torch.no_grad()
def errors(model, z, cond, teacher: torch.Tensor, steps: list[int], **kwargs) -> dict:
    """MSE and PSNR of the samples along `steps` against the teacher's."""
    x = sample(model, z, steps, cond, **kwargs)
    mse = float(((x.double() - teacher.double()) ** 2).mean())
    value_range = float(teacher.max() - teacher.min())
    psnr = 10 * math.log10(value_range**2 / mse) if mse > 0 else math.inf
    return dict(mse=mse, psnr=psnr)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """rows of dicts -> a markdown table (floats: MSE in scientific notation, others with 2 decimals)."""

    def fmt(key, value):
        if isinstance(value, float):
            return f"{value:.3e}" if key.startswith("mse") else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(fmt(c, r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def plot_sigmas(schedules: dict, path) -> None:
    """Sigma per step of each schedule (name -> descending sigmas ending at 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, sigmas in schedules.items():
        ax.plot(range(len(sigmas)), sigmas, marker="o", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("sigma (flow time)")
    ax.set_title("schedules")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_error_vs_steps(curves: dict, path) -> None:
    """MSE to the teacher against the number of steps (name -> {K: mse})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ks = sorted(points)
        ax.plot(ks, [points[k] for k in ks], marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("steps")
    ax.set_ylabel("MSE to the teacher")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def image_grid(rows: dict, path, to_images) -> None:
    """One row of images per name (name -> latents [n, C, H, W]); to_images maps latents to [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0 + 0.3), squeeze=False)
    for r, (name, latents) in enumerate(rows.items()):
        images = to_images(latents[:n]).cpu()
        for c in range(n):
            ax = axes[r][c]
            image = images[c]
            ax.imshow(image[0] if image.shape[0] == 1 else image.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
