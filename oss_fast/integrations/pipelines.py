"""A diffusers pipeline folder (or a hub id in the local cache) as a search's inputs: what
`oss-fast search --pipeline` runs on.

`load_pipeline(source, dtype, device)` loads it offline (never a download attempt) and refuses, in one
line, a missing folder or id and a pipeline of another family. `prepare(pipe, source, request,
teacher_steps)` returns a `PipelineJob`: our wrapper around the pipeline's transformer on its own
grid (its scheduler's shift, FLUX's dynamic shift at the asked size, guidance as the pipeline
applies it), the search noises with their conditioning (the prompts encoded once by the pipeline's
own encoders, which are then freed), a decoder of latents into images by the pipeline's VAE, and the
same network on the pipeline's own K-step schedule (the preview's third row).

Families: FLUX (FluxPipeline: guidance as the transformer's input where it has one), SD3
(StableDiffusion3Pipeline: classifier-free guidance with the negative prompt), Wan text-to-video
(WanPipeline, one transformer: guidance with the negative prompt) and DiT (DiTPipeline: class labels,
guidance with the null class).
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..grid import positive_real, scheduler_shift, shifted_grid
from ..models import DiTWrapper, FlowMatchWrapper, FluxWrapper, WanWrapper, flux_inputs, pack_latents
from ..models.base import half_dtype, into, network_fingerprint
from ..models.flux import flux_timesteps
from ..models.wan import wan_sigmas

FAMILIES = {"FluxPipeline": "flux", "StableDiffusion3Pipeline": "sd3", "WanPipeline": "wan", "DiTPipeline": "dit"}
SUPPORTED = "FLUX (FluxPipeline), SD3 (StableDiffusion3Pipeline), Wan text-to-video (WanPipeline), DiT (DiTPipeline)"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DEFAULT_GUIDANCE = {"flux": 3.5, "sd3": 7.0, "wan": 5.0, "dit": 4.0}  # the pipelines' own defaults
MAX_SEQUENCE_LENGTH = {"flux": 512, "sd3": 256, "wan": 512}  # the pipelines' own defaults


@dataclass
class Request:
    """What the user asked for on the command line."""

    prompts: list = field(default_factory=list)
    negative_prompt: str | None = None
    class_labels: list | None = None
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    guidance: float | None = None
    samples: int | None = None  # noises per prompt (or class label); None: 32 in all
    seed: int = 0


@dataclass
class PipelineJob:
    """A search's inputs from a pipeline. z [B, ...] rows follow the prompts (each repeated for its
    noises); cond and model_kwargs are what the wrapper takes for those rows."""

    family: str
    pipeline_class: str
    source: str
    model: object
    z: torch.Tensor
    cond: object
    model_kwargs: dict
    prompts: list
    rows_per_prompt: int
    settings: dict  # what schedule.json records: size, frames, guidance, shift, prompts' hash, ...
    decode: object  # latents [n, ...] -> images [n, 3, H, W] in [0, 1] (Wan: each video's first frame)
    default_model: object  # (K) -> the same network on the pipeline's own K-step schedule, steps 1..K
    noise_scale: float = 1.0  # the pipeline's unit noise in our flow latents (DiT: 1 / (alpha + sigma))

    def noise(self, n: int, seed: int) -> torch.Tensor:
        """n fresh starting noises like the search's, drawn with seed."""
        z = torch.randn(n, *self.z.shape[1:], generator=_generator(seed), dtype=self.z.dtype)
        return (z * self.noise_scale).to(self.z.device)

    def rows(self, index) -> tuple:
        """(z, cond, model_kwargs) of the rows `index` (a slice or index tensor)."""
        per_sample = set(getattr(self.model, "per_sample_kwargs", ()))
        kwargs = {k: v[index] if k in per_sample else v for k, v in self.model_kwargs.items()}
        return self.z[index], None if self.cond is None else self.cond[index], kwargs


# ---------------------------------------------------------------------------- loading

def model_index(source: str) -> tuple[dict, str]:
    """(model_index.json's content, where it was found) of a pipeline folder, or of a hub id in the
    local Hugging Face cache; ValueError (one line) when it is neither."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"--pipeline {source} is a file: give a diffusers pipeline folder (holding "
                             "model_index.json) or a hub id")
        index = path / "model_index.json"
        if not index.is_file():
            raise ValueError(f"--pipeline {source} holds no model_index.json: not a diffusers pipeline folder "
                             "(save one with pipe.save_pretrained(folder))")
    else:
        index = _cached_index(source)
    try:
        return json.loads(index.read_text()), str(index.parent)
    except (OSError, ValueError) as err:
        raise ValueError(f"--pipeline {source}: cannot read {index} ({err})") from None


def _cached_index(source: str) -> Path:
    """model_index.json of a hub id in the local cache, without touching the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        try_to_load_from_cache = None
    if source.startswith(("/", ".", "~")) or source.count("/") != 1:
        raise ValueError(f"--pipeline {source}: no such folder")
    found = None
    if try_to_load_from_cache is not None:
        try:
            found = try_to_load_from_cache(source, "model_index.json")
        except ValueError:  # not a valid repo id
            found = None
    if not isinstance(found, str):
        raise ValueError(f"--pipeline {source}: no such folder, and no hub id of that name in the local Hugging Face "
                         f"cache (oss-fast never downloads: fetch it first, e.g. `huggingface-cli download {source}`)")
    return Path(found)


def family_of(index: dict, source: str) -> str:
    name = index.get("_class_name")
    if name not in FAMILIES:
        raise ValueError(f"--pipeline {source} is a {name or 'pipeline of unknown class'}: supported are {SUPPORTED}")
    return FAMILIES[name]


def check_source(source: str) -> tuple[str, str]:
    """(family, folder) of a supported pipeline folder or cached hub id, without loading it."""
    index, folder = model_index(source)
    return family_of(index, source), folder


def load_pipeline(source: str, dtype: torch.dtype, device: str):
    """The pipeline, offline, in dtype on device (ValueError, one line, for what cannot be used)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read by huggingface_hub at import: no network, no hang
    family, folder = check_source(source)
    try:
        import diffusers
    except ImportError:
        raise ValueError("--pipeline needs diffusers (pip install diffusers transformers)") from None
    try:
        with warnings.catch_warnings():  # torch_dtype, which every diffusers version takes, is deprecated in newer ones
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = diffusers.DiffusionPipeline.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "low_cpu_mem_usage" in first:
            first += " (diffusers loads this pipeline only with accelerate installed: pip install accelerate)"
        raise ValueError(f"--pipeline {source}: diffusers cannot load it: {first}") from None
    if family == "wan" and getattr(pipe, "transformer_2", None) is not None:
        raise ValueError(f"--pipeline {source} has two transformers (Wan2.2's experts): only Wan2.1-style text-to-video "
                         "pipelines with one transformer are supported")
    return pipe.to(device)


# ---------------------------------------------------------------------------- jobs

def prepare(pipe, source: str, request: Request, teacher_steps: int) -> PipelineJob:
    """The search's inputs for `pipe` (see the module's docstring); ValueError for asks that do not fit it."""
    family = FAMILIES.get(type(pipe).__name__)
    if family is None:
        raise ValueError(f"{type(pipe).__name__} is not supported: supported are {SUPPORTED}")
    if family == "dit":
        if request.prompts or request.negative_prompt is not None:
            raise ValueError("DiT is class-conditional: give --class-labels, not prompts")
    else:
        if request.class_labels is not None:
            raise ValueError(f"{type(pipe).__name__} takes prompts (--prompt/--prompts), not --class-labels")
        if not request.prompts:
            raise ValueError(f"{type(pipe).__name__} needs at least one prompt: --prompt TEXT or --prompts FILE")
    if family != "wan" and request.frames is not None:
        raise ValueError("--frames is for video pipelines (Wan)")
    guidance = DEFAULT_GUIDANCE[family] if request.guidance is None else request.guidance
    return {"flux": _flux, "sd3": _sd3, "wan": _wan, "dit": _dit}[family](pipe, source, request, teacher_steps,
                                                                      guidance)


def _size(pipe, request: Request, multiple: int, default: tuple) -> tuple[int, int]:
    height, width = request.height or default[0], request.width or default[1]
    if height % multiple or width % multiple:
        raise ValueError(f"{type(pipe).__name__} needs --height and --width multiples of {multiple}, got "
                         f"{height}x{width}")
    return height, width


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _repeat(prompts: list, samples: int | None) -> int:
    return samples if samples is not None else max(1, math.ceil(32 / len(prompts)))


def _each(tensor, times: int):
    return None if tensor is None else tensor.repeat_interleave(times, dim=0)


def _digest(request: Request) -> str:
    text = json.dumps(dict(prompts=request.prompts, negative_prompt=request.negative_prompt,
                           class_labels=request.class_labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _free_encoders(pipe) -> None:
    """The text encoders are needed once; their memory is the network's and the search's after that."""
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        if getattr(pipe, name, None) is not None:
            setattr(pipe, name, None)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _device(pipe) -> torch.device:
    return next(pipe.transformer.parameters()).device


def _images(decoded: torch.Tensor) -> torch.Tensor:
    return (decoded.float() / 2 + 0.5).clamp(0, 1).cpu()


def _vae_images(vae, latents: torch.Tensor) -> torch.Tensor:
    """Latents [n, C, h, w] as the image pipelines decode them: unscaled, unshifted (where the VAE has a
    shift), through the VAE, into [0, 1]."""
    latents = latents / vae.config.scaling_factor + (vae.config.get("shift_factor") or 0.0)
    return _images(vae.decode(latents.to(vae.dtype), return_dict=False)[0])


def _settings(family, request, guidance, **extra) -> dict:
    return dict(family=family, guidance=guidance, negative_prompt=request.negative_prompt, prompts=len(request.prompts)
                or None, class_labels=request.class_labels, prompts_sha256=_digest(request), **extra)


def _flux(pipe, source, request, N, guidance) -> PipelineJob:
    if request.negative_prompt is not None:
        raise ValueError("FLUX takes its guidance as an input (--guidance), not through a negative prompt")
    factor = pipe.vae_scale_factor
    default = pipe.default_sample_size * factor
    height, width = _size(pipe, request, 2 * factor, (default, default))
    if not pipe.transformer.config.get("guidance_embeds"):
        if request.guidance is not None:
            raise ValueError("this FLUX transformer has no guidance input (FLUX.1-schnell style): leave out --guidance")
        guidance = None
    device = _device(pipe)
    with torch.no_grad():
        embeds, pooled, _ = pipe.encode_prompt(prompt=request.prompts, prompt_2=None, device=device,
                                               max_sequence_length=MAX_SEQUENCE_LENGTH["flux"])
    _free_encoders(pipe)
    each = _repeat(request.prompts, request.samples)
    model = FluxWrapper.from_pipeline(pipe, N, height, width)
    model.name = "FluxPipeline"
    channels = pipe.transformer.config.in_channels // 4
    lh, lw = 2 * (height // (2 * factor)), 2 * (width // (2 * factor))
    B = len(request.prompts) * each
    z = pack_latents(torch.randn(B, channels, lh, lw, generator=_generator(request.seed), dtype=torch.float32))
    kwargs = flux_inputs(_each(embeds, each), _each(pooled, each), lh, lw, guidance)
    seq_len = (lh // 2) * (lw // 2)

    def decode(latents):
        return _vae_images(pipe.vae, pipe._unpack_latents(latents, height, width, factor))

    def default_model(K):
        timesteps = flux_timesteps(copy.deepcopy(pipe.scheduler), K, seq_len)
        return FluxWrapper(pipe.transformer, timesteps, pipe.scheduler.config.num_train_timesteps)

    return PipelineJob("flux", "FluxPipeline", source, model, z.to(device), None, kwargs, request.prompts, each,
                       _settings("flux", request, guidance, size=[height, width]), decode, default_model)


class SD3Network:
    """SD3's transformer called as FlowMatchWrapper calls a network: fn(x, timestep, cond, pooled_projections)."""

    def __init__(self, transformer):
        self.transformer = transformer
        self.half = half_dtype(transformer)

    @property
    def fingerprint(self):
        return network_fingerprint(self.transformer)

    def __call__(self, x, timestep, cond, pooled_projections):
        out = self.transformer(hidden_states=into(x, self.half), timestep=timestep, encoder_hidden_states=into(
            cond, self.half), pooled_projections=into(pooled_projections, self.half), return_dict=False)[0]
        return out.to(x.dtype)


def _static_shift(pipe) -> float:
    config = pipe.scheduler.config
    if config.get("use_dynamic_shifting"):
        raise ValueError(f"{type(pipe).__name__}'s scheduler shifts by image size (use_dynamic_shifting): not supported "
                         "for this family; FLUX's is")
    return positive_real(scheduler_shift(config), f"the scheduler's shift ({type(pipe.scheduler).__name__})")


def _sd3(pipe, source, request, N, guidance) -> PipelineJob:
    factor = pipe.vae_scale_factor
    patch = pipe.transformer.config.patch_size
    default = pipe.default_sample_size * factor
    height, width = _size(pipe, request, factor * patch, (default, default))
    shift = _static_shift(pipe)
    device = _device(pipe)
    guided = guidance > 1
    with torch.no_grad():
        embeds, null, pooled, null_pooled = pipe.encode_prompt(
            prompt=request.prompts, prompt_2=None, prompt_3=None, device=device, do_classifier_free_guidance=guided,
            negative_prompt=request.negative_prompt or "", max_sequence_length=MAX_SEQUENCE_LENGTH["sd3"])
    _free_encoders(pipe)
    each = _repeat(request.prompts, request.samples)
    network = SD3Network(pipe.transformer)
    guide = dict(guidance_scale=guidance, null_cond=null[:1], null_kwargs={"pooled_projections": null_pooled[:1]}) \
        if guided else {}

    def on(sigmas):
        return FlowMatchWrapper(network, sigmas, timestep_scale=pipe.scheduler.config.num_train_timesteps,
                                per_sample_kwargs=("pooled_projections",), **guide)

    model = on(shifted_grid(N, shift)[1:])  # FLUX's convention: linspace(1, 1/N, N) shifted; the recipe passes sigmas
    model.name = "StableDiffusion3Pipeline"
    B = len(request.prompts) * each
    z = torch.randn(B, pipe.transformer.config.in_channels, height // factor, width // factor,
                    generator=_generator(request.seed), dtype=torch.float32)

    def decode(latents):
        return _vae_images(pipe.vae, latents)

    def default_model(K):
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(K, device="cpu")
        return on(scheduler.sigmas[:-1].double())

    return PipelineJob("sd3", "StableDiffusion3Pipeline", source, model, z.to(device), _each(embeds, each),
                       {"pooled_projections": _each(pooled, each)}, request.prompts, each,
                       _settings("sd3", request, guidance, size=[height, width], shift=shift), decode, default_model)


def _wan(pipe, source, request, N, guidance) -> PipelineJob:
    spatial, temporal = pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal
    patch = pipe.transformer.config.patch_size
    height, width = _size(pipe, request, spatial * patch[-1], (480, 832))
    frames = 81 if request.frames is None else request.frames
    if (frames - 1) % temporal:
        raise ValueError(f"Wan needs --frames of the form {temporal} k + 1 (e.g. 81), got {frames}")
    shift = _static_shift(pipe)
    device = _device(pipe)
    guided = guidance > 1
    with torch.no_grad():
        embeds, null = pipe.encode_prompt(prompt=request.prompts, negative_prompt=request.negative_prompt or "",
                                          do_classifier_free_guidance=guided,
                                          max_sequence_length=MAX_SEQUENCE_LENGTH["wan"], device=device)
    _free_encoders(pipe)
    each = _repeat(request.prompts, request.samples)
    null = null[:1] if guided else None
    model = WanWrapper.from_diffusers(pipe.transformer, N, context_null=null, guide_scale=guidance, shift=shift)
    model.name = "WanPipeline"
    B = len(request.prompts) * each
    z = torch.randn(B, pipe.transformer.config.in_channels, (frames - 1) // temporal + 1, height // spatial,
                    width // spatial, generator=_generator(request.seed), dtype=torch.float32)

    def decode(latents):
        vae = pipe.vae
        view = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(view).to(latents)
        std = torch.tensor(vae.config.latents_std).view(view).to(latents)
        video = vae.decode((latents * std + mean).to(vae.dtype), return_dict=False)[0]
        return _images(video[:, :, 0])

    def default_model(K):
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(K, device="cpu")
        sigmas = torch.as_tensor(scheduler.sigmas[:-1], dtype=torch.float64)
        return WanWrapper(pipe.transformer, sigmas * 1000, 1000, null, guidance)

    return PipelineJob("wan", "WanPipeline", source, model, z.to(device), _each(embeds, each), {}, request.prompts,
                       each, _settings("wan", request, guidance, size=[height, width], frames=frames, shift=shift),
                       decode, default_model)


def _dit(pipe, source, request, N, guidance) -> PipelineJob:
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    side = pipe.transformer.config.sample_size * factor
    if (request.height or side, request.width or side) != (side, side):
        raise ValueError(f"this DiT makes {side}x{side} images only (its sample_size): leave out --height/--width")
    classes = pipe.transformer.config.num_embeds_ada_norm  # the null class follows the real ones
    device = _device(pipe)
    labels = request.class_labels
    if labels is not None and any(not 0 <= c < classes for c in labels):
        raise ValueError(f"--class-labels must lie in [0, {classes - 1}] for this DiT, got {labels}")
    if labels is None:
        each = 1
        count = request.samples if request.samples is not None else 32
        labels_rows = torch.randint(classes, (count,), generator=_generator(request.seed))
    else:
        each = _repeat(labels, request.samples)
        labels_rows = torch.tensor(labels).repeat_interleave(each)

    def on(scheduler_steps, timesteps=None):
        return DiTWrapper.from_diffusers(pipe.transformer, pipe.scheduler, scheduler_steps, guidance_scale=guidance,
                                         null_class=classes, device=device, timesteps=timesteps)

    model = on(N)
    model.name = "DiTPipeline"
    # DiT's noise is unit noise in its variance-preserving space, x_t = (alpha + sigma) x_s: in flow time, at
    # the grid's noise end, that is unit noise over alpha + sigma
    alpha = float(model.sqrt_alphas[-1])
    scale = 1 / (alpha + math.sqrt(1 - alpha ** 2))
    z = torch.randn(len(labels_rows), pipe.transformer.config.in_channels, side // factor, side // factor,
                    generator=_generator(request.seed), dtype=torch.float32) * scale

    def decode(latents):
        return _vae_images(pipe.vae, latents)

    def default_model(K):
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(K)
        return on(K, sorted(int(t) for t in scheduler.timesteps))

    names = [str(c) for c in (labels if labels is not None else labels_rows.tolist())]
    return PipelineJob("dit", "DiTPipeline", source, model, z.to(device), labels_rows.to(device), {}, names, each,
                       _settings("dit", request, guidance, size=[side, side]), decode, default_model, scale)


# ---------------------------------------------------------------------------- the recipe

RECIPE = '''"""{pipeline} from {source} sampled on the OSS schedule oss-fast searched for it (schedule.json
beside this file): {steps} {solver} steps, {settings}.

    python recipe.py {example}            # writes oss-0.{suffix}, oss-1.{suffix}, ...

or in your own code:

    from recipe import load_pipeline, generate
    pipe = load_pipeline()
    out = generate(pipe, {example_arg})       # the pipeline's usual output; keyword arguments go to pipe(...)

`Schedule.applied(pipe)` puts the pipeline's scheduler on exactly the schedule's sigmas (on a
scheduler that runs its solver) for the call, whatever step count the pipeline asks for.
"""

import sys
from pathlib import Path

import diffusers
import torch

import oss_fast

PIPELINE = {source!r}
SCHEDULE = oss_fast.Schedule.load(Path(__file__).with_name("schedule.json"))
CALL = {call!r}  # the settings the schedule was searched with


def load_pipeline(dtype=None, device=None):
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    return diffusers.DiffusionPipeline.from_pretrained(PIPELINE, torch_dtype=dtype).to(device)


def generate(pipe, {argument}, **kwargs):
    with SCHEDULE.applied(pipe):
        return pipe({call_argument}, num_inference_steps=len(SCHEDULE), **dict(CALL, **kwargs))


if __name__ == "__main__":
    pipe = load_pipeline()
    for i, {argument} in enumerate({inputs}):
        out = generate(pipe, {argument})
        {save}
'''


def recipe(job: PipelineJob, schedule) -> str:
    """recipe.py: the pipeline sampled on the schedule with the search's settings (see RECIPE)."""
    settings = job.settings
    call = {}
    if settings.get("size") and job.family != "dit":
        call.update(height=settings["size"][0], width=settings["size"][1])
    if settings.get("frames"):
        call["num_frames"] = settings["frames"]
    if settings.get("guidance") is not None:
        call["guidance_scale"] = settings["guidance"]
    if settings.get("negative_prompt") is not None:
        call["negative_prompt"] = settings["negative_prompt"]
    if job.family == "dit":
        argument, call_argument, inputs = "label", "class_labels=[label]", "[int(a) for a in sys.argv[1:]]"
        example, example_arg = " ".join(job.prompts[:2]), job.prompts[0]
    else:
        argument, call_argument, inputs = "prompt", "prompt", "sys.argv[1:]"
        example, example_arg = '"' + job.prompts[0].replace('"', "'") + '"', repr(job.prompts[0])
    if job.family == "wan":
        suffix, save = "mp4", 'diffusers.utils.export_to_video(out.frames[0], f"oss-{i}.mp4", fps=16)'
    else:
        suffix, save = "png", 'out.images[0].save(f"oss-{i}.png")'
    shown = ", ".join(f"{k} {v}" for k, v in call.items() if k != "negative_prompt") or "the pipeline's defaults"
    return RECIPE.format(pipeline=job.pipeline_class, source=job.source, steps=len(schedule), solver=schedule.solver,
                         settings=shown, example=example, example_arg=example_arg, suffix=suffix, call=call,
                         argument=argument, call_argument=call_argument, inputs=inputs, save=save)
