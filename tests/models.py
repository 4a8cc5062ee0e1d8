"""Small test models with the interface of DESIGN §2."""

import torch

from oss_fast.zoo import shifted_grid


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
