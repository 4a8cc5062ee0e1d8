"""The oss-fast command, run as a user would (python -m oss_fast)."""

import json
import os
import re
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest

from oss_fast import Schedule

from checkout import ROOT, checkout_env


def run(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "oss_fast", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=checkout_env(env))


SMALL = ["--model", "gaussian_mixture", "--teacher-steps", "20", "--no-progress"]


def test_commands_run_this_checkouts_oss_fast(tmp_path):
    # an oss_fast installed elsewhere, first on the ambient path, is not the one the tests' commands run
    (tmp_path / "elsewhere" / "oss_fast").mkdir(parents=True)
    (tmp_path / "elsewhere" / "oss_fast" / "__init__.py").write_text("raise ImportError('not this checkout')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "elsewhere"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", "import oss_fast; print(oss_fast.__file__)"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120, env=checkout_env(env))
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == ROOT / "oss_fast" / "__init__.py"


def test_search_writes_schedule_and_comparison(tmp_path):
    out = tmp_path / "run"
    result = run("search", *SMALL, "--student-steps", "4", "--samples", "2", "--eval-samples", "4",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"outputs written to {out}" in result.stdout
    schedule = Schedule.load(out / "schedule.json")
    assert len(schedule) == 4 and schedule.metadata["teacher_steps"] == 20
    assert "| oss | euler | 4 |" in result.stdout and "| uniform 4 | euler | 4 |" in result.stdout
    for png in ("sigmas.png", "error_vs_steps.png"):
        assert (out / png).stat().st_size > 1000
    compared = run("compare", *SMALL, str(out / "schedule.json"), "--samples", "4", "--out", str(tmp_path / "cmp"))
    assert compared.returncode == 0, compared.stderr
    assert (tmp_path / "cmp" / "compare.md").read_text().count("|") > 10
    sampled = run("sample", *SMALL, "--schedule", str(out / "schedule.json"), "--samples", "3",
                  "--out", str(tmp_path / "smp"))
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "smp" / "samples.pt").exists()


def test_search_says_what_ran_and_logs_progress_as_a_few_plain_lines(tmp_path):
    result = run("search", "--model", "gaussian_mixture", "--teacher-steps", "40", "--student-steps", "4",
                 "--samples", "3", "--eval-samples", "4", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "mode compat, refined coarse to fine (the default)" in result.stdout
    assert "aggregate median (the published cal_medium rule" in result.stdout
    spent = re.search(r"model rows: (\d+) = (\d+)% of the (\d+) the published search spends", result.stdout)
    assert spent and int(spent[3]) == 40 * 5 * 3 and int(spent[1]) <= int(spent[3]) // 2
    # stderr is a pipe here, as in CI or under `| tee`: whole lines, one per phase, no bar frames
    assert "\r" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("teacher: 40/40 in") and lines[1].startswith("coarse pass (every ")
    assert lines[-1].startswith("comparison: ") and len(lines) <= 10


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
    assert "| oss | euler | 3 |" in result.stdout and (out / "compare.md").exists()
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
    (["search", *SMALL, "--student-steps", "0"], "argument --student-steps: must be a whole number >= 1, got '0'"),
    (["search", *SMALL, "--student-steps", "25", "--mode", "exact"], "--student-steps (25) must not exceed --teacher-steps"),
    (["search", *SMALL, "--student-steps", "20", "--mode", "compat"],
     "--student-steps (20) must be below --teacher-steps (20) in --mode compat"),
    (["compare", *SMALL, "/no/such/file.json"], "cannot read schedule file"),
    (["sample", *SMALL, "--schedule", __file__], "is not a schedule file"),
    (["search", "--student-steps", "many"], "argument --student-steps: must be a whole number >= 1, got 'many'"),
    (["search", "--teacher-steps", "0"], "argument --teacher-steps: must be a whole number >= 1, got '0'"),
    (["search", "--samples", "-3"], "argument --samples: must be a whole number >= 1, got '-3'"),
    (["search", "--shift", "nan"], "argument --shift: must be a finite number > 0"),
    (["search", "--student-step", "3"], "unrecognized arguments: --student-step"),
    (["search", *SMALL, "--device", "nope"], "--device 'nope' is not a device"),
    (["search", *SMALL, "--device", "cuda:7"], "--device cuda:7: no such CUDA GPU"),
    (["search", *SMALL, "--out", __file__], "exists and is not a folder"),
    (["search", *SMALL, "--checkpoint", "/no/such/dir/x.ckpt"], "checkpoint folder /no/such/dir does not exist"),
    (["search", *SMALL, "--resume"], "--resume needs --checkpoint"),
    (["search", *SMALL, "--full", "--stride", "2"], "--stride and --band shape the refinement"),
    (["frobnicate"], "invalid choice"),
    (["export", "sdxl"], "sdxl is neither a schedule file nor a preset (chroma, flux, wan)"),
    (["export", "flux", "--steps", "0"], "--steps: must be a whole number >= 1"),
    (["export", "flux", "--size", "12x"], "--size: must be HEIGHTxWIDTH"),
    (["export", "flux", "--format", "pdf"], "invalid choice"),
    (["export", "flux", "--size", "512x512"], "records no image size"),
    (["quality", "--solvers", "--transfer"], "two tables"),
])
def test_bad_input_is_one_line_on_stderr_with_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr


FACTORIES = """
import time
from oss_fast.zoo import GaussianMixtureFlow

def working(teacher_steps):
    return GaussianMixtureFlow(shape=(2, 4, 4), teacher_steps=teacher_steps)

def needs_more(size):
    return working(10)

def raises():
    raise RuntimeError("weights not found")

class Slow(GaussianMixtureFlow):
    def __call__(self, *args):
        time.sleep(0.05)
        return super().__call__(*args)

def slow(teacher_steps):
    return Slow(shape=(2, 4, 4), teacher_steps=teacher_steps)
"""


@pytest.mark.parametrize("spec,message", [
    ("factories:needs_more", "factories:needs_more cannot be called with no arguments"),
    ("factories:raises", "factories:raises raised RuntimeError: weights not found"),
    ("broken:make", "cannot import 'broken' for model broken:make: SyntaxError"),
])
def test_factory_mistakes_are_one_line(tmp_path, spec, message):
    (tmp_path / "factories.py").write_text(FACTORIES)
    (tmp_path / "broken.py").write_text("def make(:\n")
    result = run("search", "--model", spec, "--no-progress", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"oss-fast: error: {message}"] or message in result.stderr


def test_a_factory_in_the_current_folder_is_found(tmp_path):
    (tmp_path / "factories.py").write_text(FACTORIES)
    result = run("search", "--model", "factories:working", "--teacher-steps", "12", "--student-steps", "3",
                 "--samples", "2", "--no-compare", "--no-progress", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(Schedule.load(tmp_path / "o" / "schedule.json")) == 3


def test_sample_refuses_a_schedule_of_another_grid(tmp_path):
    out = tmp_path / "run"
    assert run("search", *SMALL, "--student-steps", "3", "--samples", "2", "--no-compare", "--out", str(out)).returncode == 0
    schedule = str(out / "schedule.json")
    other_n = run("sample", "--model", "gaussian_mixture", "--teacher-steps", "30", "--schedule", schedule)
    assert other_n.returncode == 2 and "use --teacher-steps 20" in other_n.stderr
    other_shift = run("sample", *SMALL, "--shift", "3", "--schedule", schedule)
    assert other_shift.returncode == 2 and "made on another grid than --model's" in other_shift.stderr
    other_model = run("sample", "--model", "digits", "--teacher-steps", "20", "--schedule", schedule)
    assert other_model.returncode == 2 and "searched for model gaussian_mixture, not digits" in other_model.stderr


def test_ctrl_c_is_one_line_with_how_to_resume(tmp_path):
    import signal
    import time

    (tmp_path / "factories.py").write_text(FACTORIES)
    proc = subprocess.Popen([sys.executable, "-m", "oss_fast", "search", "--model", "factories:slow",
                             "--teacher-steps", "40", "--mode", "exact", "--full", "--no-progress", "--checkpoint",
                             str(tmp_path / "c.ckpt"), "--out", str(tmp_path / "o")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=checkout_env(),
                            # a job started in the background inherits SIGINT ignored; a user's shell does not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (tmp_path / "c.ckpt").exists() and time.time() < deadline:  # the teacher rollout is done
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert stderr.strip().splitlines() == [f"oss-fast: interrupted; resume with --checkpoint {tmp_path / 'c.ckpt'} --resume"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_torchrun_shares_a_search_between_two_ranks(tmp_path):
    args = ["search", *SMALL, "--device", "cpu", "--student-steps", "3", "--samples", "3", "--no-compare"]
    single = run(*args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "oss_fast", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600,
                         env=checkout_env({**os.environ, "OMP_NUM_THREADS": "1"}))
    assert two.returncode == 0, two.stderr
    assert "2 ranks" in two.stdout  # rank 0 reports the shared search
    assert Schedule.load(tmp_path / "two" / "schedule.json").indices == \
        Schedule.load(tmp_path / "one" / "schedule.json").indices


def test_search_with_a_solver_and_compare_and_sample_follow_it(tmp_path):
    out = tmp_path / "run"
    result = run("search", *SMALL, "--student-steps", "3", "--samples", "2", "--eval-samples", "3",
                 "--solver", "unipc", "--out", str(out))
    assert result.returncode == 0, result.stderr
    saved = Schedule.load(out / "schedule.json")
    assert saved.solver == "unipc" and "kept " in result.stdout  # the guard says which candidate it kept
    assert saved.metadata["validation"]["kept"] == saved.metadata["validation"]["candidates"][0]["name"]
    assert saved.indices == saved.metadata["validation"]["candidates"][0]["steps"]
    assert "| oss | unipc | 3 |" in result.stdout and "| uniform 3 | unipc | 3 |" in result.stdout
    unguarded = run("search", *SMALL, "--student-steps", "3", "--samples", "2", "--no-compare", "--solver", "unipc",
                    "--no-validate", "--out", str(tmp_path / "plain"))
    assert unguarded.returncode == 0 and "kept " not in unguarded.stdout, unguarded.stderr
    assert "validation" not in Schedule.load(tmp_path / "plain" / "schedule.json").metadata
    sampled = run("sample", *SMALL, "--schedule", str(out / "schedule.json"), "--samples", "2",
                  "--out", str(tmp_path / "smp"))
    assert sampled.returncode == 0 and "(unipc)" in sampled.stdout, sampled.stderr


def test_presets_are_listed_and_exported_by_name():
    listed = run("presets")
    assert listed.returncode == 0 and all(name in listed.stdout for name in ("flux", "wan", "chroma"))
    from oss_fast import presets
    from oss_fast.integrations.comfyui import OSSSchedule

    sigmas = json.loads(run("export", "FLUX", "--format", "comfyui", "--steps", "16").stdout)
    assert sigmas == presets.get("flux", 16).sigmas  # the preset's own resampling rule
    np.testing.assert_allclose(OSSSchedule().get_sigmas("flux", 16)[0].numpy(), sigmas, rtol=1e-7)  # the node's


def test_export_of_a_schedule_file_in_each_format(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler
    from oss_fast.grid import shifted_grid

    path = tmp_path / "s.json"
    schedule = Schedule.from_indices([3, 9, 20, 33, 40], grid=shifted_grid(40, 3.0).tolist(), solver="unipc")
    schedule.save(path)
    as_json = run("export", str(path), "--out", str(tmp_path / "copy.json"))
    assert as_json.returncode == 0 and Schedule.load(tmp_path / "copy.json") == Schedule.load(path)
    assert json.loads(run("export", str(path), "--format", "comfyui").stdout) == schedule.sigmas
    assert len(json.loads(run("export", str(path), "--format", "comfyui", "--steps", "8").stdout)) == 9
    # diffusers: a UniPC schedule has no call arguments that carry it (the API refuses it the same way);
    # an Euler one names the scheduler that, configured as it says, lands on the schedule's sigmas
    refused = run("export", str(path), "--format", "diffusers")
    assert refused.returncode == 2 and "applied(pipe)" in refused.stderr and len(refused.stderr.splitlines()) == 1
    schedule.replace(solver="euler").save(tmp_path / "euler.json")
    spec = json.loads(run("export", str(tmp_path / "euler.json"), "--format", "diffusers").stdout)
    assert spec == json.loads(json.dumps(schedule.replace(solver="euler").diffusers_export()))
    assert spec["scheduler"] == "FlowMatchEulerDiscreteScheduler" and spec["scheduler_config"]["shift"] == 3.0
    scheduler = FlowMatchEulerDiscreteScheduler(**spec["scheduler_config"])
    scheduler.set_timesteps(sigmas=spec["sigmas"])
    np.testing.assert_allclose(scheduler.sigmas.numpy(), schedule.sigmas, rtol=1e-6, atol=1e-7)
    # --shift: the same flow times for a grid / pipeline of shift 5 (snapped onto its 40-step grid)
    moved = json.loads(run("export", str(path), "--format", "json", "--shift", "5").stdout)
    assert moved["shift"] == 5.0 and moved["grid"] == shifted_grid(40, 5.0).tolist()
    # a FLUX-style schedule: height, width and mu of its size, and --size follows the pipeline
    flux_config = dict(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                       max_image_seq_len=4096)
    from oss_fast.grid import dynamic_shift_rule
    flux = Schedule([0.95, 0.8, 0.5, 0.2, 0.0], size=[1024, 768], dynamic_shift=dynamic_shift_rule(flux_config))
    flux.save(tmp_path / "flux.json")
    for size, expected in ((None, flux), ("512x512", flux.for_resolution(512, 512))):
        extra = ["--size", size] if size else []
        spec = json.loads(run("export", str(tmp_path / "flux.json"), "--format", "diffusers", *extra).stdout)
        assert [spec["height"], spec["width"]] == expected.size
        scheduler = FlowMatchEulerDiscreteScheduler(**flux_config)
        scheduler.set_timesteps(sigmas=np.array(spec["sigmas"]), mu=spec["mu"])
        np.testing.assert_allclose(scheduler.sigmas.numpy(), expected.sigmas, rtol=1e-6, atol=1e-7)


def _interrupt(args, cwd, when):
    """Runs the command, sends Ctrl-C when `when()` holds (or while it is importing torch)."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "oss_fast", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=checkout_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    if when == "importing torch":  # torch's library is loaded, its Python modules not yet all imported
        when = lambda: "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()  # noqa: E731
        step = 0.002
    else:
        step = 0.05
    while not when() and time.time() < deadline:
        time.sleep(step)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


def test_ctrl_c_while_importing_is_one_line_and_exit_130(tmp_path):
    code, stderr = _interrupt(["search", "--no-progress", "--out", str(tmp_path / "o")], tmp_path, "importing torch")
    assert code == 130 and stderr.strip().splitlines() == ["oss-fast: interrupted"], stderr
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_removes_the_output_folders_the_run_created_while_empty(tmp_path):
    (tmp_path / "factories.py").write_text(FACTORIES)
    out = tmp_path / "new" / "run"
    code, stderr = _interrupt(["search", "--model", "factories:slow", "--teacher-steps", "40", "--no-progress",
                               "--out", str(out), "--checkpoint", str(tmp_path / "c.ckpt")], tmp_path,
                              lambda: (tmp_path / "c.ckpt").exists())
    assert code == 130, stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["c.ckpt", "factories.py"]


def test_a_second_run_on_the_same_out_folder_is_refused(tmp_path):
    import signal
    import time

    (tmp_path / "factories.py").write_text(FACTORIES)
    out = tmp_path / "o"
    first = subprocess.Popen([sys.executable, "-m", "oss_fast", "search", "--model", "factories:slow", "--teacher-steps",
                              "40", "--no-progress", "--out", str(out), "--checkpoint", str(tmp_path / "c.ckpt")],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=checkout_env())
    try:
        deadline = time.time() + 120
        while not (tmp_path / "c.ckpt").exists() and time.time() < deadline:  # searching, out held
            time.sleep(0.05)
        second = run("search", *SMALL, "--student-steps", "3", "--samples", "2", "--no-compare", "--out", str(out))
        assert second.returncode == 2
        assert second.stderr.strip() == f"oss-fast: error: --out {out} is in use by another oss-fast run: wait for " \
                                        "it or pass another folder"
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)


def test_outputs_replace_planted_symlinks_instead_of_writing_through_them(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "smp"
    out.mkdir()
    (out / "samples.pt").symlink_to(victim)
    (tmp_path / "export.json").symlink_to(victim)
    schedule = tmp_path / "s.json"
    Schedule.from_indices([3, 9, 15], grid=np.linspace(0, 1, 21)).save(schedule)
    sampled = run("sample", *SMALL, "--schedule", str(schedule), "--samples", "2", "--out", str(out))
    exported = run("export", str(schedule), "--out", str(tmp_path / "export.json"))
    assert sampled.returncode == 0 and exported.returncode == 0, sampled.stderr + exported.stderr
    assert victim.read_text() == "keep me"
    assert not (out / "samples.pt").is_symlink() and (out / "samples.pt").stat().st_size > 100
    assert Schedule.load(tmp_path / "export.json") == Schedule.load(schedule)


def test_quality_refuses_an_out_file_in_a_missing_folder_before_the_table(tmp_path):
    result = run("quality", "--models", "gaussian_mixture", "--out", str(tmp_path / "no" / "q.md"))
    assert result.returncode == 2 and f"the folder {tmp_path / 'no'} does not exist" in result.stderr
    assert "|" not in result.stdout  # no table was computed first


def test_per_sample_saves_every_noises_path(tmp_path):
    out = tmp_path / "ps"
    result = run("search", *SMALL, "--student-steps", "3", "--samples", "3", "--aggregate", "per_sample", "--full",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["schedule-noise-000.json", "schedule-noise-001.json", "schedule-noise-002.json"]
    assert "no single schedule.json" in result.stdout
    import oss_fast
    from oss_fast.zoo import load_model, noises

    model = load_model("gaussian_mixture", 20)
    z, cond = noises(model, 3, 0)
    res = oss_fast.search(model, z, cond, student_steps=3, aggregate="per_sample", refine=False, progress=False)
    assert [Schedule.load(f).indices for f in files] == res.steps
    assert [Schedule.load(f).metadata["noise"] for f in files] == [0, 1, 2]


@pytest.mark.parametrize("metadata", [{"model": 5}, {"model": ["a"]}, {"grid": "uniform"},
                                      {"grid": {"kind": "shifted", "shift": "abc"}}])
def test_free_form_metadata_of_any_type_is_not_trusted(tmp_path, metadata):
    path = tmp_path / "s.json"
    Schedule.from_indices([3, 9, 15], grid=np.linspace(0, 1, 21), metadata=metadata).save(path)
    fits = run("sample", *SMALL, "--schedule", str(path), "--samples", "2", "--out", str(tmp_path / "a"))
    assert fits.returncode == 0, fits.stderr
    other_grid = run("compare", *SMALL, "--shift", "3", str(path), "--samples", "2", "--out", str(tmp_path / "b"))
    assert other_grid.returncode == 2 and len(other_grid.stderr.strip().splitlines()) == 1, other_grid.stderr
    assert "made on another grid than --model's" in other_grid.stderr


def test_a_reader_that_goes_away_ends_the_output_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "oss_fast", "presets"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=checkout_env())
    proc.stdout.close()  # `| head -0`: gone before the first line is written
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and stderr == ""


@pytest.mark.parametrize("args,message", [
    (["search", "--mode", "teacher", "--stride", "2"], "leave them out with --mode teacher"),
    (["search", "--seed", "1e30"], "--seed: must be a whole number in [0, 2**63 - 1], got '1e30'"),
    (["search", "--seed", "-1"], "--seed: must be a whole number in [0, 2**63 - 1], got '-1'"),
    (["search", "--model", "factories:exits"], "--model factories:exits: the factory called sys.exit(0) instead"),
])
def test_messages_name_the_option_at_fault(tmp_path, args, message):
    (tmp_path / "factories.py").write_text(FACTORIES + "\ndef exits():\n    raise SystemExit(0)\n")
    result = run(*args, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


def test_export_with_more_steps_than_the_grid_and_a_shift_says_which_option_to_change(tmp_path):
    path = tmp_path / "s.json"
    Schedule.from_indices([3, 9, 15], grid=np.linspace(0, 1, 21)).save(path)
    result = run("export", str(path), "--steps", "40", "--shift", "3")
    assert result.returncode == 2 and "--teacher-steps" not in result.stderr
    assert "export at most 20 steps with --shift" in result.stderr


def test_every_example_of_the_commands_docstring_runs(tmp_path):
    from oss_fast import cli

    examples = [line.split("#")[0].split()[1:] for line in cli.__doc__.splitlines()
                if line.strip().startswith(("oss-fast export", "oss-fast presets", "oss-fast info"))]
    assert len(examples) >= 3
    for args in examples:
        result = run(*args, cwd=tmp_path) if "a.json" not in args else None
        if result is not None:
            assert result.returncode == 0, (args, result.stderr)


def test_sample_runs_in_batches_equal_to_one_call(tmp_path):
    import torch

    import oss_fast
    from oss_fast import cli
    from oss_fast.zoo import load_model, noises

    path = tmp_path / "s.json"
    Schedule.from_indices([3, 9, 15], grid=np.linspace(0, 1, 21)).save(path)
    count = cli.SAMPLE_BATCH + 3  # two batches, the second of 3
    result = run("sample", "--model", "digits", "--teacher-steps", "20", "--no-progress", "--schedule", str(path),
                 "--samples", str(count), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    model = load_model("digits", 20)
    z, cond = noises(model, count, 1000)
    whole = oss_fast.sample(model, z, [3, 9, 15], cond)
    got = torch.load(tmp_path / "o" / "samples.pt")
    assert got.shape == whole.shape and torch.allclose(got, whole, atol=1e-5)


def test_help_shows_the_default_of_every_option():
    from oss_fast import cli

    parser = cli.parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, command in commands.items():
        for action in command._actions:
            if action.option_strings and action.dest != "help" and not action.required:
                assert "default" in (action.help or ""), f"oss-fast {name} {action.option_strings[0]}: no default shown"


def test_threads_follow_the_option_then_omp_then_the_idle_cores(monkeypatch):
    from oss_fast import cli

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cli.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (1.1, 0.0, 0.0))
    assert cli.default_threads() == 1  # a 2-core machine with one other job: one thread, not two that stall
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (0.05, 0.0, 0.0))
    assert cli.default_threads() == 2
    chosen = []
    monkeypatch.setattr(cli.torch, "set_num_threads", chosen.append)
    cli.main(["presets"])
    assert chosen == []  # presets computes nothing: threads untouched
    cli.main(["sample", "--schedule", "missing.json", "--threads", "4"])
    cli.main(["sample", "--schedule", "missing.json"])
    assert chosen == [4, 2]


def test_export_with_strength_keeps_the_nodes_tail_in_every_format(tmp_path):
    from oss_fast.grid import shifted_grid

    path = tmp_path / "s.json"
    schedule = Schedule.from_indices([3, 9, 20, 33, 40], grid=shifted_grid(40, 3.0).tolist())
    schedule.save(path)
    tail = schedule.sigmas[-3:]  # round(5 x 0.4) = 2 steps and the final 0
    assert json.loads(run("export", str(path), "--format", "comfyui", "--strength", "0.4").stdout) == tail
    assert json.loads(run("export", str(path), "--strength", "0.4").stdout)["sigmas"] == tail
    spec = json.loads(run("export", str(path), "--format", "diffusers", "--strength", "0.4").stdout)
    assert spec["strength"] == 1.0 and spec["num_inference_steps"] == 2
    refused = run("export", str(path), "--strength", "0.05")
    assert refused.returncode == 2 and "keeps none of 5 steps" in refused.stderr
