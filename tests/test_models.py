"""One contract across all model wrappers, on tiny random configs built from config (no downloads).

The diffusers networks run in float64 here: float32 rows on CPU depend slightly on the batch they
are in, float64 ones agree to rounding, so a batched search can be compared exactly with the
reference's one-row calls.
"""

import math

import pytest
import torch
from diffusers import DDPMScheduler, DiTTransformer2DModel, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
from diffusers import WanTransformer3DModel

import oss_fast
from oss_fast import reference as ref
from oss_fast.models import DiTWrapper, FlowMatchWrapper, FluxWrapper, OpenSoraWrapper, RespacedDDPM, WanWrapper
from oss_fast.models.base import half_dtype
from oss_fast.models.flux import flux_inputs, flux_timesteps
from oss_fast.models.opensora import rflow_timesteps
from oss_fast.models.wan import wan_sigmas
from oss_fast.zoo import GaussianMixtureFlow

from models import TinySTDiT3, TinyWanModel, full_search

N = 8  # teacher steps of every case
B = 2  # samples


def tiny_dit(dtype=torch.float64):
    torch.manual_seed(0)
    return DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                 num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=1000,
                                 norm_num_groups=16).to(dtype).eval()


def dit_forward_with_cfg(net):
    """DiT's forward_with_cfg (MODEL-INTERFACES §4): the first half duplicated, guidance on the
    first 3 channels only, both halves returned equal."""

    def forward_with_cfg(x, t, y, cfg_scale):
        half = x[: len(x) // 2]
        out = net(torch.cat([half, half]), timestep=t, class_labels=y).sample
        eps, rest = out[:, :3], out[:, 3:]
        cond, uncond = eps.chunk(2)
        half_eps = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([half_eps, half_eps]), rest], dim=1)

    return forward_with_cfg


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def make_case(name, N=N, compile=False):
    """(wrapper, z, cond, model_kwargs) for a named wrapper on a tiny config with N teacher steps."""
    if name == "dit-published":
        net = tiny_dit()
        wrapper = DiTWrapper(dit_forward_with_cfg(net), RespacedDDPM(DDPMScheduler().alphas_cumprod, N), "cpu",
                             torch.tensor([1000] * B), compile=compile)
        return wrapper, randn(B, 4, 8, 8), torch.tensor([3, 7]), {"cfg_scale": 4.0}
    if name == "dit-diffusers":
        wrapper = DiTWrapper.from_diffusers(tiny_dit(), DDPMScheduler(), N, guidance_scale=4.0, compile=compile)
        return wrapper, randn(B, 4, 8, 8), torch.tensor([3, 7]), {}
    if name == "flux":
        torch.manual_seed(0)
        net = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                     attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                     pooled_projection_dim=16, guidance_embeds=True, axes_dims_rope=(2, 2, 4))
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                    base_image_seq_len=256, max_image_seq_len=4096)
        wrapper = FluxWrapper(net.double().eval(), flux_timesteps(scheduler, N, 16), 1000, compile=compile)
        kwargs = flux_inputs(randn(B, 5, 32, seed=1), randn(B, 16, seed=2), 8, 8, guidance_scale=3.5)
        return wrapper, randn(B, 16, 16), None, kwargs
    if name == "opensora":
        net = TinySTDiT3()
        timesteps = [torch.tensor([t] * B) for t in rflow_timesteps(N, 64, 64, 17)]
        mask_t = torch.tensor([[1000.0] * 3, [0.0, 1000.0, 1000.0]])  # sample 1's first frame is a condition
        wrapper = OpenSoraWrapper(net, 7.0, randn(1, 1, 5, 16, seed=3).float(), timesteps, 1000, compile=compile)
        kwargs = dict(mask=torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]), mask_t=mask_t,
                      fps=torch.tensor([24.0, 24.0]), height=torch.tensor([64.0, 64.0]),
                      width=torch.tensor([64.0, 64.0]))
        return wrapper, randn(B, 4, 3, 4, 4).float(), randn(B, 1, 5, 16, seed=4).float(), kwargs
    if name == "wan-native":
        context = [randn(5, 16, seed=5).float(), randn(3, 16, seed=6).float()]
        wrapper = WanWrapper(TinyWanModel(), wan_sigmas(N, 5.0) * 1000, 1000, [randn(4, 16, seed=7).float()], 5.0,
                             compile=compile)
        return wrapper, randn(B, 4, 2, 4, 4).float(), context, {"seq_len": 16}
    if name == "wan-diffusers":
        torch.manual_seed(0)
        net = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                    out_channels=4, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=1,
                                    rope_max_seq_len=32).double().eval()
        wrapper = WanWrapper.from_diffusers(net, N, randn(1, 6, 16, seed=8), 5.0, shift=3.0, compile=compile)
        return wrapper, randn(B, 4, 3, 8, 8), randn(B, 6, 16, seed=9), {}
    if name == "flowmatch":
        mixture = GaussianMixtureFlow(shape=(4, 4, 4), components=3, teacher_steps=100, seed=1)

        def fn(x, timestep, cond):  # the mixture's velocity at sigma = timestep / 1000
            return mixture.velocity(x, timestep / 1000, cond).to(x.dtype)

        wrapper = FlowMatchWrapper(fn, wan_sigmas(N, 3.0), guidance_scale=1.5, null_cond=torch.tensor([3]),
                                   compile=compile)
        return wrapper, randn(B, 4, 4, 4), torch.tensor([0, 2]), {}
    raise KeyError(name)


CASES = ["dit-published", "dit-diffusers", "flux", "opensora", "wan-native", "wan-diffusers", "flowmatch"]


def rows_of(value, rows):
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == B:
        return value[rows]
    if isinstance(value, list) and len(value) == B:
        return [value[r] for r in rows]
    return value


@pytest.mark.parametrize("name", CASES)
def test_wrapper_contract(name):
    wrapper, z, cond, kwargs = make_case(name)
    s = torch.as_tensor(wrapper.fm_steps)
    assert s.shape == (N + 1,) and s[0] == 0 and torch.all(s[1:] > s[:-1]) and abs(float(s[-1]) - 1) < 1e-2
    # rows from different samples and grid indices in one call ...
    samples = torch.tensor([0, 1, 1, 0])
    grid = torch.tensor([N, 3, 1, 6])
    x = z[samples] * torch.tensor([1.0, 0.7, 0.3, 0.9], dtype=z.dtype).reshape(-1, *[1] * (z.dim() - 1))
    with torch.no_grad():
        v = wrapper(x, grid, rows_of(cond, samples), {k: rows_of(val, samples) for k, val in kwargs.items()})
        assert v.shape == x.shape
        assert v.dtype in (x.dtype, torch.float32)
        assert torch.isfinite(v).all()
        # ... equal the same rows called one by one
        for r in range(4):
            one = wrapper(x[r:r + 1], grid[r:r + 1], rows_of(cond, samples[r:r + 1]),
                          {k: rows_of(val, samples[r:r + 1]) for k, val in kwargs.items()})
            torch.testing.assert_close(v[r:r + 1], one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("mode", ["compat", "exact"])
def test_search_with_wrapper_equals_reference(name, mode):
    wrapper, z, cond, kwargs = make_case(name)
    expected = ref.search(wrapper, z, cond, student_steps=3, mode=mode, model_kwargs=kwargs)
    res = full_search(wrapper, z, cond, student_steps=3, mode=mode, aggregate="per_sample", model_kwargs=kwargs,
                          max_batch=5, progress=False)
    assert res.steps == expected


def modules_of(wrapper):
    """The torch modules a wrapper's fingerprint reads the weights of."""
    net = getattr(wrapper.network, "transformer", wrapper.network)
    return [net] if isinstance(net, torch.nn.Module) else []


@pytest.mark.parametrize("name", CASES)
def test_wrapper_fingerprints_follow_the_weights_and_settings(name, monkeypatch):
    from oss_fast.engine.checkpoint import _digest
    from oss_fast.models import base

    digest = lambda w: _digest(w.fingerprint)  # noqa: E731
    first = digest(make_case(name)[0])
    assert digest(make_case(name)[0]) == first  # the same network and settings: the same fingerprint
    wrapper = make_case(name)[0]
    for attribute in ("guidance_scale", "guide_scale"):  # the guidance changes the output
        if hasattr(wrapper, attribute):
            setattr(wrapper, attribute, 2.5)
            assert digest(wrapper) != first
    if name == "dit-diffusers":
        wrapper.model.guidance_scale = 2.5
        assert digest(wrapper) != first
    for big in (False, True):  # all the weights, or (a large network) a sample of each tensor
        if big:
            monkeypatch.setattr(base, "FULL_HASH_BYTES", 0)
        wrapper = make_case(name)[0]
        if not modules_of(wrapper):  # a plain callable (a closure): known by its qualified name
            assert "callable" in wrapper.fingerprint["network"]
            continue
        network = wrapper.fingerprint["network"]
        assert ("sample" if big else "state") in network.get("transformer", network)
        before = digest(wrapper)
        with torch.no_grad():
            next(modules_of(wrapper)[0].parameters()).mul_(1.5)  # another checkpoint of the network
        assert digest(wrapper) != before


@pytest.mark.parametrize("name,shape,message", [
    # before: "mat1 and mat2 shapes cannot be multiplied" from inside the transformer
    ("flux", (B, 16, 12), r"the FLUX transformer takes latents packed \[B, tokens, C\] with 16 channels \(its "
                          r"in_channels\), got 12 channels in shape \(2, 16, 12\): pass packed latents \(pack_latents "
                          r"makes them from \[B, 4, H, W\]\)"),
    ("flux", (B, 4, 8, 8), r"the FLUX transformer takes latents packed \[B, tokens, C\] .*, got shape \(2, 4, 8, 8\)"),
    ("dit-diffusers", (B, 3, 8, 8), r"the DiT network takes latents \[B, C, H, W\] with 4 channels \(its "
                                   r"in_channels\), got 3 channels in shape \(2, 3, 8, 8\)"),
    ("dit-diffusers", (B, 4, 7, 8), r"the DiT network cuts latents into patches of 2x2: the sizes 7x8 after the "
                                   r"channels of shape \(2, 4, 7, 8\) must be multiples"),
    ("wan-diffusers", (B, 3, 3, 8, 8), r"the Wan network takes latents \[B, C, F, H, W\] with 4 channels"),
    ("wan-diffusers", (B, 4, 3, 8, 7), r"the Wan network cuts latents into patches of 1x2x2"),
    ("wan-native", (B, 4, 2, 4), r"the Wan network takes latents \[B, C, F, H, W\] with 4 channels .*, got shape"),
    ("opensora", (B, 5, 3, 4, 4), r"STDiT3 takes latents \[B, C, T, H, W\] with 4 channels"),
])
def test_wrappers_check_the_latent_against_the_network_before_any_call(name, shape, message):
    wrapper, z, cond, kwargs = make_case(name)
    net = modules_of(wrapper)[0]

    def refuse(*args, **kwargs):
        raise AssertionError("the network was called")

    net.register_forward_pre_hook(refuse)
    with pytest.raises(ValueError, match="^" + message):
        oss_fast.search(wrapper, randn(*shape).to(z.dtype), cond, student_steps=3, model_kwargs=kwargs, progress=False)
    with pytest.raises(ValueError, match="^" + message):  # and called directly, as sample calls it
        wrapper(randn(*shape).to(z.dtype), torch.full((B,), N), cond, kwargs)


def test_flux_checks_the_position_ids_against_the_tokens():
    wrapper, z, cond, kwargs = make_case("flux")
    kwargs = dict(kwargs, img_ids=kwargs["img_ids"][:8])
    with pytest.raises(ValueError, match=r"model_kwargs\['img_ids'\] holds 8 positions for latents of 16 tokens"):
        oss_fast.search(wrapper, z, cond, student_steps=3, model_kwargs=kwargs, progress=False)


# ----------------------------------------------------------------------------- conversions by hand

class GaussianEps:
    """The exact epsilon-prediction of data N(mu, c^2 I) under a DDPM with alphas_cumprod:
    eps*(x_t) = sigma (x_t - alpha mu) / (alpha^2 c^2 + sigma^2). Called like DiTTransformer2DModel."""

    def __init__(self, alphas_cumprod, mu, c):
        self.acp = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        self.mu, self.c = mu, c

    def __call__(self, x, timestep, class_labels, return_dict=False):
        view = (-1,) + (1,) * (x.dim() - 1)
        alpha = self.acp[timestep].sqrt().reshape(view)
        sigma = (1 - alpha**2).sqrt()
        eps = sigma * (x - alpha * self.mu.reshape(1, *x.shape[1:])) / (alpha**2 * self.c**2 + sigma**2)
        return (torch.cat([eps, torch.zeros_like(eps)], dim=1),)


def test_dit_conversion_gives_the_exact_flow_velocity():
    # Data N(mu, c^2 I): the exact flow velocity is the one-component Gaussian mixture's.
    mixture = GaussianMixtureFlow(shape=(4, 4, 4), components=1, std_range=(0.6, 0.6), seed=3)
    scheduler = DDPMScheduler()
    wrapper = DiTWrapper.from_diffusers(GaussianEps(scheduler.alphas_cumprod, mixture.means[0], 0.6), scheduler, 20,
                                        guidance_scale=1.0)
    x = randn(3, 4, 4, 4, seed=11)
    for i in (1, 7, 20):
        t = torch.full((3,), i)
        s = wrapper.fm_steps[t]
        v = wrapper(x, t, torch.tensor([0, 1, 2]), {})
        torch.testing.assert_close(v, mixture.velocity(x, s), rtol=1e-9, atol=1e-9)


def test_dit_grid_is_the_snr_aligned_respaced_schedule():
    scheduler = DDPMScheduler()
    wrapper = DiTWrapper.from_diffusers(tiny_dit(), scheduler, 4)
    # DiT's respacing of 1000 steps into 4: round(i * 999 / 3) = 0, 333, 666, 999
    assert wrapper.timestep_map.tolist() == [0, 333, 666, 999]
    alpha = scheduler.alphas_cumprod[[0, 333, 666, 999]].double().sqrt()
    sigma = (1 - alpha**2).sqrt()
    torch.testing.assert_close(wrapper.fm_steps[1:], sigma / (alpha + sigma))


class Echo:
    """Returns its timestep (or its sign-flipped input) so conversions can be read off."""

    def __init__(self):
        self.seen = []

    def __call__(self, *args, **kwargs):
        self.seen.append((args, kwargs))
        x = kwargs.get("hidden_states", args[0] if args else None)
        return (torch.zeros_like(x),)


def test_flux_passes_sigma_as_timestep_and_the_pipeline_grid():
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    echo = Echo()
    pipe = type("Pipe", (), dict(transformer=echo, scheduler=scheduler, vae_scale_factor=8, default_sample_size=64))
    wrapper = FluxWrapper.from_pipeline(pipe, teacher_steps=4, height=512, width=512)
    # 512 px -> 32 x 32 packed tokens = 1024: mu = 1024 * m + b
    m = (1.15 - 0.5) / (4096 - 256)
    mu = 1024 * m + 0.5 - m * 256
    sig = torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64)
    shifted = torch.exp(torch.tensor(mu)) / (torch.exp(torch.tensor(mu)) + (1 / sig - 1))
    torch.testing.assert_close(wrapper.fm_steps.double(), torch.cat([torch.zeros(1), shifted.flip(0)]).double(),
                               rtol=1e-6, atol=1e-6)
    wrapper(torch.zeros(2, 3, 4), torch.tensor([4, 1]), None, {})
    torch.testing.assert_close(echo.seen[-1][1]["timestep"], wrapper.fm_steps[[4, 1]].float(), rtol=1e-6, atol=0)


def test_opensora_timesteps_guidance_and_sign():
    class Linear:
        def __call__(self, x, timestep, y, x_mask=None, **kwargs):
            self.timestep, self.x_mask = timestep, x_mask
            # prediction x0 - noise = y-dependent constant: cond rows 2, null rows 1
            out = y.reshape(y.shape[0], -1)[:, :1].reshape(-1, 1, 1, 1, 1) * torch.ones_like(x)
            return torch.cat([out, 5 * torch.ones_like(x)], dim=1)

    timesteps = rflow_timesteps(4, 512, 512, 1)  # 512 px, one frame: no transform shift (ratio 1)
    assert timesteps == [1000.0, 750.0, 500.0, 250.0]
    net = Linear()
    wrapper = OpenSoraWrapper(net, 3.0, torch.ones(1, 1, 2, 2), timesteps, 1000, mask_t=torch.tensor([[1000.0, 400.0]]))
    y = 2 * torch.ones(2, 1, 2, 2)
    v = wrapper(torch.zeros(2, 4, 2, 3, 3), torch.tensor([4, 2]), y, {})
    assert net.timestep.tolist() == [1000.0, 500.0, 1000.0, 500.0]
    assert net.x_mask.tolist() == [[True, False], [True, False], [True, False], [True, False]]
    # guided x0 - noise = 1 + 3 * (2 - 1) = 4; the velocity is its negative
    assert torch.all(v == -4)
    # v1.2 transform: 720p-like 1280x720, 51 frames -> ratio sqrt(1280*720/512^2) * sqrt(51 // 17 * 5)
    ratio = (1280 * 720 / 512**2) ** 0.5 * 15**0.5
    assert rflow_timesteps(2, 720, 1280, 51)[1] == pytest.approx(ratio * 0.5 / (1 + (ratio - 1) * 0.5) * 1000)


def test_wan_grid_and_guidance():
    s = wan_sigmas(4, 5.0)
    torch.testing.assert_close(s, torch.tensor([1.0, 5 * 0.75 / 4.0, 5 * 0.5 / 3.0, 5 * 0.25 / 2.0], dtype=torch.float64))

    class Const:
        def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=True):
            return (encoder_hidden_states[:, :1, :1].reshape(-1, 1, 1, 1, 1) * torch.ones_like(hidden_states),)

        __call__ = forward

    wrapper = WanWrapper.from_diffusers(Const(), 4, torch.zeros(1, 2, 3), guide_scale=5.0)
    v = wrapper(torch.zeros(2, 1, 1, 2, 2), torch.tensor([4, 1]), torch.ones(2, 2, 3), {})
    assert torch.all(v == 5.0)  # 0 + 5 * (1 - 0)


def test_flowmatch_guidance_doubles_kwargs_with_their_null_values():
    seen = {}

    def fn(x, timestep, cond, pooled, scale):
        seen.update(pooled=pooled, scale=scale, timestep=timestep)
        return cond.reshape(-1, 1) * torch.ones_like(x) + pooled

    wrapper = FlowMatchWrapper(fn, [1.0, 0.5], timestep_scale=1.0, guidance_scale=2.0, null_cond=torch.zeros(1),
                               null_kwargs={"pooled": torch.full((1, 3), 10.0)}, per_sample_kwargs=("pooled",))
    assert wrapper.fm_steps.tolist() == [0.0, 0.5, 1.0]
    v = wrapper(torch.zeros(2, 3), torch.tensor([2, 1]), torch.tensor([1.0, 3.0]),
                {"pooled": torch.ones(2, 3), "scale": 0.5})
    assert seen["pooled"][:, 0].tolist() == [1.0, 1.0, 10.0, 10.0] and seen["scale"] == 0.5
    assert seen["timestep"].tolist() == [1.0, 0.5, 1.0, 0.5]
    # cond rows: c + 1; null rows: 0 + 10; guided: 10 + 2 * (c + 1 - 10)
    torch.testing.assert_close(v[:, 0], torch.tensor([10 + 2 * (2.0 - 10), 10 + 2 * (4.0 - 10)]))


def test_published_constructors_build_the_published_grids():
    # The published wrappers' arguments: descending scheduler timesteps without the final 0.
    acp = DDPMScheduler().alphas_cumprod.double()
    dit = DiTWrapper(dit_forward_with_cfg(tiny_dit(torch.float32)), RespacedDDPM(acp, 50), "cpu",
                     torch.tensor([1000] * 4))
    used = [round(i * 999 / 49) for i in range(50)]
    assert dit.model_timesteps.tolist() == [0] + used
    alpha = acp[used].sqrt()
    expected = torch.cat([torch.zeros(1, dtype=torch.float64), (1 - alpha**2).sqrt() / (alpha + (1 - alpha**2).sqrt())])
    torch.testing.assert_close(dit.fm_steps, expected, rtol=1e-12, atol=0)

    flux = FluxWrapper(Echo(), torch.linspace(1000, 10, 20), 1000)
    assert flux.fm_steps.tolist() == pytest.approx([0.0] + torch.linspace(10, 1000, 20).div(1000).tolist(), rel=1e-6)

    rflow = rflow_timesteps(30, 64, 64, 17)
    sora = OpenSoraWrapper(TinySTDiT3(), 7.0, torch.zeros(1, 1, 5, 16), [torch.tensor([t]) for t in rflow], 1000,
                           torch.ones(1, 3) * 1000)
    assert sora.timesteps.tolist() == pytest.approx([0.0] + rflow[::-1], rel=1e-6)
    assert sora.fm_steps[-1] == pytest.approx(1.0) and bool((sora.fm_steps[1:] > sora.fm_steps[:-1]).all())

    wan = WanWrapper(TinyWanModel(), torch.tensor([999, 800, 500, 100]), 1000, [torch.zeros(4, 16)], 5.0)
    assert wan.model_timesteps.tolist() == [0, 100, 500, 800, 999]
    assert wan.fm_steps.tolist() == pytest.approx([0.0, 0.1, 0.5, 0.8, 0.999])

    with pytest.raises(ValueError, match="prediction"):
        FlowMatchWrapper(lambda *a: None, [1.0, 0.5], prediction="epsilon")


# ----------------------------------------------------------------------------- torch.compile

@pytest.fixture(scope="module")
def compiled_dit():
    torch._dynamo.reset()
    net = tiny_dit(torch.float32)
    eager = DiTWrapper.from_diffusers(net, DDPMScheduler(), 12, guidance_scale=2.0)
    compiled = DiTWrapper.from_diffusers(net, DDPMScheduler(), 12, guidance_scale=2.0, compile=True)
    return eager, compiled


def test_compiled_forward_equals_eager(compiled_dit):
    eager, compiled = compiled_dit
    x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t, y = torch.tensor([1, 5, 12, 7]), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, t, y, {}), eager(x, t, y, {}), rtol=1e-4, atol=1e-5)


def test_search_after_warm_up_does_not_recompile(compiled_dit):
    from torch._dynamo.utils import counters

    _, compiled = compiled_dit
    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([1, 2, 3])
    first = full_search(compiled, z, y, student_steps=4, mode="compat", max_batch=8, progress=False)
    graphs, frames = counters["stats"]["unique_graphs"], counters["frames"]["total"]
    assert graphs >= 1
    second = full_search(compiled, z, y, student_steps=4, mode="compat", max_batch=8, progress=False)
    assert counters["stats"]["unique_graphs"] == graphs and counters["frames"]["total"] == frames
    assert second.steps == first.steps


def test_compiled_network_sees_at_most_log2_chunk_plus_one_batch_sizes(compiled_dit, monkeypatch):
    # the runner pads each last chunk to a power of two (capped at the chunk), so levels of any
    # number of rows reach the compiled network in at most log2(chunk) + 1 batch sizes
    _, compiled = compiled_dit
    network = compiled.model.transformer  # the CompiledCall around the diffusers transformer
    compiled_forward = network.compiled
    assert compiled_forward is not None  # compilation has not fallen back to eager
    sizes = set()

    def recording(x, *args, **kwargs):
        sizes.add(x.shape[0])
        return compiled_forward(x, *args, **kwargs)

    monkeypatch.setattr(network, "compiled", recording)
    z = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(2))  # 5 samples: few levels fill chunks
    y = torch.tensor([1, 2, 3, 4, 5])
    chunk = 8
    full_search(compiled, z, y, student_steps=4, mode="compat", max_batch=chunk, progress=False)
    assert 1 < len(sizes) <= math.log2(chunk) + 1, sorted(sizes)


def test_compile_can_be_disabled_and_failures_fall_back(monkeypatch):
    from oss_fast.models.compile import CompiledCall, maybe_compile

    def fn(x):
        return x + 1

    monkeypatch.setenv("OSS_FAST_COMPILE", "0")
    assert maybe_compile(fn, True) is fn
    monkeypatch.setenv("OSS_FAST_COMPILE", "1")
    call = maybe_compile(fn, True)
    assert isinstance(call, CompiledCall)

    def broken(*args, **kwargs):
        raise RuntimeError("backend exploded")

    call.compiled = broken
    with pytest.warns(RuntimeWarning, match="backend exploded"):
        assert call(torch.ones(1)).item() == 2.0
    assert call.compiled is None


def test_regional_compilation_compiles_the_blocks_in_place(monkeypatch):
    from oss_fast.models.compile import maybe_compile_blocks

    class WithBlocks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])

    model = WithBlocks()
    assert maybe_compile_blocks(model, True) is model
    assert all(block._compiled_call_impl is not None for block in model.blocks)
    monkeypatch.setenv("OSS_FAST_COMPILE", "0")
    plain = WithBlocks()
    maybe_compile_blocks(plain, True)
    assert all(block._compiled_call_impl is None for block in plain.blocks)


# ----------------------------------------------------------------------------- half-precision networks

def half_case(name):
    """A case whose network runs in bfloat16 (as diffusers' examples load them) on float32 latents."""
    wrapper, z, cond, kwargs = make_case(name)
    net = {"dit-diffusers": lambda w: w.model.transformer, "flux": lambda w: w.model,
           "wan-diffusers": lambda w: w.model}[name](wrapper)
    reference = {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                 for k, v in kwargs.items()}
    net.to(torch.bfloat16)
    wrapper.half = half_dtype(wrapper.model)  # what the constructor reads from a bfloat16 network
    assert wrapper.half == torch.bfloat16
    return wrapper, z.float(), cond.float() if isinstance(cond, torch.Tensor) and cond.is_floating_point() else cond, \
        reference


@pytest.mark.parametrize("name", ["dit-diffusers", "flux", "wan-diffusers"])
def test_half_precision_networks_search_and_sample(name):
    full, z64, cond64, kwargs64 = make_case(name)
    wrapper, z, cond, kwargs = half_case(name)
    grid = torch.tensor([N, 3])
    with torch.no_grad():
        v = wrapper(z, grid, cond, kwargs)
        exact = full(z64, grid, cond64, kwargs64)
    assert v.dtype == torch.float32  # the latent's dtype: costs are computed from it
    assert float((v.double() - exact).norm() / exact.norm()) < 0.05  # bfloat16 rounding, not garbage
    res = full_search(wrapper, z, cond, student_steps=3, mode="exact", aggregate="per_sample", model_kwargs=kwargs,
                          progress=False)
    assert all(len(p) == 3 and p == sorted(set(p)) for p in res.steps)
    x = oss_fast.sample(wrapper, z, res.steps[0], cond, model_kwargs=kwargs)
    assert x.dtype == torch.float32 and torch.isfinite(x).all()


def test_half_dtype_is_read_from_the_network():
    net = tiny_dit(torch.float32)
    assert half_dtype(net) is None
    assert half_dtype(net.to(torch.bfloat16)) == torch.bfloat16
    assert half_dtype(net.forward) == torch.bfloat16  # a bound forward, as the published DiT wrapper gets
    assert DiTWrapper.from_diffusers(net, DDPMScheduler(), 8).half == torch.bfloat16
    assert half_dtype(lambda x: x) is None
