"""The ComfyUI node, called as ComfyUI calls it: the class contract it reads, FUNCTION with the
inputs as keyword arguments, and the SIGMAS it returns driving k-diffusion's samplers (what
ComfyUI's euler and lms samplers are) to oss_fast.sample's result."""

import importlib.util
import logging
import os
import sys
import types
from pathlib import Path
from typing import Callable, NamedTuple

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


# ------------------------------------------------------------------ the custom-node folder and schedulers

NODE_FOLDER = Path(comfyui.__file__).parent / "oss_fast_nodes"


def load_like_comfyui(folder: Path, monkeypatch):
    """What ComfyUI's load_custom_node does with a folder in custom_nodes: its __init__.py imported
    as a module of ComfyUI's naming (the path, not oss_fast's package), put in sys.modules first."""
    name = str(folder).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


class SchedulerHandler(NamedTuple):  # comfy.samplers' shape since v0.3.11
    handler: Callable[..., torch.Tensor]
    use_ms: bool = True


class CONST:  # comfy.model_sampling's flow denoiser: x = s noise + (1 - s) x0, sigma = flow time
    pass


class EPS:  # ... and the eps-prediction one (SD1, SDXL): variance-exploding sigmas
    pass


def simple_scheduler(model_sampling, steps):
    return torch.linspace(1, 0, steps + 1)


@pytest.fixture
def comfy(monkeypatch, tmp_path):
    """A stand-in for ComfyUI's comfy.samplers and comfy.model_sampling (and folder_paths, its models
    folder in tmp_path/models): the names and calling convention scheduler handlers meet there."""
    samplers = types.ModuleType("comfy.samplers")
    samplers.SchedulerHandler = SchedulerHandler
    samplers.SCHEDULER_HANDLERS = {"simple": SchedulerHandler(simple_scheduler)}
    samplers.SCHEDULER_NAMES = list(samplers.SCHEDULER_HANDLERS)
    samplers.KSampler = type("KSampler", (), {"SCHEDULERS": samplers.SCHEDULER_NAMES})

    def calculate_sigmas(model_sampling, scheduler_name, steps):  # how ComfyUI calls a handler
        handler = samplers.SCHEDULER_HANDLERS[scheduler_name]
        assert handler.use_ms
        return handler.handler(model_sampling, steps)

    samplers.calculate_sigmas = calculate_sigmas
    model_sampling = types.ModuleType("comfy.model_sampling")
    model_sampling.CONST, model_sampling.EPS = CONST, EPS
    package = types.ModuleType("comfy")
    package.samplers, package.model_sampling = samplers, model_sampling
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.models_dir = str(tmp_path / "models")
    for name, module in [("comfy", package), ("comfy.samplers", samplers), ("comfy.model_sampling", model_sampling),
                         ("folder_paths", folder_paths)]:
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delenv(comfyui.SCHEDULES_ENV, raising=False)
    return samplers


def flow_model_sampling():
    return type("ModelSampling", (CONST,), {})()  # ComfyUI builds it as a class of (sampling, CONST)


PRESET_SCHEDULERS = ["oss_chroma", "oss_flux", "oss_wan"]


def test_the_node_folder_loads_as_comfyui_loads_it_without_comfy_importable(monkeypatch):
    assert importlib.util.find_spec("comfy") is None  # this test is about a Python without ComfyUI's modules
    module = load_like_comfyui(NODE_FOLDER, monkeypatch)
    node = module.NODE_CLASS_MAPPINGS["OSSSchedule"]
    assert module.NODE_DISPLAY_NAME_MAPPINGS == {"OSSSchedule": "OSS schedule"}
    (sigmas,) = getattr(node(), node.FUNCTION)(schedule="flux", steps=10, denoise=1.0, shift=0.0)
    published = presets.PRESETS["flux"].published
    assert torch.equal(sigmas, torch.tensor(published[:-1] + (0.0,), dtype=torch.float32))
    assert comfyui.register_schedulers() == []  # nothing to register into


def test_the_node_folder_registers_the_schedulers_when_comfyui_loads_it(comfy, monkeypatch):
    module = load_like_comfyui(NODE_FOLDER, monkeypatch)
    assert "OSSSchedule" in module.NODE_CLASS_MAPPINGS
    assert comfy.SCHEDULER_NAMES == ["simple"] + PRESET_SCHEDULERS  # ComfyUI's default stays first
    assert comfy.KSampler.SCHEDULERS is comfy.SCHEDULER_NAMES


def test_the_node_folder_says_how_to_install_oss_fast_when_it_is_missing(monkeypatch):
    class NoOssFast:  # a Python where oss_fast was never installed
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.split(".")[0] == "oss_fast":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    for name in [n for n in sys.modules if n.split(".")[0] == "oss_fast"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [NoOssFast] + sys.meta_path)
    with pytest.raises(ModuleNotFoundError, match=r"^oss_fast is not installed in the Python ComfyUI runs with: "
                                                  r"pip install /path/to/oss_fast"):
        load_like_comfyui(NODE_FOLDER, monkeypatch)


def test_schedulers_give_the_presets_and_the_files_of_the_folder_at_comfyuis_step_count(comfy, tmp_path):
    folder = tmp_path / "models" / "oss_schedules"  # ComfyUI's models folder, where the variable is unset
    folder.mkdir(parents=True)
    mine = Schedule([0.9, 0.6, 0.3, 0.1, 0.0], shift=3.0)
    mine.save(folder / "mine.json")
    Schedule([0.9, 0.5, 0.2, 0.0], parameterization="ddpm").save(folder / "dit.json")
    (folder / "notes.txt").write_text("not a schedule")
    names = comfyui.register_schedulers()
    assert names == PRESET_SCHEDULERS + ["oss_file_dit", "oss_file_mine"]
    assert comfy.SCHEDULER_NAMES == ["simple"] + names

    flow = flow_model_sampling()
    published = presets.PRESETS["wan"].published
    assert torch.equal(comfy.calculate_sigmas(flow, "oss_wan", 20),
                       torch.tensor(published[:-1] + (0.0,), dtype=torch.float32))
    assert torch.equal(comfy.calculate_sigmas(flow, "oss_file_mine", 4), torch.tensor([0.9, 0.6, 0.3, 0.1, 0.0]))
    other = comfy.calculate_sigmas(flow, "oss_file_mine", 7)
    assert other.dtype == torch.float32 and len(other) == 8 and other[-1] == 0 and bool((other[1:] < other[:-1]).all())
    assert other[0] == pytest.approx(0.9) and other[-2] == pytest.approx(0.1)  # log-linear between the ends
    Schedule([0.8, 0.4, 0.0]).save(folder / "mine.json")  # searched again: read when sampled, no restart
    assert torch.equal(comfy.calculate_sigmas(flow, "oss_file_mine", 2), torch.tensor([0.8, 0.4, 0.0]))
    with pytest.raises(ValueError, match="dit.json is a DDPM-family"):
        comfy.calculate_sigmas(flow, "oss_file_dit", 3)


def test_schedulers_refuse_models_that_do_not_sample_in_flow_time(comfy):
    comfyui.register_schedulers()
    sdxl = type("ModelSampling", (EPS,), {"sigma_max": 14.6})()
    with pytest.raises(ValueError, match=r"^scheduler 'oss_flux' is a flow-matching schedule .* not CONST"):
        comfy.calculate_sigmas(sdxl, "oss_flux", 10)


def test_the_schedules_folder_is_the_variable_else_comfyuis_models_folder(comfy, tmp_path, monkeypatch):
    assert comfyui.schedules_folder() == tmp_path / "models" / "oss_schedules"
    monkeypatch.setenv(comfyui.SCHEDULES_ENV, str(tmp_path / "elsewhere"))
    assert comfyui.schedules_folder() == tmp_path / "elsewhere"
    (tmp_path / "elsewhere").mkdir()
    presets.get("flux").save(tmp_path / "elsewhere" / "flux10.json")
    assert comfyui.register_schedulers() == PRESET_SCHEDULERS + ["oss_file_flux10"]
    monkeypatch.delenv(comfyui.SCHEDULES_ENV)
    monkeypatch.delitem(sys.modules, "folder_paths")  # outside ComfyUI, no variable: presets only
    assert comfyui.schedules_folder() is None


def test_registering_again_adds_no_name_twice_and_leaves_comfyuis_own_alone(comfy):
    simple = comfy.SCHEDULER_HANDLERS["simple"]
    first = comfyui.register_schedulers()
    assert comfyui.register_schedulers() == first
    assert comfy.SCHEDULER_NAMES == ["simple"] + first and len(comfy.SCHEDULER_HANDLERS) == 1 + len(first)
    assert comfy.SCHEDULER_HANDLERS["simple"] is simple


def test_a_scheduler_list_rebound_by_another_custom_node_gets_the_names_too(comfy):
    comfy.SCHEDULER_NAMES = comfy.SCHEDULER_NAMES + ["beta57"]  # KSampler.SCHEDULERS keeps the old list
    comfyui.register_schedulers()
    assert comfy.SCHEDULER_NAMES == ["simple", "beta57"] + PRESET_SCHEDULERS
    assert comfy.KSampler.SCHEDULERS == ["simple"] + PRESET_SCHEDULERS


def test_a_comfyui_before_scheduler_handlers_is_skipped_with_a_log_line(comfy, caplog):
    del comfy.SCHEDULER_HANDLERS, comfy.SchedulerHandler  # v0.3.10 and before: names and an if-chain
    with caplog.at_level(logging.WARNING):
        assert comfyui.register_schedulers() == []
    assert comfy.SCHEDULER_NAMES == ["simple"] and "v0.3.11" in caplog.text
