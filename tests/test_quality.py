"""The quality tables: each cell is the error of the schedule its row names, with its solver."""

import math

import pytest
import torch

from oss_fast.quality import METHODS, Bench, quality_rows, solver_rows
from oss_fast.report import errors


def test_errors_report_both_psnrs():
    bench = Bench("gaussian_mixture", 1.0, 12, 4, 6)
    result = errors(bench.model, bench.z_eval, bench.cond_eval, bench.teacher, [2, 5, 12])
    assert result["mean_psnr"] >= result["psnr"]  # the mean of -log MSE is at least -log of the mean
    peak = float(bench.teacher.max() - bench.teacher.min()) ** 2
    assert result["psnr"] == pytest.approx(10 * math.log10(peak / result["mse"]), rel=1e-12)


def test_solver_table_cells_are_the_errors_of_their_schedules():
    bench = Bench("gaussian_mixture", 1.0, 12, 4, 6)
    rows = solver_rows(bench, ks=(3,), solvers=("ab2",))
    euler_oss = bench.search(3, mode="compat", aggregate="median")  # the published search
    assert rows[0]["solver"] == "euler" and rows[0]["psnr K=3"] == bench.score(euler_oss)["psnr"]
    with_ab2 = next(r for r in rows if r["solver"] == "ab2" and r["method"] == "Euler-OSS schedule")
    assert with_ab2["mean psnr K=3"] == bench.score(euler_oss, "ab2")["mean_psnr"]
    assert with_ab2["psnr K=3"] != rows[0]["psnr K=3"]  # the solver changed the samples
    searched = next(r for r in rows if r["solver"] == "ab2" and r["method"] == "search exact, joint_rms")
    steps = bench.search(3, mode="exact", aggregate="joint_rms", solver="ab2")
    assert searched["psnr K=3"] == bench.score(steps, "ab2")["psnr"]


def test_euler_table_has_every_method_at_every_k():
    bench = Bench("gaussian_mixture", 3.0, 10, 3, 4)
    rows = quality_rows(bench, ks=(2, 4))
    columns = {"method"} | {f"{m} K={K}" for K in (2, 4) for m in ("psnr", "mean psnr", "rows")}
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
