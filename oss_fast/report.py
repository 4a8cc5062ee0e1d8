"""How good is a schedule: samples against the teacher's on held-out noises, tables and pictures.

The teacher is the model's own N-step Euler sampler on its grid; a schedule's error is the mean
squared difference between its samples (with its solver) and the teacher's from the same noises.
The numbers (oss_fast.metrics): the PSNR of the MSE over all noises, the mean of the per-noise PSNRs,
and their 10th percentile and minimum.

Pictures need matplotlib (`pip install "oss_fast[plots]"`); without it the tables are still made
and `plots_missing()` says how to get the pictures.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .api import sample, schedule_steps
from .files import write_atomic
from .metrics import peak, psnr_summary, sample_errors
from .grid import shifted_steps, uniform_steps
from .progress import progress
from .schedule import Schedule
from .zoo import noises

PLOTS_HINT = 'pictures need matplotlib: pip install "oss_fast[plots]" (or pip install matplotlib)'


def plots_missing() -> str | None:
    """None when the pictures can be drawn, else a one-line hint how to get them."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return PLOTS_HINT
    return None


@torch.no_grad()
def teacher_samples(model, z, cond=None, **kwargs) -> torch.Tensor:
    N = len(model.fm_steps) - 1
    return sample(model, z, list(range(1, N + 1)), cond, **kwargs)


@torch.no_grad()
def errors(model, z, cond, teacher: torch.Tensor, steps, **kwargs) -> dict:
    """psnr_summary of the samples along `steps` (grid indices, or a Schedule with its solver; kwargs
    go to oss_fast.sample) against the teacher's."""
    x = sample(model, z, steps, cond, **kwargs)
    return psnr_summary(sample_errors(x, teacher), peak(teacher))


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """rows of dicts -> a markdown table (floats: MSE in scientific notation, others with 2 decimals)."""

    def fmt(key, value):
        if isinstance(value, float):
            return f"{value:.3e}" if key.startswith("mse") else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(fmt(c, r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- pictures

@contextlib.contextmanager
def _figure(path, rows: int = 1, cols: int = 1, figsize=(6, 4)):
    """A figure with a rows x cols grid of axes, written to path (PNG) when the block ends."""
    if plots_missing():
        raise ImportError(PLOTS_HINT)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False)
    try:
        yield axes
        fig.tight_layout()
        write_atomic(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    finally:
        plt.close(fig)


def plot_sigmas(schedules: dict, path) -> None:
    """Sigma per step of each schedule (name -> descending sigmas ending at 0)."""
    with _figure(path) as axes:
        ax = axes[0][0]
        for name, sigmas in schedules.items():
            ax.plot(range(len(sigmas)), sigmas, marker="o", label=name)
        ax.set(xlabel="step", ylabel="sigma (flow time)", title="schedules")
        ax.legend()


@dataclass
class Curve:
    """An error-vs-steps curve: MSE to the teacher per step count. `searched`: the step count the
    schedule was searched at, when the other points are interpolations of that one schedule (drawn
    dashed, the searched point marked); None when every point is a schedule of its own."""

    label: str
    points: dict
    searched: int | None = None


def plot_error_vs_steps(curves: list, path) -> None:
    """MSE to the teacher against the number of steps, one line per Curve."""
    with _figure(path, figsize=(7, 4.5)) as axes:
        ax = axes[0][0]
        for curve in curves:
            ks = sorted(curve.points)
            label = curve.label if curve.searched is None else \
                f"{curve.label}: searched at {curve.searched}, other counts interpolated"
            line, = ax.plot(ks, [curve.points[k] for k in ks], marker="o", markersize=3, label=label,
                            linestyle="-" if curve.searched is None else "--")
            if curve.searched is not None:
                ax.plot([curve.searched], [curve.points[curve.searched]], marker="*", markersize=12,
                        color=line.get_color(), linestyle="none")
        ax.set(yscale="log", xlabel="steps", ylabel="MSE to the teacher")
        ax.legend(fontsize=7)


def image_grid(rows: dict, path, to_images, reference: str | None = None, cell: float = 0.9) -> None:
    """One row of images per name (name -> latents [n, C, H, W]); to_images maps latents to [0, 1].
    With reference (a name in rows), every other row shows each image's PSNR to the reference's
    image above it and is followed by a row of its |difference|, magnified by one gain for all rows
    (the 99th percentile of the differences shows white): K-step samples of a good schedule look
    like the teacher's, so the error is what a person needs to see."""
    n = min(len(v) for v in rows.values())
    images = {name: to_images(latents[:n]).cpu().float() for name, latents in rows.items()}
    diffs = {name: imgs - images[reference] for name, imgs in images.items() if reference not in (None, name)}
    if diffs:
        top = torch.cat([d.abs().flatten() for d in diffs.values()]).quantile(0.99).item()
        gain = max(1.0, round(1 / max(top, 1e-6)))
    shown = []  # (label, images, per-image titles or None)
    for name, imgs in images.items():
        if name not in diffs:
            shown.append((name, imgs, None))
            continue
        mse = diffs[name].pow(2).flatten(1).mean(1).clamp_min(1e-12)
        shown.append((name, imgs, [f"{10 * math.log10(1 / m):.1f} dB" for m in mse.tolist()]))
        shown.append((f"|{name} - {reference}| x{gain:g}", (diffs[name].abs() * gain).clamp(0, 1), None))
    with _figure(path, len(shown), n, figsize=(n * cell + 1.5, len(shown) * (cell + 0.2) + 0.3)) as axes:
        for r, (label, imgs, titles) in enumerate(shown):
            for c in range(n):
                image = imgs[c]
                axes[r][c].imshow(image[0] if image.shape[0] == 1 else image.permute(1, 2, 0), cmap="gray",
                                  vmin=0, vmax=1)
                axes[r][c].set_xticks([])
                axes[r][c].set_yticks([])
                if titles:
                    axes[r][c].set_title(titles[c], fontsize=6)
            axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)


# ---------------------------------------------------------------------------- comparison

@dataclass
class Comparison:
    """What compare() found and wrote: the table (markdown, with its header line) and the files."""

    header: str
    table: str
    files: list = field(default_factory=list)
    note: str | None = None  # why pictures are missing, if they are

    def __str__(self) -> str:
        return f"{self.header}\n{self.table}"


def step_counts(K: int) -> list[int]:
    """The step counts of an error-vs-steps curve around K."""
    return sorted({max(2, K // 2), max(2, K - 2), K, K + 2, K * 2})


def steps_on(schedule: Schedule, grid) -> list[int]:
    """A schedule's grid indices on the model's grid (checked to be that grid), or its sigmas
    snapped onto the grid when it has no indices."""
    if schedule.indices is None:
        return schedule.snap(grid).indices
    return schedule_steps(schedule, torch.as_tensor(grid, dtype=torch.float64).cpu())


@torch.no_grad()
def compare(model, schedules: dict, out, samples: int, seed: int, show: bool = False) -> Comparison:
    """Each schedule (name -> Schedule) and uniform and time-shifted steps of the same lengths
    against the teacher on `samples` noises drawn with `seed`: MSE/PSNR table (compare.md), sigma per
    step (sigmas.png), error against step count (error_vs_steps.png) and, for image models, a grid
    teacher / schedules / uniform (samples.png)."""
    out = Path(out)
    first = next(iter(schedules.values()))
    fixed_kinds = sorted({(len(s), s.solver) for s in schedules.values()})
    solvers = {s.solver for s in schedules.values()}
    units = 2 + sum(2 + len(step_counts(len(s))) for s in schedules.values()) + 2 * len(fixed_kinds) + len(solvers)
    with progress(units, "comparison", enabled=show) as bar:
        return _compare(model, schedules, out, samples, seed, first, fixed_kinds, bar)


def _compare(model, schedules, out, samples, seed, first, fixed_kinds, bar) -> Comparison:
    z, cond = noises(model, samples, seed)
    teacher = teacher_samples(model, z, cond)
    bar.update()
    grid = model.fm_steps
    rows, sigmas, curves, pictures = [], {}, [], {"teacher": teacher}
    for name, schedule in schedules.items():
        steps = steps_on(schedule, grid)
        solver = schedule.solver
        rows.append(dict(schedule=name, solver=solver, steps=len(steps),
                         **errors(model, z, cond, teacher, steps, solver=solver)))
        sigmas[name] = schedule.sigmas
        pictures[f"{name} ({solver}, {len(steps)} steps)"] = sample(model, z, steps, cond, solver=solver)
        bar.update(2)
        points = {}
        for k in step_counts(len(schedule)):
            points[k] = errors(model, z, cond, teacher, steps_on(schedule.interpolate(k), grid), solver=solver)["mse"]
            bar.update()
        curves.append(Curve(f"{name} ({solver})", points, searched=len(schedule)))
    # the fixed schedules of the same lengths, each with the solvers of the schedules compared
    fixed = (("uniform", uniform_steps), ("shifted(3)", shifted_steps))
    for K, solver in fixed_kinds:
        for label, steps_of in fixed:
            bar.update()
            steps = steps_of(grid, K)
            rows.append(dict(schedule=f"{label} {K}", solver=solver, steps=len(steps),
                             **errors(model, z, cond, teacher, steps, solver=solver)))
            sigmas[f"{label} {K}"] = Schedule.from_indices(steps, grid=grid).sigmas
    for solver in sorted({s.solver for s in schedules.values()}):
        bar.update()
        for label, steps_of in fixed:
            curves.append(Curve(f"{label} ({solver})", {k: errors(model, z, cond, teacher, steps_of(grid, k),
                                                                     solver=solver)["mse"]
                                                          for k in step_counts(len(first))}))
    pictures[f"uniform ({first.solver}, {len(first)} steps)"] = sample(model, z, uniform_steps(grid, len(first)), cond,
                                                                     solver=first.solver)
    bar.update()

    result = Comparison(header=f"MSE / PSNR to the {len(grid) - 1}-step teacher on {samples} held-out noises "
                               f"(seed {seed}); psnr: of the MSE; mean, p10 and min psnr: the mean, 10th percentile "
                               f"and minimum of the per-noise PSNRs",
                        table=markdown_table(rows, ["schedule", "solver", "steps", "mse", "psnr", "mean_psnr", "p10_psnr",
                                                    "min_psnr"]))
    write_atomic(out / "compare.md", f"{result.header}\n\n{result.table}\n")
    result.files.append(out / "compare.md")
    result.note = plots_missing()
    if result.note is None:
        plot_sigmas(sigmas, out / "sigmas.png")
        plot_error_vs_steps(curves, out / "error_vs_steps.png")
        result.files += [out / "sigmas.png", out / "error_vs_steps.png"]
        if hasattr(model, "to_images"):
            image_grid({k: v[:8] for k, v in pictures.items()}, out / "samples.png", model.to_images,
                       reference="teacher")
            result.files.append(out / "samples.png")
    return result
