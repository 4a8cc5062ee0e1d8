"""The quality tables: each cell is the error of the schedule its row names, with its solver."""

import math

import numpy as np
import pytest
import torch

import oss_fast
from oss_fast.metrics import psnr_summary
from oss_fast.quality import METHODS, Bench, quality_rows, solver_rows
from oss_fast.report import errors


def test_errors_report_the_psnrs_and_their_tail():
    bench = Bench("gaussian_mixture", 1.0, 12, 4, 6)
    result = errors(bench.model, bench.z_eval, bench.cond_eval, bench.teacher, [2, 5, 12])
    assert result["mean_psnr"] >= result["psnr"]  # the mean of -log MSE is at least -log of the mean
    peak = float(bench.teacher.max() - bench.teacher.min()) ** 2
    assert result["psnr"] == pytest.approx(10 * math.log10(peak / result["mse"]), rel=1e-12)
    x = oss_fast.sample(bench.model, bench.z_eval, [2, 5, 12], bench.cond_eval)
    per_noise = 10 * np.log10(peak / ((x.double() - bench.teacher.double()) ** 2).flatten(1).mean(1).numpy())
    assert result["p10_psnr"] == pytest.approx(np.percentile(per_noise, 10), rel=1e-12)
    assert result["min_psnr"] == pytest.approx(per_noise.min(), rel=1e-12) and result["min_psnr"] < result["p10_psnr"]


def test_psnr_summary_of_exact_samples_is_infinite_not_nan():
    summary = psnr_summary(torch.tensor([0.0, 1e-4, 1e-2]), 4.0)
    assert summary["mean_psnr"] == math.inf and summary["min_psnr"] == pytest.approx(10 * math.log10(400))
    assert math.isfinite(summary["p10_psnr"])  # 10% of the way from 1e-2's PSNR to 1e-4's
    assert summary["p10_psnr"] == pytest.approx(np.percentile([10 * math.log10(400), 10 * math.log10(4e4)], 20))


def test_solver_table_cells_are_the_errors_of_their_schedules():
    bench = Bench("gaussian_mixture", 1.0, 12, 4, 6)
    rows, summary = solver_rows(bench, ks=(3,), solvers=("ab2",))
    by = {(r["solver"], r["method"]): r for r in rows}
    euler_default = bench.search(3, solver="euler")  # the Euler default: the standard it is held to
    euler_oss = bench.search(3, solver="euler", mode="compat", aggregate="median", refine=False)  # the published one
    assert by[("euler", "Euler-OSS (published) schedule")]["psnr K=3"] == bench.score(euler_oss)["psnr"]
    with_ab2 = by[("ab2", "Euler search's schedule")]
    assert with_ab2["p10 psnr K=3"] == bench.score(euler_default, "ab2")["p10_psnr"]
    assert with_ab2["mean psnr K=3"] != by[("euler", "Euler search's schedule")]["mean psnr K=3"]  # the solver counts
    default = bench.searched(3, solver="ab2")
    assert by[("ab2", "the default (guarded)")]["min psnr K=3"] == bench.score(default.schedule, "ab2")["min_psnr"]
    assert by[("ab2", "the default (guarded)")]["rows K=3"] <= 12 * 4  # N (K + 1) per noise, the guard's included
    # the summary: the default against the best of the three standard schedules, measure by measure
    (entry,) = summary
    standards = [by[("ab2", label)] for label in ("uniform", "shifted(3)", "Euler search's schedule")]
    for measure in ("mean psnr", "psnr", "p10 psnr"):
        best = max(r[f"{measure} K=3"] for r in standards)
        assert entry[f"{measure} lead"] == pytest.approx(by[("ab2", "the default (guarded)")][f"{measure} K=3"] - best)
    assert entry["kept"] == default.guard.chosen
    assert entry["within 0.3 dB"] == ("yes" if min(entry[f"{m} lead"] for m in ("mean psnr", "psnr", "p10 psnr"))
                                      >= -0.3 else "no")


def test_euler_table_has_every_method_at_every_k():
    bench = Bench("gaussian_mixture", 3.0, 10, 3, 4)
    rows = quality_rows(bench, ks=(2, 4))
    columns = {"method"} | {f"{m} K={K}" for K in (2, 4) for m in ("psnr", "mean psnr", "p10 psnr", "min psnr", "rows")}
    assert len(rows) == len(METHODS) and all(set(r) == columns for r in rows)
    by_method = {r["method"]: r for r in rows}
    assert by_method["uniform"]["rows K=4"] == 0 and by_method["teacher, joint"]["rows K=4"] == 10  # N per noise
    assert by_method["compat, median (published)"]["rows K=2"] <= 10 * 3  # N (K + 1) at most


def test_sample_grid_shows_each_images_psnr_and_a_magnified_difference(monkeypatch, tmp_path):
    import contextlib
    from unittest import mock

    import oss_fast.report as report

    drawn = {}

    @contextlib.contextmanager
    def figure(path, rows, cols, figsize):
        drawn["axes"] = [[mock.Mock() for _ in range(cols)] for _ in range(rows)]
        yield drawn["axes"]

    monkeypatch.setattr(report, "_figure", figure)
    teacher = torch.full((3, 1, 4, 4), 0.5)
    report.image_grid({"teacher": teacher, "oss": teacher + 0.1}, tmp_path / "x.png", lambda x: x,
                      reference="teacher")
    axes = drawn["axes"]
    assert len(axes) == 3  # teacher, oss, |oss - teacher|
    assert [a.set_title.call_args.args[0] for a in axes[1]] == ["20.0 dB"] * 3  # MSE 0.01
    assert axes[2][0].set_ylabel.call_args.args[0] == "|oss - teacher| x10"  # 0.1 shows white
    shown = axes[2][0].imshow.call_args.args[0]
    assert torch.allclose(shown, torch.ones_like(shown))


def test_comparison_pictures_say_what_they_show(monkeypatch, tmp_path):
    # error_vs_steps: the other step counts of a searched schedule are labelled interpolations of it;
    # each standard curve names its solver; samples.png labels each row with its solver and step count
    import oss_fast.report as report
    from oss_fast import Schedule

    drawn = {}
    monkeypatch.setattr(report, "plots_missing", lambda: None)
    monkeypatch.setattr(report, "plot_sigmas", lambda *a: None)
    monkeypatch.setattr(report, "plot_error_vs_steps", lambda curves, path: drawn.setdefault("curves", curves))
    monkeypatch.setattr(report, "image_grid", lambda rows, *a, **k: drawn.setdefault("rows", list(rows)))
    model = Bench("digits", 1.0, 20, 2, 2).model
    schedules = {"a": Schedule.from_indices([3, 9, 20], model, solver="unipc"),
                 "b": Schedule.from_indices([5, 12, 16, 20], model)}
    report.compare(model, schedules, tmp_path, samples=2, seed=0)
    curves = {c.label: c for c in drawn["curves"]}
    assert curves["a (unipc)"].searched == 3 and curves["b (euler)"].searched == 4
    assert sorted(curves["a (unipc)"].points) == report.step_counts(3)
    assert {"uniform (unipc)", "uniform (euler)", "shifted(3) (unipc)", "shifted(3) (euler)"} <= set(curves)
    assert curves["uniform (euler)"].searched is None
    assert drawn["rows"] == ["teacher", "a (unipc, 3 steps)", "b (euler, 4 steps)", "uniform (unipc, 3 steps)"]
