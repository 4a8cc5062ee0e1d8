"""Schedule: JSON, interpolation, sampling, and export to diffusers schedulers and pipelines."""

import json
import math
import types

import numpy as np
import pytest
import torch
from diffusers import (AutoencoderKL, DDPMScheduler, DiTPipeline, DiTTransformer2DModel, EulerDiscreteScheduler,
                       FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel, SD3Transformer2DModel,
                       StableDiffusion3Pipeline, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel)

import oss_fast
from oss_fast import Schedule, presets
from oss_fast.models import DiTWrapper, FlowMatchWrapper, FluxWrapper, WanWrapper, flux_inputs
from oss_fast.solvers import SOLVERS
from oss_fast.zoo import GaussianMixtureFlow

ON_DIFFUSERS = [name for name, solver in SOLVERS.items() if solver.diffusers]  # the solvers diffusers runs


def searched(shift=3.0, N=30, K=5):
    model = GaussianMixtureFlow(shape=(2, 4, 4), components=3, teacher_steps=N, shift=shift, seed=2)
    res = oss_fast.search(model, model.noise(3, seed=1), student_steps=K, progress=False)
    return model, res, Schedule.from_search(res, model, seeds=[1])


def test_from_search_and_json_round_trip_is_exact(tmp_path):
    model, res, schedule = searched()
    assert schedule.indices == res.schedule
    assert schedule.sigmas == [float(model.fm_steps[i]) for i in reversed(res.schedule)] + [0.0]
    assert schedule.metadata["mode"] == res.mode and schedule.metadata["student_steps"] == 5
    assert schedule.metadata["grid"] == {"teacher_steps": 30, "first": 0.0, "last": 1.0, "kind": "shifted", "shift": 3.0}
    path = tmp_path / "s.json"
    schedule.save(path)
    loaded = Schedule.load(path)
    assert loaded == schedule and loaded.sigmas == schedule.sigmas
    assert loaded.metadata["oss_fast_version"] == oss_fast.__version__ and "date" in loaded.metadata
    with pytest.raises(ValueError, match="not an oss_fast schedule"):
        path.write_text('{"format": "other"}')
        Schedule.load(path)


def test_interpolation_is_log_linear_and_identity_at_its_own_length():
    s = Schedule([1.0, 0.1, 0.0])
    assert s.interpolate(2).sigmas == s.sigmas
    three = s.interpolate(3)
    assert three.sigmas[:-1] == pytest.approx([1.0, 10**-0.5, 0.1], rel=1e-12) and three.sigmas[-1] == 0.0
    _, _, schedule = searched()
    assert schedule.interpolate(len(schedule)).sigmas == schedule.sigmas
    ten = schedule.interpolate(10)
    assert len(ten) == 10 and ten.sigmas[0] == schedule.sigmas[0] and ten.sigmas[-2] == pytest.approx(schedule.sigmas[-2])
    assert ten.indices is None  # interpolated sigmas fall between grid points
    with pytest.raises(ValueError, match="no grid indices"):
        oss_fast.sample(GaussianMixtureFlow(shape=(2, 4, 4), teacher_steps=30), torch.zeros(1, 2, 4, 4), ten)


def test_from_sigmas_recovers_grid_indices_and_sampling_follows_them():
    model, res, schedule = searched()
    again = Schedule.from_sigmas(schedule.sigmas[:-1], model.fm_steps)
    assert again.indices == schedule.indices
    z = model.noise(2, seed=5)
    assert torch.equal(oss_fast.sample(model, z, schedule), oss_fast.sample(model, z, res.schedule))
    other = GaussianMixtureFlow(shape=(2, 4, 4), components=3, teacher_steps=30, shift=1.0, seed=2)
    with pytest.raises(ValueError, match="made on a grid of 30 steps, shifted by 3; the model's grid has 30 steps, uniform"):
        oss_fast.sample(other, z, schedule)
    snapped = schedule.interpolate(7).snap()
    assert len(snapped.indices) <= 7 and all(1 <= i <= 30 for i in snapped.indices)


def test_bad_schedules():
    with pytest.raises(ValueError, match="ending at 0"):
        Schedule([1.0, 0.5])
    with pytest.raises(ValueError, match="decreasing"):
        Schedule([0.5, 1.0, 0.0])
    with pytest.raises(ValueError, match="ascending"):
        Schedule.from_indices([5, 3], grid=[0, 0.1, 0.2, 0.3, 0.4, 0.5])


# ----------------------------------------------------------------------------- schedulers

FLUX_CONFIG = dict(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                   max_image_seq_len=4096)


@pytest.mark.parametrize("config", [FLUX_CONFIG, dict(shift=3.0), dict()])
def test_flow_match_scheduler_lands_on_the_schedule(config):
    _, _, schedule = searched()
    scheduler = FlowMatchEulerDiscreteScheduler(**config)
    args = schedule.to_diffusers(scheduler, mu=0.8)
    scheduler.set_timesteps(**args)
    np.testing.assert_allclose(scheduler.sigmas.numpy(), schedule.sigmas, rtol=2e-6, atol=1e-7)


def test_unipc_flow_scheduler_lands_on_the_schedule():
    _, _, schedule = searched(shift=1.0)
    scheduler = UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=3.0, prediction_type="flow_prediction")
    with schedule.applied(scheduler):
        scheduler.set_timesteps(50)
    np.testing.assert_allclose(scheduler.sigmas.numpy()[1:], schedule.sigmas[1:], rtol=2e-6, atol=1e-7)
    assert scheduler.sigmas[0].item() == pytest.approx(schedule.sigmas[0], abs=2e-6)  # UniPC nudges 1 by 1e-6
    scheduler.set_timesteps(50)  # outside the block: the scheduler's own steps again
    assert len(scheduler.sigmas) == 51


def tiny_dit_wrapper(N=40):
    torch.manual_seed(0)
    net = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=1000,
                                norm_num_groups=16).eval()
    return net, DiTWrapper.from_diffusers(net, DDPMScheduler(), N, guidance_scale=2.0)


def test_ddpm_family_exports_ve_sigmas_and_timesteps():
    _, wrapper = tiny_dit_wrapper()
    schedule = Schedule.from_indices([3, 9, 20, 40], wrapper)
    assert schedule.parameterization == "ddpm"
    assert schedule.timesteps == [float(wrapper.timestep_map[i - 1]) for i in (40, 20, 9, 3)]
    euler = EulerDiscreteScheduler()
    euler.set_timesteps(**schedule.to_diffusers(euler))
    s = np.array(schedule.sigmas)
    np.testing.assert_allclose(euler.sigmas.numpy(), s / (1 - s), rtol=2e-6)
    # Euler on the variance-exploding sigma lands on the schedule's network timesteps
    np.testing.assert_allclose(euler.timesteps.numpy(), schedule.timesteps, atol=0.05)
    ddpm = DDPMScheduler()
    ddpm.set_timesteps(**schedule.to_diffusers(ddpm))
    assert ddpm.timesteps.tolist() == [int(t) for t in schedule.timesteps]


def tiny_flux_pipeline(N=20):
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=16, guidance_embeds=True, axes_dims_rope=(2, 2, 4))
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_CONFIG), vae=None, text_encoder=None,
                        tokenizer=None, text_encoder_2=None, tokenizer_2=None, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe, FluxWrapper.from_pipeline(pipe, N, height=64, width=64)


def tiny_wan_pipeline(N=20):
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                                        in_channels=4, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=32,
                                        num_layers=1, rope_max_seq_len=32)
    # Wan's default scheduler in diffusers
    scheduler = UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=5.0, prediction_type="flow_prediction")
    pipe = WanPipeline(tokenizer=None, text_encoder=None, transformer=transformer, vae=None, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    negative = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(3))
    return pipe, WanWrapper.from_diffusers(transformer, N, negative, guide_scale=5.0, shift=5.0), negative


@pytest.mark.parametrize("solver", ON_DIFFUSERS)
def test_flux_pipeline_gives_oss_fast_samples(solver):
    pipe, wrapper = tiny_flux_pipeline()
    schedule = Schedule.from_indices([3, 8, 14, 20], wrapper, solver=solver)
    g = torch.Generator().manual_seed(1)
    prompt, pooled, z = torch.randn(1, 5, 32, generator=g), torch.randn(1, 16, generator=g), torch.randn(1, 16, 16, generator=g)
    call = dict(prompt_embeds=prompt, pooled_prompt_embeds=pooled, latents=z, guidance_scale=3.5, output_type="latent")
    expected = oss_fast.sample(wrapper, z, schedule, model_kwargs=flux_inputs(prompt, pooled, 8, 8, 3.5))
    if solver == "euler":  # call arguments, on the pipeline's own scheduler; the size goes to to_diffusers
        for size in ({}, dict(height=64, width=64)):
            arguments = schedule.to_diffusers(pipe, **size)
            assert (arguments["height"], arguments["width"]) == (64, 64)  # the size its sigmas are for
            got = pipe(**call, **arguments).images
            torch.testing.assert_close(got, expected, rtol=0, atol=2e-4)
        return
    with pytest.raises(ValueError, match="applied"):
        schedule.to_diffusers(pipe)
    with schedule.applied(pipe) as scheduler:
        assert schedule.runs_on(scheduler)
        got = pipe(**call, height=64, width=64, num_inference_steps=50).images
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"  # restored
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-4)


def tiny_sd3_pipeline(N=20):
    """A tiny SD3 pipeline (static shift 3, as SD3's scheduler config) and oss_fast's wrapper of its
    transformer on the scheduler's N-step sigmas."""
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16,
                                        pooled_projection_dim=16, out_channels=4, pos_embed_max_size=16)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler, vae=None, text_encoder=None,
                                    tokenizer=None, text_encoder_2=None, tokenizer_2=None, text_encoder_3=None,
                                    tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    grid = FlowMatchEulerDiscreteScheduler(shift=3.0)
    grid.set_timesteps(N)
    velocity = lambda x, t, prompt, pooled: transformer(hidden_states=x, timestep=t, encoder_hidden_states=prompt,
                                                         pooled_projections=pooled, return_dict=False)[0]
    return pipe, FlowMatchWrapper(velocity, grid.sigmas[:-1])


@pytest.mark.parametrize("solver", ON_DIFFUSERS)
def test_sd3_pipeline_gives_oss_fast_samples(solver):
    pipe, wrapper = tiny_sd3_pipeline()
    schedule = Schedule.from_indices([2, 6, 12, 20], wrapper, solver=solver)
    g = torch.Generator().manual_seed(5)
    prompt, pooled, z = torch.randn(1, 7, 32, generator=g), torch.randn(1, 16, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    call = dict(prompt_embeds=prompt, pooled_prompt_embeds=pooled, height=64, width=64, latents=z, guidance_scale=1.0,
                output_type="latent")
    if solver == "euler":  # call arguments, on SD3's own scheduler
        got = pipe(**call, **schedule.to_diffusers(pipe, height=64, width=64)).images
    else:
        with schedule.applied(pipe) as scheduler:
            assert schedule.runs_on(scheduler)
            got = pipe(**call, num_inference_steps=50).images
        assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"  # restored
    expected = oss_fast.sample(wrapper, z, schedule, prompt, model_kwargs={"pooled": pooled})
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-4)


@pytest.mark.parametrize("solver", ON_DIFFUSERS)
def test_wan_pipeline_gives_oss_fast_samples(solver):
    pipe, wrapper, negative = tiny_wan_pipeline()
    schedule = Schedule.from_indices([2, 7, 13, 19], wrapper, solver=solver)
    g = torch.Generator().manual_seed(2)
    prompt, z = torch.randn(1, 6, 16, generator=g), torch.randn(1, 4, 2, 2, 2, generator=g)
    with schedule.applied(pipe):
        got = pipe(prompt_embeds=prompt, negative_prompt_embeds=negative, height=16, width=16, num_frames=5,
                   latents=z, guidance_scale=5.0, num_inference_steps=50, output_type="latent").frames
    expected = oss_fast.sample(wrapper, z, schedule, prompt)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-4)
    # the pipeline's own UniPC is not Euler: an Euler schedule switches it, a UniPC one keeps it
    assert schedule.runs_on(pipe.scheduler) == (solver == "unipc")


@pytest.mark.parametrize("solver", ON_DIFFUSERS)
def test_dit_pipeline_gives_oss_fast_samples(solver):
    net, wrapper = tiny_dit_wrapper()
    schedule = Schedule.from_indices([3, 9, 20, 40], wrapper, solver=solver)
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=4, sample_size=8)
    pipe = DiTPipeline(transformer=net, vae=vae, scheduler=EulerDiscreteScheduler())
    pipe.set_progress_bar_config(disable=True)
    decoded = []
    vae.decode = lambda latents: decoded.append(latents) or types.SimpleNamespace(
        sample=torch.zeros(latents.shape[0], 3, 8, 8))
    with schedule.applied(pipe):
        pipe(class_labels=[1], guidance_scale=2.0, num_inference_steps=50, output_type="pt",
             generator=torch.Generator().manual_seed(4))
    got = decoded[0] * vae.config.scaling_factor
    # DiTPipeline starts from unit noise in its variance-preserving space: flow noise times (alpha + sigma)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    acp = DDPMScheduler().alphas_cumprod[int(schedule.timesteps[0])].double()
    z = noise / float(acp.sqrt() + (1 - acp).sqrt())
    expected = oss_fast.sample(wrapper, z, schedule, torch.tensor([1]))
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-4)


def test_ab2_has_no_diffusers_scheduler_and_says_where_to_sample_it():
    _, wrapper = tiny_dit_wrapper()
    schedule = Schedule.from_indices([3, 9, 20, 40], wrapper, solver="ab2")
    with pytest.raises(ValueError, match="lms"):
        schedule.diffusers_scheduler()
    pipe, _, _ = tiny_wan_pipeline()
    with pytest.raises(ValueError, match="lms"):
        with schedule.applied(pipe):
            pass


def test_the_diffusers_export_followed_as_written_gives_oss_fast_samples():
    # FLUX (dynamic shift at the recorded size) and SD3 (static shift 3): the export's scheduler, its
    # config and call arguments, used as `usage` says, without oss_fast in the loop
    import diffusers

    flux, flux_wrapper = tiny_flux_pipeline()
    sd3, sd3_wrapper = tiny_sd3_pipeline()
    g = torch.Generator().manual_seed(6)
    prompt, pooled = torch.randn(1, 5, 32, generator=g), torch.randn(1, 16, generator=g)
    cases = [(flux, Schedule.from_indices([2, 7, 13, 20], flux_wrapper), torch.randn(1, 16, 16, generator=g),
              lambda z, s: oss_fast.sample(flux_wrapper, z, s, model_kwargs=flux_inputs(prompt, pooled, 8, 8, 3.5))),
             (sd3, Schedule.from_indices([2, 6, 12, 20], sd3_wrapper).replace(shift=3.0), torch.randn(1, 4, 8, 8, generator=g),
              lambda z, s: oss_fast.sample(sd3_wrapper, z, s, prompt, model_kwargs={"pooled": pooled}))]
    for pipe, schedule, z, expected in cases:
        spec = json.loads(json.dumps(schedule.diffusers_export()))  # what `oss-fast export` prints
        assert "sigmas=sigmas, num_inference_steps=num_inference_steps" in spec["usage"]
        pipe.scheduler = getattr(diffusers, spec["scheduler"]).from_config(pipe.scheduler.config,
                                                                            **spec["scheduler_config"])
        size = {k: spec[k] for k in ("height", "width") if k in spec}
        got = pipe(prompt_embeds=prompt, pooled_prompt_embeds=pooled, latents=z, guidance_scale=3.5 if pipe is flux
                   else 1.0, output_type="latent", sigmas=spec["sigmas"],
                   num_inference_steps=spec["num_inference_steps"], **size).images
        np.testing.assert_allclose(pipe.scheduler.sigmas.numpy(), schedule.sigmas, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(got, expected(z, schedule), rtol=0, atol=2e-4)


def test_for_denoise_keeps_the_last_rounded_steps_and_refuses_a_strength_that_keeps_none():
    _, wrapper = tiny_dit_wrapper()
    schedule = Schedule.from_indices([3, 9, 20, 31, 40], wrapper)  # indices, grid and network timesteps
    tail = schedule.for_denoise(0.5)  # round(2.5) = 2: Python's round, the published node's
    assert tail.sigmas == schedule.sigmas[3:] and tail.indices == [3, 9]
    assert tail.timesteps == schedule.timesteps[3:] and tail.metadata["denoise"] == dict(strength=0.5, of_steps=5)
    assert schedule.for_denoise(0.7).indices == [3, 9, 20, 31]  # round(3.5) = 4
    assert schedule.for_denoise(np.float32(1.0)).sigmas == schedule.sigmas
    for none_kept in (0.0, 0.09):
        with pytest.raises(ValueError, match=r"^strength .* keeps none of 5 steps \(round\(5 x .*\) = 0\): nothing"):
            schedule.for_denoise(none_kept)
    for bad in (1.5, -0.1, float("nan"), "0.5", True, None):
        with pytest.raises(ValueError, match=r"^strength must be a number in \[0, 1\], got "):
            schedule.for_denoise(bad)


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_the_img2img_export_lands_the_pipelines_timestep_selection_on_for_denoise(family):
    # FluxImg2ImgPipeline / StableDiffusion3Img2ImgPipeline: set_timesteps on the given sigmas
    # (retrieve_timesteps), then get_timesteps(num_inference_steps, strength), as their __call__ does
    import diffusers
    from diffusers.pipelines.flux.pipeline_flux_img2img import calculate_shift

    if family == "flux":
        pipe, wrapper = tiny_flux_pipeline(N=30)  # dynamic shift at 64x64, recorded with the schedule
        img2img, module = diffusers.FluxImg2ImgPipeline, diffusers.pipelines.flux.pipeline_flux_img2img
        schedule = Schedule.from_indices([1, 3, 6, 9, 12, 15, 19, 23, 27, 30], wrapper)
    else:
        pipe, wrapper = tiny_sd3_pipeline(N=30)
        img2img = diffusers.StableDiffusion3Img2ImgPipeline
        module = diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3_img2img
        schedule = Schedule.from_indices([1, 3, 6, 9, 12, 15, 19, 23, 27, 30], wrapper).replace(shift=3.0)
    for strength, kept in [(0.25, 2), (0.35, 4), (0.33, 3), (0.5, 5), (0.1, 1), (1.0, 10)]:
        spec = json.loads(json.dumps(schedule.diffusers_export(strength=strength)))  # as `oss-fast export` prints
        assert "image=image, strength=strength, sigmas=sigmas" in spec["usage"]
        scheduler = getattr(diffusers, spec["scheduler"]).from_config(pipe.scheduler.config, **spec["scheduler_config"])
        mu = {}
        if scheduler.config.use_dynamic_shifting:  # the pipeline's own mu, from the height and width given
            c = scheduler.config
            seq_len = (spec["height"] // pipe.vae_scale_factor // 2) * (spec["width"] // pipe.vae_scale_factor // 2)
            mu = dict(mu=calculate_shift(seq_len, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift))
        _, n = module.retrieve_timesteps(scheduler, spec["num_inference_steps"], "cpu", sigmas=spec["sigmas"], **mu)
        timesteps, n = img2img.get_timesteps(types.SimpleNamespace(scheduler=scheduler), n, spec["strength"], "cpu")
        assert n == kept, strength
        ran = scheduler.sigmas[scheduler.begin_index:].numpy()
        np.testing.assert_allclose(ran, schedule.for_denoise(strength).sigmas, rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(ran, schedule.sigmas[-kept - 1:], rtol=2e-6, atol=1e-7)
        # the image is noised to the first kept sigma (latent_timestep = timesteps[:1])
        assert float(timesteps[0]) == pytest.approx(1000 * schedule.sigmas[-kept - 1], rel=1e-5)
    # why strength 1.0: the pipeline's own strength on all steps keeps about the ceiling, not round's 2
    spec = schedule.diffusers_export()
    _, n = module.retrieve_timesteps(scheduler, spec["num_inference_steps"], "cpu", sigmas=spec["sigmas"], **mu)
    assert img2img.get_timesteps(types.SimpleNamespace(scheduler=scheduler), n, 0.25, "cpu")[1] == 3


@pytest.mark.parametrize("solver,family", [("unipc", "flow"), ("dpmpp_2m", "flow"), ("ab2", "flow"), ("euler", "ddpm")])
def test_the_diffusers_export_refuses_what_no_call_argument_carries(solver, family):
    if family == "ddpm":
        _, wrapper = tiny_dit_wrapper()
        schedule = Schedule.from_indices([3, 9, 20, 40], wrapper, solver=solver)
    else:
        schedule = Schedule.from_indices([2, 6, 12, 20], grid=torch.linspace(0, 1, 21).tolist(), solver=solver)
    with pytest.raises(ValueError, match=r"applied\(pipe\)"):
        schedule.diffusers_export()


GOOD = {"format": "oss_fast.schedule/1", "indices": [1, 3], "sigmas": [0.75, 0.25, 0.0],
        "grid": [0.0, 0.25, 0.5, 0.75, 1.0], "timesteps": None, "parameterization": "flow", "metadata": {}}


@pytest.mark.parametrize("text,message", [
    ('{"format": "oss_fast.schedule/1", "sigmas": [NaN, 0.0]}', "NaN and Infinity are not schedule values"),
    ('{"format": "oss_fast.schedule/1", "sigmas": [Infinity, 0.0]}', "NaN and Infinity"),
    ('{"format": "oss_fast.schedule/1", "sigmas": [1e400, 0.0]}', "sigmas must be finite"),
    ('{"format": "oss_fast.schedule/1", "sigmas": [2.0, 0.0]}', r"flow times in \[0, 1\]"),
    ('{"format": "oss_fast.schedule/1", "sigmas": [0.5, -0.1, 0.0]}', "strictly decreasing"),
    ('{"format": "oss_fast.schedule/1", "sigmas": ["a", 0.0]}', "sigmas must hold numbers"),
    ('{"format": "oss_fast.schedule/1", "sigmas": 0.5}', "sigmas must be a list of numbers"),
    ('{"format": "oss_fast.schedule/1"}', "the field 'sigmas' is missing"),
    ('{"format": "oss_fast.schedule/1", "sigmas": [0.5, 0.0], "extra": 1}', "unknown field 'extra'"),
    ('[1, 2]', "top level is list"),
    ('null', "top level is NoneType"),
    ('{"format": "something/2", "sigmas": [0.5, 0.0]}', "not an oss_fast schedule"),
    ('{"sigmas": ' + '[' * 100000 + ']' * 100000 + '}', "nested too deeply|not a schedule file"),
    ('{"format": "oss_fast.schedule/1", "sigmas": [0.5, 0.0], "metadata": [1]}', "metadata must be a dict"),
    ('{"format": "oss_fast.schedule/1", "sigmas": [0.5, 0.0], "parameterization": "vp"}', "parameterization"),
    ('{"format": "oss_fast.schedule/1", "sigmas": [0.5, 0.0], "timesteps": [1, 2]}', "1 steps need 1 timesteps"),
    ("{'format': 1}", "invalid JSON"),
    ("\x00\x01", "invalid JSON"),
    ("", "invalid JSON"),
])
def test_load_refuses_malformed_files_naming_the_field(tmp_path, text, message):
    path = tmp_path / "s.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        Schedule.load(path)


@pytest.mark.parametrize("field,value,message", [
    ("indices", [3, 1], "ascending grid indices"),
    ("indices", [0, 3], r"ascending grid indices in \[1, 4\]"),
    ("indices", [1, 10**30], r"ascending grid indices in \[1, 4\]"),
    ("indices", [-1, 3], "ascending grid indices"),
    ("indices", [1.0, 3.0], "indices must be ints"),
    ("indices", [True, 3], "indices must be ints"),
    ("indices", [1, 2], "indices disagree with the sigmas"),
    ("indices", [1, 2, 3], "2 steps need 2 indices"),
    ("grid", [0.0, 0.5, 0.4, 1.0], "grid must be strictly increasing"),
    ("grid", [0.1, 0.25, 0.5, 0.75, 1.0], "starting at 0"),
])
def test_load_checks_indices_and_grid(tmp_path, field, value, message):
    import json

    path = tmp_path / "s.json"
    path.write_text(json.dumps(dict(GOOD, **{field: value})))
    with pytest.raises(ValueError, match=message):
        Schedule.load(path)
    path.write_text(json.dumps(GOOD))
    assert Schedule.load(path).indices == [1, 3]


def test_load_of_a_folder_or_missing_file_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read schedule file"):
        Schedule.load(tmp_path)
    with pytest.raises(ValueError, match="cannot read schedule file"):
        Schedule.load(tmp_path / "missing.json")


def test_a_schedule_records_its_solver_and_sampling_follows_it(tmp_path):
    model = GaussianMixtureFlow(shape=(2, 4, 4), components=3, teacher_steps=20, seed=2)
    res = oss_fast.search(model, model.noise(3, seed=1), student_steps=4, mode="exact", solver="unipc", progress=False)
    schedule = Schedule.from_search(res, model)
    schedule.save(tmp_path / "s.json")
    loaded = Schedule.load(tmp_path / "s.json")
    assert loaded.solver == "unipc" and loaded.interpolate(6).solver == "unipc"
    z = model.noise(2, seed=9)
    assert torch.equal(oss_fast.sample(model, z, loaded), oss_fast.sample(model, z, res.schedule, solver="unipc"))
    assert not torch.equal(oss_fast.sample(model, z, loaded), oss_fast.sample(model, z, res.schedule))
    # files written before solvers existed load as Euler; an unknown solver is refused by name
    import json

    data = json.loads((tmp_path / "s.json").read_text())
    del data["solver"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert Schedule.load(tmp_path / "old.json").solver == "euler"
    (tmp_path / "bad.json").write_text(json.dumps(dict(data, solver="heun")))
    with pytest.raises(ValueError, match="solver must be one of"):
        Schedule.load(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- transfer: shift and size

def test_a_schedule_records_its_grid_shift_and_the_size_of_dynamic_shift_models(tmp_path):
    _, _, schedule = searched(shift=3.0)
    assert schedule.shift == pytest.approx(3.0, rel=1e-12) and schedule.size is None
    _, wrapper, _ = tiny_wan_pipeline()
    assert Schedule.from_indices([3, 9, 20], wrapper).shift == pytest.approx(5.0, rel=1e-12)
    pipe, flux = tiny_flux_pipeline()
    s = Schedule.from_indices([3, 8, 14, 20], flux)
    mu = oss_fast.grid.scheduler_mu(pipe.scheduler.config, 16)  # 64 x 64 px: 16 packed tokens
    assert s.size == [64, 64] and s.shift == pytest.approx(math.exp(mu), rel=1e-9)
    assert s.dynamic_shift["vae_scale_factor"] == pipe.vae_scale_factor
    s.save(tmp_path / "s.json")
    assert Schedule.load(tmp_path / "s.json") == s
    old = s.to_dict()  # a file written before these fields existed
    for key in ("shift", "size", "dynamic_shift"):
        old.pop(key)
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = Schedule.load(tmp_path / "old.json")
    assert (loaded.shift, loaded.size, loaded.dynamic_shift) == (None, None, None)


def test_for_resolution_lands_on_the_sigmas_the_flux_pipeline_uses_at_that_size():
    pipe, flux64 = tiny_flux_pipeline()
    s64 = Schedule.from_indices([3, 8, 14, 20], flux64)
    s128 = s64.for_resolution(128, 96)
    fresh = Schedule.from_indices([3, 8, 14, 20], FluxWrapper.from_pipeline(pipe, 20, height=128, width=96))
    np.testing.assert_allclose(s128.grid, fresh.grid, rtol=1e-6, atol=1e-7)  # the pipeline's float32 grid
    np.testing.assert_allclose(s128.sigmas, fresh.sigmas, rtol=1e-6, atol=1e-7)
    assert s128.size == [128, 96] and s128.indices == s64.indices and s128.sigmas[1] > s64.sigmas[1]
    g = torch.Generator().manual_seed(1)
    prompt, pooled = torch.randn(1, 5, 32, generator=g), torch.randn(1, 16, generator=g)
    call = dict(prompt_embeds=prompt, pooled_prompt_embeds=pooled, guidance_scale=3.5, output_type="latent")
    args = s128.to_diffusers(pipe)  # the recorded size comes with the arguments
    assert (args["height"], args["width"]) == (128, 96)
    pipe(**call, **args)
    np.testing.assert_allclose(pipe.scheduler.sigmas.numpy(), s128.sigmas, rtol=2e-6, atol=1e-7)
    # at another size than the recorded one: refused, never silently moved
    with pytest.raises(ValueError, match=r"searched at 64x64.*for_resolution\(128, 96\)"):
        s64.to_diffusers(pipe, height=128, width=96)
    with pytest.raises(ValueError, match="another image size"):
        with s64.applied(pipe):
            pipe(**call, height=128, width=96, num_inference_steps=4)
    assert s64.to_diffusers(pipe, height=64, width=64)["sigmas"] is not None


def test_for_resolution_refuses_schedules_whose_pipeline_does_not_shift_by_size():
    _, _, schedule = searched()
    with pytest.raises(ValueError, match="serve every size as they are"):
        schedule.for_resolution(512, 512)
    _, dit = tiny_dit_wrapper()
    with pytest.raises(ValueError, match="DDPM-family"):
        Schedule.from_indices([3, 9, 20, 40], dit).for_resolution(512, 512)
    with pytest.raises(ValueError, match="size must be"):
        Schedule.from_indices([3, 8, 14, 20], tiny_flux_pipeline()[1]).for_resolution(0, 512)


def test_for_shift_keeps_the_flow_times_snapped_onto_the_target_grid():
    grid1 = oss_fast.grid.shifted_grid(100, 1.0)
    s = Schedule.from_indices([4, 13, 25, 50, 80], grid=grid1)
    moved = s.for_shift(3.0)
    grid3 = oss_fast.grid.shifted_grid(100, 3.0)
    assert moved.grid == grid3.tolist() and moved.shift == 3.0 and len(moved) == 5
    assert moved.sigmas == [float(grid3[i]) for i in reversed(moved.indices)] + [0.0]
    # each flow time lands on its nearest point of the new grid (these are far enough apart)
    for sigma, i in zip(s.sigmas, reversed(moved.indices)):
        assert i == int(np.argmin(np.abs(grid3.numpy() - sigma)))
    assert s.sigmas[2] == 0.25 and moved.sigmas[2] == pytest.approx(0.25, abs=1e-12)  # on both grids: kept
    assert s.for_shift(3.0, teacher_steps=40).grid == oss_fast.grid.shifted_grid(40, 3.0).tolist()
    # two flow times that share a nearest point still give K distinct steps
    close = Schedule.from_sigmas([0.9, 0.302, 0.298, 0.1], grid=None).for_shift(1.0, teacher_steps=10)
    assert close.indices == [1, 2, 3, 9]


def test_reshift_moves_through_unshifted_time_and_transfers_refuse_other_families():
    s = Schedule.from_indices([4, 13, 25, 50, 80], grid=oss_fast.grid.shifted_grid(100, 1.0))
    np.testing.assert_allclose(s.reshift(3.0).sigmas, oss_fast.grid.time_shift(np.array(s.sigmas), 3.0), rtol=1e-15)
    assert s.reshift(3.0).shift == 3.0 and s.reshift(3.0).indices is None
    with pytest.raises(ValueError, match="records no shift"):
        Schedule([0.9, 0.5, 0.0]).reshift(2.0)
    kept = Schedule([0.9, 0.5, 0.0]).for_shift(2.0)  # no grid to snap onto: the flow times stay
    assert kept.sigmas == [0.9, 0.5, 0.0] and kept.shift == 2.0
    with pytest.raises(ValueError, match="shift must be a number > 0"):
        s.for_shift(0)
    _, dit = tiny_dit_wrapper()
    with pytest.raises(ValueError, match="DDPM-family"):
        Schedule.from_indices([3, 9, 20, 40], dit).for_shift(3.0)
    with pytest.raises(ValueError, match="for_resolution"):
        Schedule.from_indices([3, 8, 14, 20], tiny_flux_pipeline()[1]).for_shift(3.0)


def test_sd3_with_dynamic_shifting_follows_the_same_size_rule():
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16,
                                        pooled_projection_dim=16, out_channels=4, pos_embed_max_size=32)
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_CONFIG),
                                    vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                    text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    rule = oss_fast.grid.dynamic_shift_rule(pipe.scheduler.config, pipe.vae_scale_factor)
    moved = Schedule([0.95, 0.7, 0.4, 0.15, 0.0], size=[64, 64], dynamic_shift=rule).for_resolution(128, 128)
    g = torch.Generator().manual_seed(1)
    pipe(prompt_embeds=torch.randn(1, 7, 32, generator=g), pooled_prompt_embeds=torch.randn(1, 16, generator=g),
         guidance_scale=1.0, output_type="latent", **moved.to_diffusers(pipe))
    np.testing.assert_allclose(pipe.scheduler.sigmas.numpy(), moved.sigmas, rtol=2e-6, atol=1e-7)
    assert moved.sigmas[1] > 0.7  # a bigger image: shifted toward noise


# ----------------------------------------------------------------------------- issue 19: rules, shifts, exports

RULE = dict(base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5, max_shift=1.15,
            time_shift_type="exponential", vae_scale_factor=8)
SIGMAS = [0.9, 0.6, 0.3, 0.0]


@pytest.mark.parametrize("change,message", [
    (dict(time_shift_type="linear", base_shift=-5.0, max_shift=-5.0), r"at 64x64 is mu \(time_shift_type linear\) = -5"),
    (dict(time_shift_type="linear", base_shift=0.0, max_shift=0.0), r"at 64x64 is mu .* = 0 for mu 0: a time shift"),
    (dict(vae_scale_factor=0), "vae_scale_factor must be a whole number >= 1, got 0"),
    (dict(vae_scale_factor=-8), "vae_scale_factor must be a whole number >= 1, got -8"),
    (dict(vae_scale_factor=0.5), "vae_scale_factor must be a whole number >= 1, got 0.5"),
    (dict(max_image_seq_len=256), r"max_image_seq_len \(256\) must exceed base_image_seq_len \(256\)"),
    (dict(max_image_seq_len=100), r"max_image_seq_len \(100\) must exceed"),
    (dict(base_image_seq_len=0), "base_image_seq_len must be a whole number >= 1"),
    (dict(base_shift="0.5"), "base_shift must be a finite number, got '0.5'"),
    (dict(max_shift=None), "max_shift must be a finite number, got None"),
])
def test_a_dynamic_shift_rule_is_checked_at_construction_and_load(tmp_path, change, message):
    rule = dict(RULE, **change)
    with pytest.raises(ValueError, match=message):
        Schedule(SIGMAS, size=[64, 64], dynamic_shift=rule)
    fields = dict(format="oss_fast.schedule/1", sigmas=SIGMAS, size=[64, 64], dynamic_shift=rule)
    (tmp_path / "s.json").write_text(json.dumps(fields))
    with pytest.raises(ValueError, match=message):
        Schedule.load(tmp_path / "s.json")
    (tmp_path / "s.json").write_text(json.dumps(dict(fields, dynamic_shift=RULE)))
    assert Schedule.load(tmp_path / "s.json").dynamic_shift == RULE


def test_a_rule_holding_a_number_json_reads_as_inf_is_refused(tmp_path):
    text = json.dumps(dict(format="oss_fast.schedule/1", sigmas=SIGMAS, size=[64, 64], dynamic_shift=RULE))
    (tmp_path / "s.json").write_text(text.replace('"max_shift": 1.15', '"max_shift": 1e400'))
    with pytest.raises(ValueError, match="dynamic_shift max_shift must be a finite number, got inf"):
        Schedule.load(tmp_path / "s.json")


def test_sizes_whose_dynamic_shift_overflows_are_one_line_everywhere():
    with pytest.raises(ValueError, match=r"^the dynamic shift at 100000x100000 is exp\(mu\) = inf"):
        Schedule(SIGMAS, size=[100000, 100000], dynamic_shift=RULE)
    flux = Schedule(SIGMAS, size=[64, 64], dynamic_shift=RULE)
    with pytest.raises(ValueError, match="dynamic shift at 100000x100000"):
        flux.for_resolution(100000, 100000)
    with pytest.raises(ValueError, match="size must be"):
        flux.for_resolution(10**200, 64)
    with pytest.raises(ValueError, match=r"exp\(mu\) = inf for mu 1000"):
        flux.to_diffusers(FlowMatchEulerDiscreteScheduler(**FLUX_CONFIG), mu=1000.0)
    with pytest.raises(ValueError, match="max_image_seq_len .* must differ"):
        oss_fast.grid.calculate_shift(512, 256, 256)
    # a size where the shift is finite but so large the sigmas collapse: named as the shift's fault
    with pytest.raises(ValueError, match=r"too large to represent these sigmas: the sigmas would be \[1, 1, 1, 0\]"):
        flux.for_resolution(30000, 30000)


def test_a_static_shift_must_represent_the_schedules_sigmas():
    with pytest.raises(ValueError, match=r"^shift 1e-300 is too small to represent these sigmas: the sigmas would be "
                                         r"\[1, 1, 1, 0\], not strictly decreasing$"):
        Schedule(SIGMAS, shift=1e-300)
    with pytest.raises(ValueError, match="shift 1e\\+308 is too large to represent these sigmas"):
        presets.get("flux").for_shift(1e308)  # no grid: only the export would un-shift by it
    assert Schedule(SIGMAS, shift=8.0).diffusers_export()["sigmas"] == pytest.approx(
        oss_fast.grid.time_unshift(np.array(SIGMAS[:-1]), 8.0).tolist(), rel=1e-15)


def test_for_shift_and_reshift_take_numpy_numbers_and_refuse_shifts_too_large_to_represent():
    s = Schedule.from_indices([4, 13, 25], grid=oss_fast.grid.shifted_grid(30, 1.0))
    assert s.for_shift(np.float32(3)) == s.for_shift(3.0)
    assert s.reshift(np.float64(2.5)) == s.reshift(2.5)
    assert s.for_shift(3.0, teacher_steps=np.int64(40)) == s.for_shift(3.0, teacher_steps=40)
    with pytest.raises(ValueError, match=r"^shift 1e\+308 is too large to represent a 30-step grid"):
        s.for_shift(1e308)
    with pytest.raises(ValueError, match=r"^shift 1e\+308 is too large to represent these sigmas"):
        s.reshift(1e308)
    with pytest.raises(ValueError, match=r"^shift 1e-300 is too small"):
        s.reshift(1e-300)
    for bad in (True, "3", 40.0):
        with pytest.raises(ValueError, match="teacher_steps"):
            s.for_shift(3.0, teacher_steps=bad)


def test_for_shift_onto_a_huge_grid_is_refused_before_allocating():
    many = presets.get("chroma").interpolate(101)
    with pytest.raises(ValueError, match=r"^snapping 101 steps onto a 1000000-step grid needs a 101 x 1000000 table "
                                         r"\(385 MiB\), more than the 381 MiB allowed: use a grid of at most 990099 steps"):
        many.for_shift(3.0, teacher_steps=10**6)


def test_every_exported_sigma_list_is_checked_in_one_place():
    s = Schedule(SIGMAS, shift=3.0)
    with pytest.raises(ValueError, match="the scheduler's shift .* must be a number > 0"):
        s.scheduler_arguments(FlowMatchEulerDiscreteScheduler(shift=-5.0))
    with pytest.raises(ValueError, match=r"^these sigmas cannot be exported: the sigmas would be .*not strictly "
                                         r"decreasing in float32$"):
        Schedule([0.5 + 1e-12, 0.5, 0.0]).to_sigmas()
    with pytest.raises(ValueError, match="not strictly decreasing in float32"):
        Schedule([0.5 + 1e-12, 0.5, 0.0]).diffusers_export()
    with pytest.raises(ValueError, match="variance-exploding sigmas .* not all finite"):
        Schedule([1.0, 0.5, 0.0], parameterization="ddpm").scheduler_arguments(EulerDiscreteScheduler())
    with pytest.raises(ValueError, match=r"sigmas must be 0 or at least 1.18e-38"):
        Schedule([0.5, 1e-40, 0.0])


@pytest.mark.parametrize("timesteps", [[-1.0, 5.0, 3.0], [1.0, 5.0, 9.0], [9.0, 9.0, 1.0], [9.0, 5.0, float("nan")]])
def test_timesteps_are_finite_non_negative_and_strictly_decreasing(timesteps):
    with pytest.raises(ValueError, match="timesteps must"):
        Schedule(SIGMAS, timesteps=timesteps, parameterization="ddpm")


def test_from_indices_takes_integers_not_strings_or_floats():
    grid = oss_fast.grid.shifted_grid(20)
    for bad, message in (("13", "must be a list of ints"), ([1.0, 3.0], "got 1.0"), ([True, 3], "got True"),
                         (13, "must be a list of ints")):
        with pytest.raises(ValueError, match=message):
            Schedule.from_indices(bad, grid=grid)
    assert Schedule.from_indices(np.array([1, 3]), grid=grid).indices == [1, 3]


def test_from_search_refuses_a_per_sample_result_unless_told_which_sample():
    model = GaussianMixtureFlow(shape=(2, 4, 4), components=3, teacher_steps=20, seed=2)
    res = oss_fast.search(model, model.noise(3, seed=1), student_steps=4, aggregate="per_sample", progress=False)
    with pytest.raises(ValueError, match=r"^this search result holds one path per noise \(3 paths, aggregate "
                                         r"'per_sample'\), not one schedule: pass sample=i .* or search with an "
                                         "aggregate"):
        Schedule.from_search(res, model)
    for i in range(3):
        picked = Schedule.from_search(res, model, sample=np.int64(i))
        assert picked.indices == res.steps[i] and picked.metadata["sample"] == i
    with pytest.raises(ValueError, match=r"sample must be a whole number in \[0, 2\], got 3"):
        Schedule.from_search(res, model, sample=3)
    median = oss_fast.search(model, model.noise(3, seed=1), student_steps=4, progress=False)
    with pytest.raises(ValueError, match="this result is aggregated \\('median'\\) into one schedule: leave sample out"):
        Schedule.from_search(median, model, sample=0)
