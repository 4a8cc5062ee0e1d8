"""Tiny random-weight diffusers pipelines, built offline, for tests that load real pipeline folders.

Each family has the components and scheduler configuration of its published pipeline (FLUX.1-dev,
Stable Diffusion 3, Wan 2.1 text-to-video, DiT) with layers a few channels wide, so a build and
save_pretrained take well under a second and the folder is a few hundred kB. Tokenizers are made
from VOCAB, with no download: prompts written from VOCAB give one token per word, other words still
encode (CLIP splits them into characters, T5 maps them to <unk>). A build is seeded, so two builds
of a family have the same weights, and it leaves torch's global random state as it was.
"""

import pathlib

import diffusers
import torch
from tokenizers import pre_tokenizers
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)

FAMILIES = ("flux", "sd3", "wan", "dit")

# Ordered so that each word is one CLIP token: a word whose first two letters occur inside another
# word comes after it, or BPE would merge that pair first (see clip_tokenizer).
VOCAB = ("a", "photo", "of", "cat", "dog", "on", "the", "blue", "green", "tree", "house",
         "sky", "in", "snow", "red")

MAX_SEQUENCE_LENGTH = 8  # T5 tokens per prompt (eos included): pass as max_sequence_length
CLIP_MAX_LENGTH = 77     # CLIP's own length, which the pipelines read from the tokenizer

# Pixel sizes to generate at (our code passes height and width explicitly; the FLUX pipeline's
# default of 128 * vae_scale_factor would be far from tiny). Why each: see the builders.
SIZES = {
    "flux": dict(height=32, width=32),
    "sd3": dict(height=32, width=32),
    "wan": dict(height=32, width=32, frames=5),
    "dit": dict(height=16, width=16),
}

DIT_CLASSES = 1000  # num_embeds_ada_norm: the null (unconditional) class is label 1000, as DiTPipeline has it
DIT_LABELS = {0: "cat, tabby", 1: "dog", 2: "tree", 3: "house, home", 4: "sky"}


def clip_tokenizer():
    """A CLIP BPE tokenizer whose words are VOCAB, over the full byte alphabet like CLIP's own.

    BPE starts from characters, so each word needs a chain of merges ('p h', 'ph o', ...,
    'phot o</w>'); with every byte in the vocabulary no text ever maps to the unknown token, which
    in CLIP is <|endoftext|> (the token CLIP pools at).
    """
    tokens = list(pre_tokenizers.ByteLevel.alphabet())
    tokens += [char + "</w>" for char in tokens]
    merges = []
    for word in VOCAB:
        prefix = word[0]
        for position, char in enumerate(word[1:], start=2):
            piece = char + "</w>" if position == len(word) else char
            if prefix + piece not in tokens:  # words sharing a prefix share its merges
                merges.append((prefix, piece))
                tokens.append(prefix + piece)
            prefix += piece
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)


def t5_tokenizer():
    """A T5 unigram tokenizer with T5's special ids (<pad> 0, </s> 1, <unk> 2) and one piece per word.

    No sentinel <extra_id_*> tokens: nothing here uses them and they would only widen the encoder.
    """
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + word, -1.0) for word in VOCAB]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def clip_encoder(tokenizer, hidden, projection=None):
    """CLIPTextModel, or CLIPTextModelWithProjection when a projection width is given.

    The token ids in the config are the tokenizer's: CLIP pools at the first eos token.
    """
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=CLIP_MAX_LENGTH,
        projection_dim=projection or hidden, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def t5_encoder(tokenizer, d_model, umt5=False):
    """T5EncoderModel (UMT5EncoderModel when umt5) d_model wide, with the tokenizer's vocabulary."""
    settings = dict(
        vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=2,
        num_heads=2, relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
    )
    return UMT5EncoderModel(UMT5Config(**settings)) if umt5 else T5EncoderModel(T5Config(**settings))


def autoencoder_kl(**scaling):
    """An AutoencoderKL with 4 latent channels and two blocks: vae_scale_factor 2 (16 px -> 8 latent)."""
    return diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(4, 8), norm_num_groups=2, latent_channels=4, sample_size=32, **scaling,
    )


def build_flux():
    """FLUX.1-dev's layout: guidance embedding, dynamic shifting scheduler, packed 2x2 latents.

    32 px: vae_scale_factor 2 gives a 16x16 latent, packed into 8x8 = 64 tokens of 4 * 4 channels
    (the pipeline needs height and width divisible by 2 * vae_scale_factor = 4). The VAE carries
    FLUX's scaling and shift factors, the scheduler FLUX.1-dev's shift settings (at 64 tokens mu
    is extrapolated below base_shift: 0.4675).
    """
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    text_encoder, text_encoder_2 = clip_encoder(tokenizer, hidden=8), t5_encoder(tokenizer_2, d_model=16)
    vae = autoencoder_kl(scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                         use_post_quant_conv=False)
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=4 * vae.config.latent_channels, num_layers=1, num_single_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=text_encoder_2.config.d_model,
        pooled_projection_dim=text_encoder.config.hidden_size, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),  # text/height/width rotary dims, summing to attention_head_dim
    )
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    return diffusers.FluxPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
    )


def build_sd3():
    """Stable Diffusion 3's layout: two CLIPs with projections and a T5, a static shift of 3.

    The pipeline concatenates the CLIP hidden states (8 + 16 = 24 wide), zero-pads them to T5's
    d_model (32, the transformer's joint_attention_dim) and appends T5's states along the sequence
    (77 + MAX_SEQUENCE_LENGTH tokens); the pooled vector is both projections (8 + 16). 32 px: a 16x16
    latent (transformer sample_size 16) in 8x8 patches of 2 (height and width divisible by 4).
    """
    tokenizer, tokenizer_2, tokenizer_3 = clip_tokenizer(), clip_tokenizer(), t5_tokenizer()
    text_encoder = clip_encoder(tokenizer, hidden=8, projection=8)
    text_encoder_2 = clip_encoder(tokenizer_2, hidden=16, projection=16)
    text_encoder_3 = t5_encoder(tokenizer_3, d_model=32)
    vae = autoencoder_kl(scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
                         use_post_quant_conv=False)
    heads, head_dim = 2, 8
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=vae.config.latent_channels,
        out_channels=vae.config.latent_channels, num_layers=2, attention_head_dim=head_dim,
        num_attention_heads=heads, joint_attention_dim=text_encoder_3.config.d_model,
        caption_projection_dim=heads * head_dim,
        pooled_projection_dim=text_encoder.config.projection_dim + text_encoder_2.config.projection_dim,
        pos_embed_max_size=16,  # patches per side it can place: up to 64 px
    )
    return diffusers.StableDiffusion3Pipeline(
        transformer=transformer, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2, text_encoder_3=text_encoder_3, tokenizer_3=tokenizer_3,
    )


def build_wan():
    """Wan 2.1 text-to-video's layout: UMT5 text encoder, UniPC on flow sigmas with flow_shift 3.

    The Wan VAE keeps Wan's compression (4 frames, 8 px per latent step) with 4 latent channels and
    its own per-channel latents_mean/latents_std, which the pipeline applies before decoding. 5
    frames -> 2 latent frames; 32 px -> a 4x4 latent, 2x2 patches of (1, 2, 2) per frame (height
    and width must be multiples of 8 * 2 = 16).
    """
    tokenizer = t5_tokenizer()
    text_encoder = t5_encoder(tokenizer, d_model=16, umt5=True)
    vae = diffusers.AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.3, -0.4], latents_std=[1.5, 0.8, 2.0, 1.2],
    )
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2,
        attention_head_dim=12,  # rotary dims split 4/4/4 over frames, height, width
        in_channels=vae.config.z_dim, out_channels=vae.config.z_dim,
        text_dim=text_encoder.config.d_model, freq_dim=16, ffn_dim=32, num_layers=2,
        rope_max_seq_len=32,
    )
    scheduler = diffusers.UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
    )
    return diffusers.WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
        transformer=transformer,
    )


def build_dit():
    """DiT's layout: class-conditional transformer predicting noise and a learned variance.

    sample_size 8 latent, patch 2 (16 tokens), out_channels twice the 4 latent channels as in
    DiT-XL-2; the SD VAE's scaling factor; DPM-Solver++ over DiT's linear betas. 16 px = 8 latent
    times vae_scale_factor 2. DiT's 1000 classes (a 1001 x 16 table): DiTPipeline.__call__ hardcodes
    the null class 1000, so the pipeline runs with guidance only with all of them.
    """
    vae = autoencoder_kl(scaling_factor=0.18215)
    transformer = diffusers.DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=vae.config.latent_channels,
        out_channels=2 * vae.config.latent_channels, num_layers=2, sample_size=8, patch_size=2,
        num_embeds_ada_norm=DIT_CLASSES,
    )
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
    )
    pipeline = diffusers.DiTPipeline(transformer=transformer, vae=vae, scheduler=scheduler,
                                     id2label=DIT_LABELS)
    # DiTPipeline reads id2label but does not record it; in model_index.json it comes back on loading.
    pipeline.register_to_config(id2label=DIT_LABELS)
    return pipeline


BUILDERS = {"flux": build_flux, "sd3": build_sd3, "wan": build_wan, "dit": build_dit}


def build_tiny_pipeline(family: str):
    """The family's pipeline with seeded random weights, in float32 on the CPU (not saved)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BUILDERS[family]()


def save_tiny_pipeline(family: str, folder) -> pathlib.Path:
    """Builds the family's pipeline and save_pretrained's it into folder; returns folder as a Path."""
    folder = pathlib.Path(folder)
    build_tiny_pipeline(family).save_pretrained(folder)
    return folder
