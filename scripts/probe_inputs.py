"""Probe every entry point with hostile and mistaken inputs, each in a forked child, and count the
outcomes: `error` (ValueError/TypeError/FloatingPointError with a one-line message, or the CLI's one
line and exit 2), `right` (a result equal to the expected one), `wrong` (a result where an error or
another result was due), `traceback` (any other exception), `crash` (the child died) and `hang`.

    python scripts/probe_inputs.py            # prints one line per case that is not error/right, then the counts
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch

import oss_fast
from oss_fast import Schedule, _C, dp
from oss_fast import reference as ref
from oss_fast.ops import euler_costs
from oss_fast.zoo import GaussianMixtureFlow

ERROR = "error"  # the expectation: a clear error
TMP = Path(tempfile.mkdtemp(prefix="oss_probe_"))
SHAPE = (2, 4, 4)


def mixture(N=10, **kw):
    return GaussianMixtureFlow(shape=SHAPE, components=3, teacher_steps=N, **kw)


def noise(B=2):
    return torch.randn(B, *SHAPE, generator=torch.Generator().manual_seed(0))


class Model:
    """A mixture with a changed grid or output."""

    def __init__(self, fm_steps=None, out=None):
        self.inner = mixture()
        self.fm_steps = self.inner.fm_steps if fm_steps is None else fm_steps
        self.out = out

    def __call__(self, x, t, cond, kwargs):
        v = self.inner(x, t.clamp(max=10))
        return v if self.out is None else self.out(v)


def search(**kw):
    kw.setdefault("student_steps", 3)
    kw.setdefault("progress", False)
    model = kw.pop("model", None) or mixture()
    return oss_fast.search(model, kw.pop("z", noise()), kw.pop("cond", None), **kw)


def cap(t):
    return torch.utils.dlpack.to_dlpack(t)


def f64(*s):
    return torch.zeros(s, dtype=torch.float64)


def i64(*s):
    return torch.zeros(s, dtype=torch.int64)


def schedule_file(text):
    path = TMP / f"s{abs(hash(text))}.json"
    path.write_text(text)
    return path


def cli(*args):
    result = subprocess.run([sys.executable, "-m", "oss_fast", *args], capture_output=True, text=True, timeout=300,
                            cwd=TMP)
    lines = result.stderr.strip().splitlines()
    if result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr:
        raise ValueError(lines[0])
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-300:])
    return result.stdout


(TMP / "probe_factories.py").write_text("def exits():\n    raise SystemExit(0)\n")


def symlinked_output():
    """sample --out with samples.pt planted as a link to another file: the file must stay as it was."""
    victim, out = TMP / "victim.txt", TMP / "linked"
    victim.write_text("keep me")
    out.mkdir(exist_ok=True)
    (out / "samples.pt").unlink(missing_ok=True)
    (out / "samples.pt").symlink_to(victim)
    cli("sample", "--model", "gaussian_mixture", "--teacher-steps", "4", "--schedule",
        str(schedule_file(json.dumps(GOOD_SCHEDULE))), "--out", str(out))
    return victim.read_text() == "keep me" and not (out / "samples.pt").is_symlink()


def prefix_case():
    """The drop-ins' teacher_steps < N: the search on the grid's first teacher_steps + 1 points."""
    big = mixture(20)

    class Prefix:
        fm_steps = big.fm_steps[:11]

        def __call__(self, x, t, cond, kwargs):
            return big(x, t)

    return (oss_fast.search_OSS(big, noise(), 2, None, "cpu", 10, 3) ==
            ref.search(Prefix(), noise(), student_steps=3, mode="compat", float32=False))


def expect_search(**kw):
    """The search's steps must equal the reference's on the same (valid, unusual) inputs."""
    model = kw.pop("model", None) or mixture()
    z = kw.pop("z", noise())
    got = oss_fast.search(model, z, student_steps=3, mode="compat", aggregate="per_sample", progress=False, **kw)
    return got.steps == ref.search(model, z, student_steps=3, mode="compat", **kw)


GOOD_SCHEDULE = {"format": "oss_fast.schedule/1", "indices": [1, 3], "sigmas": [0.75, 0.25, 0.0],
                 "grid": [0.0, 0.25, 0.5, 0.75, 1.0], "parameterization": "flow", "metadata": {}}


FLUX_RULE = dict(base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5, max_shift=1.15,
                 time_shift_type="exponential", vae_scale_factor=8)


def good():
    return Schedule.load(schedule_file(json.dumps(GOOD_SCHEDULE)))


def flux_schedule():
    return Schedule([0.9, 0.6, 0.3, 0.0], size=[64, 64], dynamic_shift=dict(FLUX_RULE))


def pytest_approx(values):
    import pytest

    return pytest.approx(values, rel=1e-12, abs=1e-15)


def node(**inputs):
    from oss_fast.integrations.comfyui import OSSSchedule

    values = dict(schedule="flux", steps=10, denoise=1.0, shift=0.0, file="")
    values.update(inputs)
    return OSSSchedule().get_sigmas(**values)[0]


def fifo():
    path = TMP / f"fifo{os.getpid()}.json"
    if not path.exists():
        os.mkfifo(path)
    return path


def link_to(target):
    path = TMP / f"link{os.getpid()}.json"
    if not path.is_symlink():
        path.symlink_to(target)
    return path


def flow_scheduler(**config):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**dict(dict(use_dynamic_shifting=True), **config))


def bad_schedule(**change):
    return lambda: Schedule.load(schedule_file(json.dumps(dict(GOOD_SCHEDULE, **change))))


class Weighted:
    """The mixture plus w[600] s^3 x, w a 1,200-element numpy array in model_kwargs (issue 19: numpy
    abbreviates its repr)."""

    def __init__(self, **mixture_options):
        self.inner = mixture(**mixture_options)
        self.fm_steps = self.inner.fm_steps
        self.fingerprint = self.inner.fingerprint

    def __call__(self, x, t, cond, kwargs):
        return self.inner(x, t) + kwargs["w"][600] * x * self.fm_steps[t].reshape(-1, 1, 1, 1) ** 3


def weighted(model, middle, **kw):
    import numpy as np

    w = np.zeros(1200)
    w[600] = middle
    return search(model=model, model_kwargs={"w": w}, mode="exact", refine=False, **kw)


def resumed_from_other(first: dict, second: dict, name: str):
    """A checkpoint of the first search, resumed by the second (an error is due where they differ)."""
    path = TMP / f"{name}.ckpt"
    weighted(checkpoint=path, **first)
    return weighted(checkpoint=path, resume=True, **second).schedule


def foreign_checkpoint(resume: bool):
    path = TMP / f"notes{int(resume)}.txt"
    path.write_text("precious")
    try:
        return search(mode="exact", checkpoint=path, resume=resume).schedule
    finally:
        assert path.read_text() == "precious", "a file that is not a checkpoint was overwritten"


def with_grid(fm_steps):
    """A mixture whose fm_steps is replaced by anything."""
    model = Model()
    model.fm_steps = fm_steps
    return model


class Opaque:
    def __repr__(self):
        return "Opaque()"


class Pushed:
    """Velocity -6e4 sign(x): finite in float16, while the teacher's state outgrows float16."""

    def __init__(self):
        self.inner = mixture()
        self.fm_steps = self.inner.fm_steps

    def __call__(self, x, t, cond, kwargs):
        return (self.inner(x.float().clamp(-3e4, 3e4) / 3e4, t) * 100 - torch.sign(x) * 6e4).to(x.dtype)


class Scaled:
    """A mixture on a grid ending at 2 (the velocity halved: the same flow in doubled time)."""

    def __init__(self):
        self.inner = mixture()
        self.fm_steps = 2 * self.inner.fm_steps

    def __call__(self, x, t, cond, kwargs):
        return self.inner(x, t) / 2


def tiny_flux_search(z):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    from oss_fast.models import FluxWrapper, flux_inputs
    from oss_fast.models.flux import flux_timesteps

    torch.manual_seed(0)
    net = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
                                 num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=16,
                                 guidance_embeds=True, axes_dims_rope=(2, 2, 4))
    wrapper = FluxWrapper(net.eval(), flux_timesteps(FlowMatchEulerDiscreteScheduler(), 8, 16), 1000)
    kwargs = flux_inputs(torch.randn(2, 5, 32), torch.randn(2, 16), 8, 8)
    return oss_fast.search(wrapper, z, student_steps=3, model_kwargs=kwargs, progress=False).schedule


CASES = [
    # ---------------------------------------------------------------- native API: options
    ("api", "K as a string", lambda: search(student_steps="3"), ERROR),
    ("api", "K negative", lambda: search(student_steps=-1), ERROR),
    ("api", "K huge", lambda: search(student_steps=10**12), ERROR),
    ("api", "K = N compat", lambda: search(student_steps=10, mode="compat"), ERROR),
    ("api", "teacher_steps 0", lambda: search(teacher_steps=0), ERROR),
    ("api", "teacher_steps float", lambda: search(teacher_steps=10.0), ERROR),
    ("api", "norm 1.5", lambda: len(search(norm=1.5, mode="exact").schedule) == 3, True),
    ("api", "norm -inf", lambda: search(norm=-math.inf), ERROR),
    ("api", "norm complex", lambda: search(norm=2j), ERROR),
    ("api", "channels 0", lambda: search(channels=0), ERROR),
    ("api", "channels '2x'", lambda: search(channels="2x"), ERROR),
    ("api", "frames on 3-D latent", lambda: search(frames=1), ERROR),
    ("api", "mode None", lambda: search(mode=None), ERROR),
    ("api", "mode auto (gone)", lambda: search(mode="auto"), ERROR),
    ("api", "stride without refinement", lambda: search(refine=False, stride=2), ERROR),
    ("api", "band 0", lambda: search(band=0), ERROR),
    ("api", "max_rows -1", lambda: search(max_rows=-1), ERROR),
    ("api", "objective for teacher 'min'", lambda: search(mode="teacher", objective="min"), ERROR),
    ("api", "max_batch -5", lambda: search(max_batch=-5), ERROR),
    ("api", "seed string", lambda: search(seed="x", mode="exact"), ERROR),
    ("api", "checkpoint is a folder", lambda: search(mode="exact", checkpoint=TMP), ERROR),
    ("api", "checkpoint in missing folder", lambda: search(mode="exact", checkpoint=TMP / "no" / "c"), ERROR),
    ("api", "resume without checkpoint", lambda: search(mode="exact", resume=True), ERROR),
    ("api", "process group without init", lambda: search(process_group="world"), ERROR),
    ("api", "free_start with teacher", lambda: search(mode="teacher", free_start=True), ERROR),
    # ---------------------------------------------------------------- native API: tensors and models
    ("api", "z 1-D", lambda: search(z=torch.zeros(5)), ERROR),
    ("api", "z int", lambda: search(z=torch.zeros(2, *SHAPE, dtype=torch.int32)), ERROR),
    ("api", "z empty batch", lambda: search(z=torch.zeros(0, *SHAPE)), ERROR),
    ("api", "z with inf", lambda: search(z=torch.full((2, *SHAPE), math.inf)), ERROR),
    ("api", "z a list", lambda: search(z=[[0.0]]), ERROR),
    ("api", "z wrong shape for the model", lambda: search(z=torch.zeros(2, 3, 3)), ERROR),
    ("api", "cond wrong length", lambda: search(cond=torch.tensor([1, 2, 3])), ERROR),
    ("api", "grid not starting at 0", lambda: search(model=Model(torch.linspace(0.1, 1, 11).double())), ERROR),
    ("api", "grid decreasing", lambda: search(model=Model(torch.linspace(1, 0, 11).double())), ERROR),
    ("api", "grid with NaN", lambda: search(model=Model(torch.tensor([0, float("nan"), 1.0]))), ERROR),
    ("api", "grid 2-D", lambda: search(model=Model(torch.zeros(2, 3))), ERROR),
    ("api", "grid of one point", lambda: search(model=Model(torch.zeros(1))), ERROR),
    ("api", "grid a list", lambda: len(search(model=Model([i / 10 for i in range(11)]), mode="exact").schedule) == 3,
     True),
    ("api", "grid strided", lambda: expect_search(model=Model(torch.linspace(0, 1, 21).double()[::2])), True),
    ("api", "grid float32", lambda: expect_search(model=Model(torch.linspace(0, 1, 11))), True),
    ("api", "z strided", lambda: expect_search(z=noise(4)[::2]), True),
    ("api", "z channels-last", lambda: expect_search(z=noise().permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)),
     True),
    ("api", "z float64", lambda: expect_search(z=noise().double()), True),
    ("api", "model returns int", lambda: search(model=Model(out=lambda v: v.long())), ERROR),
    ("api", "model returns complex", lambda: search(model=Model(out=lambda v: v.to(torch.complex64))), ERROR),
    ("api", "model returns wrong shape", lambda: search(model=Model(out=lambda v: v[:, :1])), ERROR),
    ("api", "model returns a list", lambda: search(model=Model(out=lambda v: [v])), ERROR),
    ("api", "model returns NaN", lambda: search(model=Model(out=lambda v: v * math.nan)), ERROR),
    ("api", "model without fm_steps", lambda: oss_fast.search(lambda *a: a[0], noise(), student_steps=2), ERROR),
    ("api", "per-sample kwarg wrong length",
     lambda: search(model_kwargs={"a": torch.ones(3)}, per_sample_kwargs=["a"]), ERROR),
    # ---------------------------------------------------------------- sample and drop-ins
    ("sample", "steps descending", lambda: oss_fast.sample(mixture(), noise(), [5, 2]), ERROR),
    ("sample", "steps out of range", lambda: oss_fast.sample(mixture(), noise(), [3, 11]), ERROR),
    ("sample", "steps with 0", lambda: oss_fast.sample(mixture(), noise(), [0, 3]), ERROR),
    ("sample", "steps empty", lambda: oss_fast.sample(mixture(), noise(), []), ERROR),
    ("sample", "schedule of another grid",
     lambda: oss_fast.sample(mixture(), noise(), Schedule.from_indices([2, 5], grid=mixture(20).fm_steps)), ERROR),
    ("sample", "amp without min", lambda: oss_fast.sample(mixture(), noise(), [2, 5], max_amp=[1] * 10), ERROR),
    ("dropin", "batch_size wrong", lambda: oss_fast.search_OSS(mixture(), noise(), 3, None, "cpu", 10, 3), ERROR),
    ("dropin", "K > N published",
     lambda: oss_fast.search_OSS(mixture(), noise(), 2, None, "cpu", 10, 12) ==
     ref.search(mixture(), noise(), student_steps=12, mode="compat", float32=False), True),
    ("dropin", "teacher prefix published", lambda: prefix_case(), True),
    ("dropin", "cal_medium int64 max", lambda: oss_fast.cal_medium([[2**63 - 1], [2**63 - 1]]) == [2**63 - 1], True),
    ("dropin", "cal_medium ragged", lambda: oss_fast.cal_medium([[1, 2], [3]]), ERROR),
    ("dropin", "cal_medium empty", lambda: oss_fast.cal_medium([]), ERROR),
    ("dropin", "cal_medium floats", lambda: oss_fast.cal_medium([[1.5, 2.5]]), ERROR),
    # ---------------------------------------------------------------- dp front and compiled module
    ("dp", "level_update strided best", lambda: dp.level_update("exact", f64(1, 6)[:, ::2], i64(1, 3, 3), 0,
                                                                 f64(1, 1, 3), i64(1, 1)), ERROR),
    ("dp", "reduce on a meta tensor", lambda: dp.reduce_candidates(torch.zeros(1, 1, 3, dtype=torch.float64,
                                                                               device="meta"), i64(1, 1)), ERROR),
    ("dp", "kstep K huge", lambda: dp.kstep_path(f64(1, 4, 4), 10**9), ERROR),
    ("dp", "median huge S view", lambda: dp.median_steps(i64(1, 3).expand(10**6, 3)), ERROR),
    ("dp", "traceback of a 4-D from", lambda: dp.traceback(i64(1, 2, 3, 4)), ERROR),
    ("_C", "reduce with ints", lambda: _C.cpu.reduce_candidates(1, 2, 1, 1, 1, 3, 4), ERROR),
    ("_C", "reduce with None", lambda: _C.cpu.reduce_candidates(None, None, 1, 1, 1, None, None), ERROR),
    ("_C", "level_update huge J", lambda: _C.cpu.level_update(0, *(cap(f64(1, 3)), cap(i64(1, 3)), cap(f64(1, 3)),
                                                                    cap(i64(1, 3, 3))),
                                                              cap(torch.zeros(1, 3, dtype=torch.uint8)), 1, 2**40, 2,
                                                              0), ERROR),
    ("_C", "traceback K near int64 max", lambda: _C.cpu.traceback(cap(i64(1, 3, 3)), 1, 2**63 - 1, 3,
                                                                    cap(i64(1, 2))), ERROR),
    ("_C", "kstep negative G", lambda: _C.cpu.kstep_path(cap(f64(1, 3, 3)), -1, 3, 2, 0, cap(i64(1, 2)),
                                                          cap(f64(1))), ERROR),
    ("_C", "kstep J overflow", lambda: _C.cpu.kstep_path(cap(f64(1, 3, 3)), 1, 2**33, 2, 0, cap(i64(1, 2)),
                                                          cap(f64(1))), ERROR),
    ("_C", "median on a float tensor", lambda: _C.cpu.median_steps(cap(f64(2, 2)), 2, 2, cap(i64(2))), ERROR),
    ("_C", "median out too small", lambda: _C.cpu.median_steps(cap(i64(2, 2)), 2, 2, cap(i64(1))), ERROR),
    ("_C", "costs with a consumed capsule", lambda: _C.cpu.euler_costs_f32(*(cap(torch.zeros(1)),) * 6, 1, 1, 1, 2,
                                                                           1, 2, None, cap(torch.zeros(1))), ERROR),
    ("_C", "costs huge D", lambda: _C.cpu.euler_costs_f32(cap(torch.zeros(1, 4)), cap(torch.zeros(1, 4)),
                                                          cap(torch.zeros(2, 1, 4)), cap(i64(1)), cap(i64(1) + 1),
                                                          cap(f64(3)), 1, 2**40, 2, 3, 1, 2, None, cap(f64(1, 2))),
     ERROR),
    # ---------------------------------------------------------------- cost op front
    ("ops", "row_grid expanded", lambda: euler_costs(torch.zeros(4, 8), torch.zeros(4, 8), torch.zeros(3, 1, 8),
                                                     i64(1).expand(4), (i64(1) + 2).expand(4),
                                                     torch.linspace(0, 1, 3).double()).shape == (4, 3), True),
    ("ops", "row_grid too large", lambda: euler_costs(torch.zeros(2, 8), torch.zeros(2, 8), torch.zeros(3, 1, 8),
                                                      i64(2), i64(2) + 5, torch.linspace(0, 1, 3).double()), ERROR),
    ("ops", "row_sample negative", lambda: euler_costs(torch.zeros(2, 8), torch.zeros(2, 8), torch.zeros(3, 1, 8),
                                                       i64(2) - 1, i64(2) + 1, torch.linspace(0, 1, 3).double()),
     ERROR),
    ("ops", "int latents", lambda: euler_costs(i64(2, 8), i64(2, 8), i64(3, 1, 8), i64(2), i64(2) + 1,
                                               torch.linspace(0, 1, 3).double()), ERROR),
    ("ops", "s float32", lambda: euler_costs(torch.zeros(2, 8), torch.zeros(2, 8), torch.zeros(3, 1, 8), i64(2),
                                             i64(2) + 1, torch.linspace(0, 1, 3)), ERROR),
    # ---------------------------------------------------------------- files
    ("schedule", "NaN sigma", lambda: Schedule.load(schedule_file('{"format": "oss_fast.schedule/1", '
                                                                  '"sigmas": [NaN, 0]}')), ERROR),
    ("schedule", "negative index", bad_schedule(indices=[-1, 3]), ERROR),
    ("schedule", "bool index", bad_schedule(indices=[True, 3]), ERROR),
    ("schedule", "float index", bad_schedule(indices=[1.0, 3]), ERROR),
    ("schedule", "huge index", bad_schedule(indices=[1, 10**40]), ERROR),
    ("schedule", "indices vs sigmas", bad_schedule(indices=[2, 3]), ERROR),
    ("schedule", "grid non-monotone", bad_schedule(grid=[0, 0.5, 0.25, 0.75, 1]), ERROR),
    ("schedule", "sigmas as dict", bad_schedule(sigmas={"a": 1}), ERROR),
    ("schedule", "sigmas as string", bad_schedule(sigmas="0.5, 0"), ERROR),
    ("schedule", "metadata a string", bad_schedule(metadata="x"), ERROR),
    ("schedule", "timesteps wrong length", bad_schedule(timesteps=[1.0]), ERROR),
    ("schedule", "sigma above 1", bad_schedule(sigmas=[1.5, 0.25, 0.0], indices=None, grid=None), ERROR),
    ("schedule", "top-level string", lambda: Schedule.load(schedule_file('"hello"')), ERROR),
    ("schedule", "empty file", lambda: Schedule.load(schedule_file("")), ERROR),
    ("schedule", "binary file", lambda: Schedule.load(schedule_file("\x00\x01\xff")), ERROR),
    ("schedule", "deeply nested", lambda: Schedule.load(schedule_file("[" * 50000 + "]" * 50000)), ERROR),
    ("schedule", "a folder", lambda: Schedule.load(TMP), ERROR),
    ("schedule", "good one", lambda: Schedule.load(schedule_file(json.dumps(GOOD_SCHEDULE))).indices == [1, 3], True),
    ("schedule", "shift a string", bad_schedule(shift="3"), ERROR),
    ("schedule", "shift negative", bad_schedule(shift=-1.0), ERROR),
    ("schedule", "size of zero", bad_schedule(size=[0, 512]), ERROR),
    ("schedule", "size as text", bad_schedule(size="512x512"), ERROR),
    ("schedule", "size of floats", bad_schedule(size=[512.5, 512]), ERROR),
    ("schedule", "dynamic_shift without size", bad_schedule(dynamic_shift=dict(FLUX_RULE)), ERROR),
    ("schedule", "dynamic_shift missing a key", bad_schedule(size=[64, 64], dynamic_shift={"base_shift": 0.5}), ERROR),
    ("schedule", "dynamic_shift of text", bad_schedule(size=[64, 64], dynamic_shift=dict(FLUX_RULE, max_shift="1")),
     ERROR),
    ("schedule", "dynamic_shift type cubic", bad_schedule(size=[64, 64], dynamic_shift=dict(
        FLUX_RULE, time_shift_type="cubic")), ERROR),
    # ---------------------------------------------------------------- transfer
    ("transfer", "for_shift of text", lambda: good().for_shift("3"), ERROR),
    ("transfer", "for_shift 0", lambda: good().for_shift(0), ERROR),
    ("transfer", "for_shift nan", lambda: good().for_shift(math.nan), ERROR),
    ("transfer", "for_shift inf", lambda: good().for_shift(math.inf), ERROR),
    ("transfer", "for_shift onto a grid too small", lambda: good().for_shift(3.0, teacher_steps=1), ERROR),
    ("transfer", "for_shift teacher_steps huge", lambda: good().for_shift(3.0, teacher_steps=10**12), ERROR),
    ("transfer", "reshift inf", lambda: good().reshift(math.inf), ERROR),
    ("transfer", "for_resolution of a flow schedule", lambda: good().for_resolution(512, 512), ERROR),
    ("transfer", "for_resolution negative", lambda: flux_schedule().for_resolution(-64, 64), ERROR),
    ("transfer", "for_resolution of text", lambda: flux_schedule().for_resolution("512", 512), ERROR),
    ("transfer", "for_resolution huge", lambda: flux_schedule().for_resolution(10**12, 10**12), ERROR),
    ("transfer", "for_resolution to its own size", lambda: flux_schedule().for_resolution(64, 64).sigmas ==
     pytest_approx(flux_schedule().sigmas), True),
    ("transfer", "interpolate to a billion steps", lambda: good().interpolate(10**9), ERROR),
    ("transfer", "preset at a billion steps", lambda: oss_fast.presets.get("flux", 10**9), ERROR),
    ("transfer", "preset None", lambda: oss_fast.presets.get(None), ERROR),
    # ---- issue 19: sample, schedules, shift rules (schedule)
    ("sample", "velocity NaN", lambda: oss_fast.sample(Model(out=lambda v: v * math.nan), noise(), [2, 5]), ERROR),
    ("sample", "velocity [B, 1, ...]", lambda: oss_fast.sample(Model(out=lambda v: v[:, :1]), noise(), [2, 5]), ERROR),
    ("sample", "velocity [1, ...]", lambda: oss_fast.sample(Model(out=lambda v: v[:1]), noise(), [2, 5]), ERROR),
    ("sample", "velocity int", lambda: oss_fast.sample(Model(out=lambda v: v.long()), noise(), [2, 5]), ERROR),
    ("sample", "velocity complex", lambda: oss_fast.sample(Model(out=lambda v: v.to(torch.complex64)), noise(),
                                                           [2, 5]), ERROR),
    ("sample", "velocity a tuple", lambda: oss_fast.sample(Model(out=lambda v: (v,)), noise(), [2, 5]), ERROR),
    ("sample", "z int", lambda: oss_fast.sample(mixture(), noise().long(), [2, 5]), ERROR),
    ("sample", "z complex", lambda: oss_fast.sample(mixture(), noise().to(torch.complex64), [2, 5]), ERROR),
    ("sample", "z with NaN", lambda: oss_fast.sample(mixture(), noise() * math.nan, [2, 5]), ERROR),
    ("sample", "z on meta", lambda: oss_fast.sample(mixture(), torch.zeros(2, *SHAPE, device="meta"), [2, 5]), ERROR),
    ("sample", "steps the string '25'", lambda: oss_fast.sample(mixture(), noise(), "25"), ERROR),
    ("sample", "steps floats", lambda: oss_fast.sample(mixture(), noise(), [2.7, 5.9]), ERROR),
    ("sample", "steps True", lambda: oss_fast.sample(mixture(), noise(), [True, 5]), ERROR),
    ("sample", "steps repeated (ab2)", lambda: oss_fast.sample(mixture(), noise(), [3, 3, 5], solver="ab2"), ERROR),
    ("sample", "steps numpy ints", lambda: torch.equal(oss_fast.sample(mixture(), noise(), np.array([2, 5])),
                                                       oss_fast.sample(mixture(), noise(), [2, 5])), True),
    ("sample", "solver a list", lambda: oss_fast.sample(mixture(), noise(), [2, 5], solver=["euler"]), ERROR),
    ("sample", "indices without grid, other sigmas",
     lambda: oss_fast.sample(mixture(), noise(), Schedule([0.99, 0.5, 0.0], indices=[2, 6])), ERROR),
    ("sample", "indices without grid, the model's sigmas",
     lambda: torch.equal(oss_fast.sample(mixture(), noise(), Schedule([0.6, 0.2, 0.0], indices=[2, 6])),
                         oss_fast.sample(mixture(), noise(), [2, 6])), True),
    ("dropin", "infer_OSS repeated indices (published)",
     lambda: torch.allclose(oss_fast.infer_OSS([3, 3, 5], mixture(), noise(), None, "cpu"),
                            ref.sample(mixture(), noise(), [3, 3, 5]), rtol=1e-6, atol=0), True),
    ("schedule", "dynamic_shift linear -5", lambda: Schedule([0.9, 0.6, 0.3, 0.0], size=[64, 64], dynamic_shift=dict(
        FLUX_RULE, time_shift_type="linear", base_shift=-5.0, max_shift=-5.0)), ERROR),
    ("schedule", "dynamic_shift linear 0", bad_schedule(sigmas=[0.75, 0.25, 0.0], size=[64, 64], dynamic_shift=dict(
        FLUX_RULE, time_shift_type="linear", base_shift=0.0, max_shift=0.0)), ERROR),
    ("schedule", "vae_scale_factor 0", bad_schedule(size=[64, 64], dynamic_shift=dict(FLUX_RULE, vae_scale_factor=0)),
     ERROR),
    ("schedule", "vae_scale_factor -8", bad_schedule(size=[64, 64], dynamic_shift=dict(FLUX_RULE, vae_scale_factor=-8)),
     ERROR),
    ("schedule", "vae_scale_factor 0.5", bad_schedule(size=[64, 64], dynamic_shift=dict(FLUX_RULE,
                                                                                        vae_scale_factor=0.5)), ERROR),
    ("schedule", "max_image_seq_len == base", bad_schedule(size=[64, 64], dynamic_shift=dict(
        FLUX_RULE, max_image_seq_len=256)), ERROR),
    ("schedule", "dynamic size 100000x100000", bad_schedule(size=[100000, 100000], dynamic_shift=dict(FLUX_RULE)),
     ERROR),
    ("schedule", "static shift 1e-300", bad_schedule(shift=1e-300), ERROR),
    ("schedule", "timesteps negative", lambda: Schedule([0.9, 0.6, 0.0], timesteps=[-1.0, 5.0],
                                                        parameterization="ddpm"), ERROR),
    ("schedule", "timesteps increasing", bad_schedule(timesteps=[100.0, 900.0], parameterization="ddpm"), ERROR),
    ("schedule", "sigma below float32's smallest", lambda: Schedule([0.5, 1e-40, 0.0]), ERROR),
    ("schedule", "from_indices '13'", lambda: Schedule.from_indices("13", grid=mixture().fm_steps), ERROR),
    ("schedule", "from_indices floats", lambda: Schedule.from_indices([1.0, 3.0], grid=mixture().fm_steps), ERROR),
    ("schedule", "load a FIFO", lambda: Schedule.load(fifo()), ERROR),
    ("schedule", "load /dev/zero", lambda: Schedule.load("/dev/zero"), ERROR),
    ("schedule", "load a link to /dev/zero", lambda: Schedule.load(link_to("/dev/zero")), ERROR),
    ("schedule", "from_search per_sample", lambda: Schedule.from_search(
        search(aggregate="per_sample", mode="exact"), mixture()), ERROR),
    ("schedule", "from_search per_sample, sample=1", lambda: (lambda res: Schedule.from_search(
        res, mixture(), sample=1).indices == res.steps[1])(search(aggregate="per_sample", mode="exact")), True),
    ("transfer", "for_shift numpy float32", lambda: good().for_shift(np.float32(3)) == good().for_shift(3.0), True),
    ("transfer", "for_shift 1e308", lambda: good().for_shift(1e308), ERROR),
    ("transfer", "reshift 1e308", lambda: good().replace(shift=1.0).reshift(1e308), ERROR),
    ("transfer", "preset for_shift 1e308", lambda: oss_fast.presets.get("flux").for_shift(1e308), ERROR),
    ("transfer", "for_shift teacher_steps 10**6, 101 steps",
     lambda: oss_fast.presets.get("chroma").interpolate(101).for_shift(3.0, teacher_steps=10**6), ERROR),
    ("transfer", "for_resolution 100000x100000", lambda: flux_schedule().for_resolution(100000, 100000), ERROR),
    ("transfer", "to_diffusers with mu 1000", lambda: flux_schedule().to_diffusers(flow_scheduler(), mu=1000.0), ERROR),
    ("transfer", "scheduler shift -5", lambda: good().scheduler_arguments(flow_scheduler(use_dynamic_shifting=False,
                                                                                          shift=-5.0)), ERROR),
    ("transfer", "preset steps 10.0", lambda: oss_fast.presets.get("flux", 10.0), ERROR),
    ("transfer", "preset steps numpy 9", lambda: oss_fast.presets.get("flux", np.int64(9)) ==
     oss_fast.presets.get("flux", 9), True),
    ("comfyui", "denoise a string", lambda: node(denoise="0.5"), ERROR),
    ("comfyui", "shift a string", lambda: node(schedule="wan", shift="3"), ERROR),
    ("comfyui", "file a FIFO", lambda: node(schedule="file", file=str(fifo())), ERROR),
    ("comfyui", "file /dev/zero", lambda: node(schedule="file", file="/dev/zero"), ERROR),
    # ---------------------------------------------------------------- ComfyUI node
    ("comfyui", "steps True", lambda: node(steps=True), ERROR),
    ("comfyui", "steps 2.5", lambda: node(steps=2.5), ERROR),
    ("comfyui", "denoise 1.5", lambda: node(denoise=1.5), ERROR),
    ("comfyui", "denoise nan", lambda: node(denoise=math.nan), ERROR),
    ("comfyui", "shift -1", lambda: node(schedule="wan", shift=-1.0), ERROR),
    ("comfyui", "shift nan", lambda: node(schedule="wan", shift=math.nan), ERROR),
    ("comfyui", "schedule None", lambda: node(schedule=None), ERROR),
    ("comfyui", "file is a folder", lambda: node(schedule="file", file=str(TMP)), ERROR),
    ("comfyui", "file of another format", lambda: node(schedule="file", file=str(schedule_file("[1]"))), ERROR),
    ("comfyui", "steps a billion", lambda: node(steps=10**9), ERROR),
    ("comfyui", "good preset", lambda: torch.equal(node(schedule="wan", steps=20),
                                                  oss_fast.presets.get("wan").to_sigmas()), True),
    # ---- issue 19: resume, sizes, engine messages (engine)
    ("resume", "kwargs differing inside a 1,200-element array",
     lambda: resumed_from_other(dict(model=Weighted(), middle=3.0), dict(model=Weighted(), middle=10.0), "w"), ERROR),
    ("resume", "mixtures differing in mean_scale only",
     lambda: resumed_from_other(dict(model=Weighted(mean_scale=1.0), middle=0.0),
                                dict(model=Weighted(mean_scale=2.0), middle=0.0), "scale"), ERROR),
    ("resume", "the same inputs resume to the same schedule",
     lambda: resumed_from_other(dict(model=Weighted(), middle=3.0), dict(model=Weighted(), middle=3.0), "same") ==
     weighted(Weighted(), 3.0).schedule, True),
    ("resume", "an opaque object in model_kwargs", lambda: search(model_kwargs={"foo": Opaque()},
                                                                  checkpoint=TMP / "opaque.ckpt"), ERROR),
    ("resume", "an object array as cond", lambda: search(cond=__import__("numpy").array([Opaque()] * 2, dtype=object),
                                                         checkpoint=TMP / "objects.ckpt"), ERROR),
    ("resume", "checkpoint at a foreign file, no resume", lambda: foreign_checkpoint(False), ERROR),
    ("resume", "checkpoint at a foreign file, resume", lambda: foreign_checkpoint(True), ERROR),
    ("sizes", "N = 10^6, refined", lambda: search(model=mixture(10**6)), ERROR),
    ("sizes", "N = 10^5, full search", lambda: search(model=mixture(10**5), refine=False), ERROR),
    ("sizes", "N = 3000, mode teacher with unipc", lambda: search(model=mixture(3000), mode="teacher", solver="unipc"),
     ERROR),
    ("sizes", "B = 10^7 noises", lambda: search(z=torch.zeros(1, *SHAPE).expand(10**7, *SHAPE)), ERROR),
    ("sizes", "frames = 10^9", lambda: search(model=GaussianMixtureFlow(shape=(2, 3, 2, 2), components=3,
                                                                        teacher_steps=10),
                                              z=torch.randn(2, 2, 3, 2, 2), frames=10**9), ERROR),
    ("sizes", "10^9 noises of the digits model", lambda: oss_fast.zoo.noises(oss_fast.zoo.digits(), 10**9, 0), ERROR),
    ("sizes", "noises with seed 1e30", lambda: oss_fast.zoo.noises(oss_fast.zoo.digits(), 2, 10**30), ERROR),
    ("engine", "float16 teacher overflows", lambda: search(model=Pushed(), z=(noise().clamp(-1, 1) * 3e4).half()),
     ERROR),
    ("engine", "dpmpp_2m on a grid ending at 2", lambda: search(model=Scaled(), solver="dpmpp_2m", validate=False),
     ERROR),
    ("engine", "unipc on a grid ending at 2", lambda: search(model=Scaled(), solver="unipc", mode="teacher"), ERROR),
    ("engine", "ab2 on a grid ending at 2", lambda: oss_fast.search(
        Scaled(), noise(), student_steps=3, mode="exact", aggregate="per_sample", solver="ab2", refine=False,
        validate=False, progress=False).steps == ref.search(Scaled(), noise(), student_steps=3, mode="exact",
                                                            solver="ab2"), True),
    ("engine", "solver as a list", lambda: search(solver=["euler"]), ERROR),
    ("engine", "seed None", lambda: search(seed=None), ERROR),
    ("engine", "seed -1 with random channels", lambda: search(seed=-1, channels=1, random_channels=True), ERROR),
    ("engine", "seed 1.7", lambda: search(seed=1.7), ERROR),
    ("engine", "seed 1e30", lambda: search(seed=1e30), ERROR),
    ("engine", "model_kwargs a list", lambda: search(model_kwargs=[1, 2]), ERROR),
    ("engine", "model_kwargs with an int key", lambda: search(model_kwargs={1: 2}), ERROR),
    ("engine", "fm_steps None", lambda: search(model=with_grid(None)), ERROR),
    ("engine", "fm_steps a string", lambda: search(model=with_grid("0 0.5 1")), ERROR),
    ("engine", "fm_steps of strings", lambda: search(model=with_grid(["0", "1"])), ERROR),
    ("engine", "fm_steps on meta", lambda: search(model=with_grid(torch.linspace(0, 1, 11, device="meta"))),
     ERROR),
    ("engine", "z on meta", lambda: search(z=torch.zeros(2, *SHAPE, device="meta")), ERROR),
    ("engine", "norm 1e308", lambda: search(norm=1e308), ERROR),
    ("engine", "norm 64 runs", lambda: len(search(norm=64, mode="exact").schedule) == 3, True),
    ("engine", "mode teacher with stride", lambda: search(mode="teacher", stride=2), ERROR),
    ("models", "FLUX latent with wrong channels", lambda: tiny_flux_search(torch.randn(2, 16, 12)), ERROR),
    ("models", "FLUX unpacked latent", lambda: tiny_flux_search(torch.randn(2, 4, 8, 8)), ERROR),
    ("cli", "teacher-steps 10^6", lambda: cli("search", "--teacher-steps", "1000000", "--no-progress", "--out",
                                              str(TMP / "n6")), ERROR),
    ("cli", "search --samples 10^7", lambda: cli("search", "--samples", "10000000", "--no-progress", "--out",
                                                 str(TMP / "b7")), ERROR),
    ("cli", "search --seed 10^30", lambda: cli("search", "--seed", str(10**30), "--no-progress", "--out",
                                               str(TMP / "seed")), ERROR),
    # ---------------------------------------------------------------- CLI
    ("cli", "samples 0", lambda: cli("search", "--samples", "0"), ERROR),
    ("cli", "eval-samples -1", lambda: cli("search", "--eval-samples", "-1"), ERROR),
    ("cli", "max-batch 0", lambda: cli("search", "--max-batch", "0"), ERROR),
    ("cli", "shift 0", lambda: cli("search", "--shift", "0"), ERROR),
    ("cli", "shift inf", lambda: cli("search", "--shift", "inf"), ERROR),
    ("cli", "teacher-steps word", lambda: cli("search", "--teacher-steps", "ten"), ERROR),
    ("cli", "abbreviated option", lambda: cli("search", "--teacher", "10"), ERROR),
    ("cli", "device gpu", lambda: cli("search", "--device", "gpu"), ERROR),
    ("cli", "device cuda on CPU", lambda: cli("search", "--device", "cuda"), ERROR),
    ("cli", "out is a file", lambda: cli("search", "--out", __file__), ERROR),
    ("cli", "checkpoint is a folder", lambda: cli("search", "--checkpoint", str(TMP)), ERROR),
    ("cli", "compat K = N", lambda: cli("search", "--model", "gaussian_mixture", "--teacher-steps", "8",
                                        "--student-steps", "8", "--mode", "compat"), ERROR),
    ("cli", "exact K > N", lambda: cli("search", "--model", "gaussian_mixture", "--teacher-steps", "8",
                                       "--student-steps", "9", "--mode", "exact"), ERROR),
    ("cli", "factory raising", lambda: cli("search", "--model", "json:loads"), ERROR),
    ("cli", "module with spaces", lambda: cli("search", "--model", "no such:x"), ERROR),
    ("cli", "sample: bad schedule", lambda: cli("sample", "--schedule", str(schedule_file("[1]"))), ERROR),
    ("cli", "sample: missing schedule", lambda: cli("sample", "--schedule", str(TMP / "none.json")), ERROR),
    ("cli", "compare: no schedules", lambda: cli("compare"), ERROR),
    ("cli", "quality: unknown model", lambda: cli("quality", "--models", "x"), ERROR),
    ("cli", "mode auto (gone)", lambda: cli("search", "--model", "gaussian_mixture", "--mode", "auto"), ERROR),
    ("cli", "--full with --band", lambda: cli("search", "--model", "gaussian_mixture", "--full", "--band", "3"),
     ERROR),
    ("cli", "export: unknown preset", lambda: cli("export", "sdxl"), ERROR),
    ("cli", "export: steps a billion", lambda: cli("export", "flux", "--steps", "1000000000"), ERROR),
    ("cli", "export: size 0x0", lambda: cli("export", "flux", "--size", "0x0"), ERROR),
    ("cli", "export: shift nan", lambda: cli("export", "flux", "--shift", "nan"), ERROR),
    ("cli", "export: DiT schedule as SIGMAS", lambda: cli("export", str(schedule_file(json.dumps(dict(
        GOOD_SCHEDULE, parameterization="ddpm")))), "--format", "comfyui"), ERROR),
    ("cli", "export: out in a missing folder", lambda: cli("export", "flux", "--out", str(TMP / "no" / "x.json")),
     ERROR),
    # ---- issue 19: outputs, metadata, messages (cli)
    ("cli", "seed 1e30", lambda: cli("search", "--seed", "1e30"), ERROR),
    ("cli", "seed -1", lambda: cli("search", "--seed", "-1"), ERROR),
    ("cli", "teacher mode with --stride", lambda: cli("search", "--mode", "teacher", "--stride", "2"), ERROR),
    ("cli", "factory calling sys.exit", lambda: cli("search", "--model", "probe_factories:exits"), ERROR),
    ("cli", "quality: out in a missing folder", lambda: cli("quality", "--out", str(TMP / "no" / "q.md")), ERROR),
    ("cli", "export: more steps than the grid, shifted", lambda: cli("export", str(schedule_file(json.dumps(
        GOOD_SCHEDULE))), "--steps", "8", "--shift", "3"), ERROR),
    ("cli", "sample: metadata model 5", lambda: "written to" in cli(
        "sample", "--model", "gaussian_mixture", "--teacher-steps", "4", "--schedule",
        str(schedule_file(json.dumps(dict(GOOD_SCHEDULE, metadata={"model": 5})))), "--out", str(TMP / "m5")), True),
    ("cli", "compare: metadata grid a string, other grid", lambda: cli(
        "compare", "--model", "gaussian_mixture", "--teacher-steps", "4", "--shift", "3",
        str(schedule_file(json.dumps(dict(GOOD_SCHEDULE, metadata={"grid": "x"})))), "--out", str(TMP / "gs")), ERROR),
    ("cli", "compare: grid shift 'abc', other grid", lambda: cli(
        "compare", "--model", "gaussian_mixture", "--teacher-steps", "4", "--shift", "3", str(schedule_file(json.dumps(
            dict(GOOD_SCHEDULE, metadata={"grid": {"kind": "shifted", "shift": "abc"}})))), "--out", str(TMP / "ga")),
     ERROR),
    ("cli", "sample: samples.pt a planted symlink", lambda: symlinked_output(), True),
    ("cli", "the default search", lambda: "refined coarse to fine" in cli(
        "search", "--model", "gaussian_mixture", "--teacher-steps", "40", "--student-steps", "3", "--samples", "2",
        "--no-compare", "--no-progress", "--out", str(TMP / "default")), True),
]


def run_case(case, conn):
    _, _, fn, expected = case
    try:
        result = fn()
    except (ValueError, TypeError, FloatingPointError) as err:
        one_line = str(err) and "\n" not in str(err).strip()
        conn.send(("error" if expected == ERROR and one_line else "wrong" if one_line else "traceback",
                   f"{type(err).__name__}: {str(err)[:160]}"))
        return
    except BaseException as err:  # noqa: BLE001 - every other exception is a finding
        conn.send(("traceback", "".join(traceback.format_exception_only(type(err), err)).strip()[:300]))
        return
    if expected == ERROR:
        conn.send(("wrong", f"returned {str(result)[:120]} where an error was due"))
    else:
        conn.send(("right" if result == expected else "wrong", f"returned {str(result)[:120]}"))


def main() -> int:
    counts = {k: 0 for k in ("error", "right", "wrong", "traceback", "crash", "hang")}
    ctx = mp.get_context("fork")
    for case in CASES:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=run_case, args=(case, child))
        proc.start()
        proc.join(300)
        if proc.is_alive():
            proc.kill()
            outcome, detail = "hang", "still running after 300 s"
        elif parent.poll():
            outcome, detail = parent.recv()
        else:
            outcome, detail = "crash", f"exit code {proc.exitcode}"
        counts[outcome] += 1
        if outcome not in ("error", "right"):
            print(f"{outcome:9s} {case[0]:9s} {case[1]}: {detail}")
    print(f"{len(CASES)} cases: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0 if counts["wrong"] + counts["traceback"] + counts["crash"] + counts["hang"] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("TRITON_INTERPRET", "1")
    sys.exit(main())
