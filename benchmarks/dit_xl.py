"""A DiT-XL/2-sized transformer with random weights, for timing searches on a GPU.

Same sizes as DiT-XL/2 at 256 px (latent 4x32x32, patch 2 -> 256 tokens, hidden 1152, depth 28,
16 heads, MLP ratio 4, adaLN-Zero conditioning on time and class): the compute of one call matches
the published model; the weights are random, so only timings mean anything. No download needed.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(approximate="tanh"), nn.Linear(4 * hidden, hidden))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)[:, None].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        B, L, H = h.shape
        q, k, v = self.qkv(h).reshape(B, L, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        attn = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, H)
        x = x + gate1 * self.proj(attn)
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class DiTXL2(nn.Module):
    def __init__(self, input_size=32, patch=2, in_channels=4, hidden=1152, depth=28, heads=16, classes=1000):
        super().__init__()
        self.patch, self.in_channels = patch, in_channels
        self.embed = nn.Conv2d(in_channels, hidden, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, (input_size // patch) ** 2, hidden) * 0.02)
        self.t_mlp = nn.Sequential(nn.Linear(256, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.y_embed = nn.Embedding(classes + 1, hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.out = nn.Linear(hidden, patch * patch * 2 * in_channels)

    def forward(self, x, t, y):
        B, C, Hs, Ws = x.shape
        h = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        c = self.t_mlp(timestep_embedding(t).to(h.dtype)) + self.y_embed(y)
        for block in self.blocks:
            h = block(h, c)
        h = self.out(self.norm(h))
        p, g = self.patch, Hs // self.patch
        h = h.reshape(B, g, g, p, p, 2 * C).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(B, 2 * C, Hs, Ws)


class DiTXLVelocity:
    """DiTXL2 read as a velocity on a uniform grid of N steps (the learned-sigma half dropped)."""

    def __init__(self, N: int, device, dtype=torch.bfloat16):
        torch.manual_seed(0)
        self.net = DiTXL2().to(device=device, dtype=dtype).eval()
        self.fm_steps = torch.linspace(0, 1, N + 1, dtype=torch.float64, device=device)

    @torch.no_grad()
    def __call__(self, x, t, cond, kwargs):
        timestep = (self.fm_steps[t] * 999).round()
        return self.net(x, timestep, cond)[:, : x.shape[1]]
