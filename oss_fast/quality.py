"""The quality table: every mode and aggregation of the search against uniform and time-shifted
steps, on the bundled models with uniform and shifted grids (`oss-fast quality`)."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .api import search
from .grid import shifted_steps, uniform_steps
from .report import errors, markdown_table, teacher_samples
from .zoo import load_model, noises

METHODS = [  # (label, search options); None: a fixed schedule
    ("uniform", None),
    ("shifted(3)", None),
    ("teacher, joint", dict(mode="teacher", aggregate="joint")),
    ("exact, median", dict(mode="exact", aggregate="median")),
    ("exact, joint", dict(mode="exact", aggregate="joint")),
    ("exact free start, median", dict(mode="exact", aggregate="median", free_start=True)),
    ("exact free start, joint", dict(mode="exact", aggregate="joint", free_start=True)),
    ("compat, median", dict(mode="compat", aggregate="median")),
    ("compat, joint", dict(mode="compat", aggregate="joint")),
    ("auto (the default)", dict(mode="auto")),
]
GRIDS = [("uniform grid", 1.0), ("shifted grid (3)", 3.0)]


def quality_rows(model_name: str, shift: float, teacher_steps: int, ks, search_samples: int, eval_samples: int,
                 bar=None) -> list[dict]:
    """One row per method, with mse/psnr columns per K."""
    model = load_model(model_name, teacher_steps, shift)
    z, cond = noises(model, search_samples, seed=0)
    z_eval, cond_eval = noises(model, eval_samples, seed=1000)
    teacher = teacher_samples(model, z_eval, cond_eval)
    rows = {label: dict(method=label) for label, _ in METHODS}
    for K in ks:
        for label, options in METHODS:
            if options is None:
                steps = (uniform_steps if label == "uniform" else shifted_steps)(model.fm_steps, K)
            else:
                res = search(model, z, cond, student_steps=K, progress=False, **options)
                steps = res.schedule
            result = errors(model, z_eval, cond_eval, teacher, steps)
            rows[label][f"mse K={K}"] = result["mse"]
            rows[label][f"psnr K={K}"] = result["psnr"]
            if bar is not None:
                bar.update()
    return list(rows.values())


def quality_table(models=("digits", "gaussian_mixture"), teacher_steps: int = 100, ks=(5, 10),
                  search_samples: int = 32, eval_samples: int = 64, progress: bool = True) -> str:
    """Markdown: one table per model and grid; MSE and PSNR (dB) to the teacher per K."""
    columns = ["method"] + [f"{m} K={K}" for K in ks for m in ("mse", "psnr")]
    parts = [f"MSE and PSNR (dB) to the {teacher_steps}-step teacher on {eval_samples} held-out noises "
             f"(seed 1000); searches on {search_samples} noises (seed 0)."]
    total = len(models) * len(GRIDS) * len(ks) * len(METHODS)
    with torch.no_grad(), tqdm(total=total, desc="quality", disable=not progress, leave=False) as bar:
        for name in models:
            for grid_label, shift in GRIDS:
                rows = quality_rows(name, shift, teacher_steps, ks, search_samples, eval_samples, bar)
                parts.append(f"**{name}, {grid_label}**\n\n" + markdown_table(rows, columns))
    return "\n\n".join(parts)
