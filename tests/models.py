"""Small test models with the interface of DESIGN §2."""

import torch

import oss_fast
from oss_fast.grid import shifted_grid


def full_search(*args, **kwargs):
    """oss_fast.search without refinement (DESIGN §3.6): what the plain reference's search computes."""
    return oss_fast.search(*args, refine=False, **kwargs)


def euler_samples(model, x, cond):
    """Euler on every step of the model's grid, from s = 1 (grid index N) down to s = 0."""
    s = model.fm_steps
    for i in range(len(s) - 1, 0, -1):
        x = x + model(x, torch.tensor([i]), cond) * (s[i - 1] - s[i]).item()
    return x


class TinyConvNet(torch.nn.Module):
    """A random class-conditional conv net returning a velocity.

    It computes in float64 and returns the input's dtype: float32 convolutions on CPU give rows
    that depend on the batch they are in, float64 rounded to float32 does not, so searches that
    batch rows differently can be compared exactly.
    """

    def __init__(self, channels=4, classes=10, teacher_steps=50, shift=1.0, seed=0, hidden=16):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv_in = torch.nn.Conv2d(channels, hidden, 3, padding=1)
        self.conv_out = torch.nn.Conv2d(hidden, channels, 3, padding=1)
        self.label = torch.nn.Embedding(classes + 1, hidden)  # the last class is the null label
        self.time = torch.nn.Linear(1, hidden)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        self.double()
        self.fm_steps = shifted_grid(teacher_steps, shift)

    @torch.no_grad()
    def forward(self, x, t, cond=None, kwargs=None):
        s = self.fm_steps[t.long()].double()[:, None]
        h = self.conv_in(x.double()) + self.time(s)[:, :, None, None]
        if cond is not None:
            h = h + self.label(cond.long())[:, :, None, None]
        return (self.conv_out(torch.nn.functional.silu(h)) - x.double() * 0.5).to(x.dtype)


class TinySTDiT3(torch.nn.Module):
    """Open-Sora v1.2's STDiT3 call signature and output layout, with a tiny random network.

    forward(x [B, C, T, H, W], timestep [B] in 0..1000, y [B, 1, L, D], mask [B or n, L],
    x_mask [B, T] bool, fps/height/width [n]) -> float32 [B, 2C, T, H, W]. Frames whose x_mask is
    False see timestep 0, as in STDiT3. Computes in float64 (rows independent of their batch).
    """

    def __init__(self, channels=4, text_dim=16, hidden=8, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.in_channels, self.patch_size = channels, (1, 1, 1)  # STDiT3's attributes (its patches: 1x2x2)
        self.conv_in = torch.nn.Conv3d(channels, hidden, 3, padding=1)
        self.conv_out = torch.nn.Conv3d(hidden, 2 * channels, 3, padding=1)
        self.time = torch.nn.Linear(1, hidden)
        self.text = torch.nn.Linear(text_dim, hidden)
        self.size = torch.nn.Linear(3, hidden)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        self.double()

    @torch.no_grad()
    def forward(self, x, timestep, y, mask=None, x_mask=None, fps=None, height=None, width=None):
        B, _, T = x.shape[:3]
        y = y.double()[:, 0]                                     # [B, L, D]
        if mask is not None:                                     # upstream reuses the mask for the null half
            mask = mask.repeat(y.shape[0] // mask.shape[0], 1).double()
            text = (y * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        else:
            text = y.mean(1)
        t = timestep.double()[:, None].expand(B, T) / 1000
        if x_mask is not None:
            t = torch.where(x_mask, t, torch.zeros_like(t))
        h = self.conv_in(x.double()) + self.time(t[..., None]).permute(0, 2, 1)[..., None, None]
        h = h + self.text(text)[:, :, None, None, None]
        if fps is not None:
            sizes = torch.stack([fps, height, width], dim=1).double() / 100
            h = h + self.size(sizes.repeat(B // sizes.shape[0], 1))[:, :, None, None, None]
        return self.conv_out(torch.nn.functional.silu(h)).float()


class TinyWanModel(torch.nn.Module):
    """Wan2.1's native WanModel API: forward(x, t, context, seq_len) with x a list of [C, F, H, W]
    (or a tensor iterated over dim 0), context a list of [L, D], returning a list of float32
    [C, F, H, W]. Each sample is computed on its own, in float64."""

    def __init__(self, channels=4, text_dim=16, hidden=8, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.in_dim, self.patch_size = channels, (1, 1, 1)  # WanModel's attributes (its patches: 1x2x2)
        self.conv_in = torch.nn.Conv3d(channels, hidden, 3, padding=1)
        self.conv_out = torch.nn.Conv3d(hidden, channels, 3, padding=1)
        self.time = torch.nn.Linear(1, hidden)
        self.text = torch.nn.Linear(text_dim, hidden)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        self.double()

    @torch.no_grad()
    def forward(self, x, t, context, seq_len, clip_fea=None, y=None):
        assert isinstance(seq_len, int)
        out = []
        for u, tt, ctx in zip(x, t, context):
            h = self.conv_in(u[None].double()) + self.time(tt.double().reshape(1, 1) / 1000)[:, :, None, None, None]
            h = h + self.text(ctx.double().mean(0, keepdim=True))[:, :, None, None, None]
            out.append(self.conv_out(torch.nn.functional.silu(h))[0].float())
        return out
