"""The oss-fast command, run as a user would (python -m oss_fast)."""

import json
import os
import subprocess
import sys

import pytest

from oss_fast import Schedule


def run(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "oss_fast", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=env)


SMALL = ["--model", "gaussian_mixture", "--teacher-steps", "20", "--no-progress"]


def test_search_writes_schedule_and_comparison(tmp_path):
    out = tmp_path / "run"
    result = run("search", *SMALL, "--student-steps", "4", "--samples", "2", "--eval-samples", "4",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"outputs written to {out}" in result.stdout
    schedule = Schedule.load(out / "schedule.json")
    assert len(schedule) == 4 and schedule.metadata["teacher_steps"] == 20
    assert "| oss | 4 |" in result.stdout and "| uniform 4 | 4 |" in result.stdout
    for png in ("sigmas.png", "error_vs_steps.png"):
        assert (out / png).stat().st_size > 1000
    compared = run("compare", *SMALL, str(out / "schedule.json"), "--samples", "4", "--out", str(tmp_path / "cmp"))
    assert compared.returncode == 0, compared.stderr
    assert (tmp_path / "cmp" / "compare.md").read_text().count("|") > 10
    sampled = run("sample", *SMALL, "--schedule", str(out / "schedule.json"), "--samples", "3",
                  "--out", str(tmp_path / "smp"))
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "smp" / "samples.pt").exists()


def test_without_matplotlib_search_still_writes_schedule_and_table(tmp_path):
    # `pip install .` has no matplotlib: a package that fails to import stands in for the missing one
    (tmp_path / "fake" / "matplotlib").mkdir(parents=True)
    (tmp_path / "fake" / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    result = run("search", *SMALL, "--student-steps", "3", "--samples", "2", "--eval-samples", "4",
                 "--out", str(out), env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert len(Schedule.load(out / "schedule.json")) == 3
    assert "| oss | 3 |" in result.stdout and (out / "compare.md").exists()
    hints = [line for line in result.stdout.splitlines() if "pictures" in line]
    assert hints == ['no pictures: pictures need matplotlib: pip install "oss_fast[plots]" (or pip install matplotlib)']
    assert not list(out.glob("*.png"))


def test_info_prints_build_info():
    result = run("info")
    assert result.returncode == 0
    assert set(json.loads(result.stdout)) >= {"version", "built_with_cuda", "cuda_available"}


@pytest.mark.parametrize("args,message", [
    (["search", "--model", "nope"], "unknown model 'nope'"),
    (["search", "--model", "no_such_module:make"], "cannot import 'no_such_module'"),
    (["search", "--model", "json:nothing_here"], "has no factory"),
    (["search", *SMALL, "--student-steps", "0"], "student_steps"),
    (["search", *SMALL, "--student-steps", "25", "--mode", "exact"], "student_steps"),
    (["compare", *SMALL, "/no/such/file.json"], "cannot read schedule file"),
    (["sample", *SMALL, "--schedule", __file__], "is not a schedule file"),
    (["search", "--student-steps", "many"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_on_stderr_with_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_torchrun_shares_a_search_between_two_ranks(tmp_path):
    args = ["search", *SMALL, "--device", "cpu", "--student-steps", "3", "--samples", "3", "--no-compare"]
    single = run(*args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "oss_fast", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr
    assert "2 ranks" in two.stdout  # rank 0 reports the shared search
    assert Schedule.load(tmp_path / "two" / "schedule.json").indices == \
        Schedule.load(tmp_path / "one" / "schedule.json").indices
