"""The ComfyUI node, called as ComfyUI calls it: the class contract it reads, FUNCTION with the
inputs as keyword arguments, and the SIGMAS it returns driving k-diffusion's samplers (what
ComfyUI's euler and lms samplers are) to oss_fast.sample's result."""

import os

import pytest
import torch

import oss_fast
from oss_fast import Schedule, presets
from oss_fast.integrations import comfyui
from oss_fast.zoo import GaussianMixtureFlow

from kdiffusion import load_sampling


def comfy_call(**inputs):
    """What ComfyUI does with a node class: INPUT_TYPES for the widgets (their defaults where the user
    leaves them), a new instance, then FUNCTION with every input by name."""
    cls = comfyui.NODE_CLASS_MAPPINGS["OSSSchedule"]
    spec = cls.INPUT_TYPES()
    values = {name: options[1]["default"] for name, options in spec["required"].items()}
    values.update(inputs)
    out = getattr(cls(), cls.FUNCTION)(**values)
    assert isinstance(out, tuple) and len(out) == len(cls.RETURN_TYPES)
    return out[0]


def test_node_contract_comfyui_reads():
    assert set(comfyui.NODE_CLASS_MAPPINGS) == set(comfyui.NODE_DISPLAY_NAME_MAPPINGS) == {"OSSSchedule"}
    cls = comfyui.NODE_CLASS_MAPPINGS["OSSSchedule"]
    assert cls.RETURN_TYPES == ("SIGMAS",) and callable(getattr(cls(), cls.FUNCTION))
    spec = cls.INPUT_TYPES()
    choices = spec["required"]["schedule"][0]
    assert choices == presets.names() + ["file"] and spec["required"]["schedule"][1]["default"] in choices
    for name, (kind, options) in {**spec["required"], **spec["optional"]}.items():
        assert isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING"), name
        assert "default" in options
    assert spec["required"]["steps"][1]["min"] == 1


@pytest.mark.parametrize("name", presets.names())
def test_presets_at_their_own_and_other_step_counts(name):
    K = len(presets.get(name))
    own = comfy_call(schedule=name, steps=K)
    assert own.dtype == torch.float32 and torch.equal(own, presets.get(name).to_sigmas())
    other = comfy_call(schedule=name, steps=K + 3)
    assert len(other) == K + 4 and other[-1] == 0 and bool((other[1:] < other[:-1]).all())
    assert torch.equal(other, presets.get(name, K + 3).to_sigmas())


def test_denoise_keeps_the_tail_and_shift_reshifts_from_the_recorded_shift():
    full = comfy_call(schedule="flux", steps=10)
    assert torch.equal(comfy_call(schedule="flux", steps=10, denoise=0.3), full[-4:])
    # Python's round, as the published node: a half goes to the even count (2.5 -> 2, 3.5 -> 4)
    assert torch.equal(comfy_call(schedule="flux", steps=10, denoise=0.25), full[-3:])
    assert torch.equal(comfy_call(schedule="flux", steps=10, denoise=0.35), full[-5:])
    for keeps_none in (0.0, 0.04):  # round(10 x 0.04) = 0: no sigmas, as ComfyUI's schedulers at denoise 0
        assert comfy_call(schedule="flux", steps=10, denoise=keeps_none).numel() == 0
    with pytest.raises(ValueError, match="keeps none"):  # the rule the node follows, one place
        presets.get("flux").for_denoise(0.04)
    moved = comfy_call(schedule="wan", steps=20, shift=3.0)
    torch.testing.assert_close(moved, presets.get("wan").reshift(3.0).to_sigmas())
    assert bool((moved[1:-1] < presets.get("wan").to_sigmas()[1:-1]).all())  # a lower shift: lower sigmas


@pytest.mark.parametrize("solver,sampler", [("euler", "sample_euler"), ("ab2", "sample_lms")])
def test_sigmas_of_a_schedule_file_drive_k_diffusion_to_oss_fast_sample(tmp_path, solver, sampler):
    k = load_sampling()
    if k is None:
        pytest.skip("k-diffusion is not installed (run.sh installs it)")
    model = GaussianMixtureFlow(shape=(2, 4, 4), components=3, teacher_steps=30, shift=3.0, seed=6)
    res = oss_fast.search(model, model.noise(4, seed=2), student_steps=4, solver=solver, progress=False)
    schedule = Schedule.from_search(res, model)
    schedule.save(tmp_path / "s.json")
    sigmas = comfy_call(schedule="file", file=str(tmp_path / "s.json"), steps=4)
    grid = model.fm_steps

    def denoiser(x, sigma):  # ComfyUI's flow models: D(x, s) = x - s v(x, s)
        i = int(torch.argmin((grid - float(sigma[0])).abs()))
        assert abs(float(grid[i]) - float(sigma[0])) < 1e-6  # the node's sigmas are the grid's flow times
        return x - sigma[:, None, None, None].to(x.dtype) * model(x, torch.full((x.shape[0],), i), None, {})

    z = model.noise(3, seed=7, dtype=torch.float64)
    extra = dict(order=2) if sampler == "sample_lms" else {}
    got = getattr(k, sampler)(denoiser, z.clone(), sigmas.double(), disable=True, **extra)
    expected = oss_fast.sample(model, z, schedule, float32=False)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_bad_inputs_get_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match=r"^unknown preset 'sdxl' \(known: chroma, flux, wan\)$"):
        comfy_call(schedule="sdxl")
    with pytest.raises(ValueError, match=r"steps must be a whole number in \[1, 10000\], got 0"):
        comfy_call(steps=0)
    with pytest.raises(ValueError, match="needs the path"):
        comfy_call(schedule="file")
    with pytest.raises(ValueError, match="cannot read schedule file"):
        comfy_call(schedule="file", file=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="records no shift"):
        comfy_call(schedule="flux", shift=3.0)
    Schedule([0.9, 0.5, 0.2, 0.0], parameterization="ddpm").save(tmp_path / "dit.json")
    with pytest.raises(ValueError, match="DDPM-family"):
        comfy_call(schedule="file", file=str(tmp_path / "dit.json"), steps=3)


@pytest.mark.parametrize("inputs,message", [
    (dict(denoise="0.5"), r"^denoise must be a number in \[0, 1\], got '0.5'$"),
    (dict(denoise=None), "denoise must be a number"),
    (dict(schedule="wan", shift="3"), r"^shift must be a number: 0 \(as searched\) or > 0, got '3'$"),
    (dict(schedule="wan", shift=True), "shift must be a number"),
    (dict(steps=10.0), r"steps must be a whole number in \[1, 10000\], got 10.0"),
])
def test_inputs_of_the_wrong_type_are_named(inputs, message):
    with pytest.raises(ValueError, match=message):
        comfy_call(**inputs)


def test_the_file_input_reads_through_schedule_load_bounded(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # no writer: an unbounded open would wait forever
    with pytest.raises(ValueError, match="not a regular file"):
        comfy_call(schedule="file", file=str(fifo))
    with pytest.raises(ValueError, match="not a regular file"):
        comfy_call(schedule="file", file="/dev/zero")
    presets.get("wan").save(tmp_path / "wan.json")
    assert torch.equal(comfy_call(schedule="file", file=str(tmp_path / "wan.json"), steps=20),
                       presets.get("wan").to_sigmas())
