"""The small class-conditional UNet of the bundled learned models, and their model interface.

`SmallUNet` is a two-level UNet (full size with `channels`, half size with `inner_channels`) whose
blocks are scaled and shifted by a time and label embedding (FiLM). `ImageFlow` wraps a trained one
as a velocity model (DESIGN §2): with x_s = (1 - s) x0 + s eps (s = 1 is noise) the network predicts
v = eps - x0; the last label is the null label used for classifier-free guidance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..grid import shifted_grid
from ..models.base import network_fingerprint
from .draws import check_count, generator


class RowLinear(nn.Linear):
    """nn.Linear as one matrix-vector product per row (torch.bmm): a float64 matrix product over
    the rows rounds differently with the number of rows, this does not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x[:, None, :], self.weight.T.expand(x.shape[0], -1, -1))[:, 0] + self.bias


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the second norm scaled and shifted by the conditioning (FiLM)."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.film = RowLinear(emb_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        out = self.conv2(F.silu(self.norm2(out) * (1 + scale) + shift))
        return self.skip(h) + out


class SmallUNet(nn.Module):
    """A two-level UNet for [R, image_channels, H, W] images (H, W even).

    forward(x, s, labels): s [R] flow times in [0, 1], labels [R] in 0..labels-1 (the last: null).
    """

    def __init__(self, channels: int = 48, inner_channels: int = 80, emb_dim: int = 128, groups: int = 8,
                 image_channels: int = 1, labels: int = 11):
        super().__init__()
        self.time_mlp = nn.Sequential(RowLinear(emb_dim // 2, emb_dim), nn.SiLU(), RowLinear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(labels, emb_dim)
        self.conv_in = nn.Conv2d(image_channels, channels, 3, padding=1)
        self.block_high = ResBlock(channels, channels, emb_dim, groups)
        self.down = nn.Conv2d(channels, inner_channels, 3, stride=2, padding=1)
        self.block_low = ResBlock(inner_channels, inner_channels, emb_dim, groups)
        self.up = nn.Conv2d(inner_channels, channels, 3, padding=1)
        self.block_out = ResBlock(2 * channels, channels, emb_dim, groups)
        self.norm_out = nn.GroupNorm(groups, channels)
        self.conv_out = nn.Conv2d(channels, image_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def time_embedding(self, s: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features of 1000 s (the DDPM convention), [R, emb_dim // 2]."""
        half = self.time_mlp[0].in_features // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=s.device, dtype=s.dtype) / half)
        angles = 1000.0 * s[:, None] * freqs
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)

    def forward(self, x: torch.Tensor, s: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        s = s.to(x.dtype)
        emb = F.silu(self.time_mlp(self.time_embedding(s)) + self.label_emb(labels.long()))
        high = self.block_high(self.conv_in(x), emb)
        low = self.block_low(self.down(high), emb)
        up = self.up(F.interpolate(low, scale_factor=2, mode="nearest"))
        out = self.block_out(torch.cat([high, up], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(out)))


def load_unet(path, device="cpu") -> SmallUNet:
    """A SmallUNet from a weights file written by scripts/train_zoo.py ({"config", "state_dict"})."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; make it with scripts/train_zoo.py")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    net = SmallUNet(**saved["config"])
    net.load_state_dict(saved["state_dict"])
    return net.to(device)


class ImageFlow:
    """A trained SmallUNet with the model interface of DESIGN §2, on images of `shape` [C, H, W].

    cond: None (unconditional, the null label) or a LongTensor of labels per row (the last label is
    the null one). With guidance_scale != 1 a labelled row is uncond + g (cond - uncond), both halves
    in one batched call. The network computes in `dtype` (it is cast in place); float64 makes a row's
    output independent of the other rows of its batch, which float32 convolutions on CPU are not.
    """

    def __init__(self, net: SmallUNet, shape, name: str, teacher_steps: int = 100, shift: float = 1.0,
                 guidance_scale: float = 1.0, dtype=torch.float32):
        self.dtype = dtype
        self.net = net.to(dtype).eval()
        self.shape = tuple(shape)
        self.null_label = net.label_emb.num_embeddings - 1
        self.guidance_scale = float(guidance_scale)
        device = next(net.parameters()).device
        self.fm_steps = shifted_grid(teacher_steps, shift).to(device)
        self.name = f"{name}(teacher_steps={teacher_steps}, shift={shift}, guidance_scale={guidance_scale})"

    @property
    def fingerprint(self) -> dict:
        """What determines its velocity beyond the grid (for search checkpoints): the network's
        weights, the guidance and the dtype it computes in."""
        return dict(model=type(self).__qualname__, shape=list(self.shape), guidance_scale=self.guidance_scale,
                    dtype=self.dtype, network=network_fingerprint(self.net))

    def _per_row(self, value, rows: int) -> torch.Tensor:
        value = torch.as_tensor(value, device=self.fm_steps.device).reshape(-1).long()
        value = value.expand(rows) if value.numel() == 1 else value
        if value.numel() != rows:
            raise ValueError(f"expected one value per row ({rows}), got {value.numel()}")
        return value

    def check_latent(self, x) -> None:
        """ValueError unless x is a batch of images of the model's shape."""
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected x [R, {', '.join(map(str, self.shape))}], got {got}")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None, kwargs=None) -> torch.Tensor:
        rows = x.shape[0]
        self.check_latent(x)
        s = self.fm_steps[self._per_row(t, rows)]
        null = torch.full((rows,), self.null_label, device=s.device, dtype=torch.long)
        labels = null if cond is None else self._per_row(cond, rows)
        if ((labels < 0) | (labels > self.null_label)).any():
            raise ValueError(f"labels must lie in [0, {self.null_label}] ({self.null_label} = unconditional)")
        x_in = x.to(self.dtype)
        if cond is None or self.guidance_scale == 1.0:
            return self.net(x_in, s, labels).to(x.dtype)
        both = self.net(torch.cat([x_in, x_in]), torch.cat([s, s]), torch.cat([labels, null]))
        cond_v, uncond_v = both.chunk(2)
        return (uncond_v + self.guidance_scale * (cond_v - uncond_v)).to(x.dtype)

    def noise(self, n: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
        """n standard-normal latents [n, C, H, W] (the starting points of sampling)."""
        gen = generator(seed)
        n = check_count(n, math.prod(self.shape) * (8 + torch.empty((), dtype=dtype).element_size()), "noises",
                        self.fm_steps.device)
        return torch.randn((n,) + self.shape, generator=gen, dtype=torch.float64).to(dtype).to(self.fm_steps.device)

    def labels(self, n: int, seed: int = 0) -> torch.Tensor:
        """n uniformly random labels (never the null one)."""
        gen = generator(seed)
        n = check_count(n, 8, "labels", self.fm_steps.device)
        return torch.randint(0, self.null_label, (n,), generator=gen).to(self.fm_steps.device)

    @staticmethod
    def to_images(x: torch.Tensor) -> torch.Tensor:
        """Model space [-1, 1] to pixel intensities in [0, 1]."""
        return ((x + 1) / 2).clamp(0, 1)
