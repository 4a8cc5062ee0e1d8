"""A flow-matching model with a closed-form velocity: data is a Gaussian mixture.

With x_s = (1 - s) x0 + s eps (s = 1 is noise) and components x0 ~ N(mu_k, sigma_k^2 I), the
marginal of x_s given component k is N((1 - s) mu_k, var_k I) with var_k = (1 - s)^2 sigma_k^2 + s^2,
and the exact velocity E[eps - x0 | x_s] is the posterior-weighted sum of

    v_k = (s - (1 - s) sigma_k^2) / var_k * (x_s - (1 - s) mu_k) - mu_k.

Everything is computed in float64, and the products with the means are batched matrix-vector
products (one per row, torch.bmm) rather than one matrix product over the rows: a row's output then
does not depend on the other rows of its batch, so searches that batch rows differently agree
exactly, at a fraction of the cost of elementwise [rows, K, D] temporaries.
"""

from __future__ import annotations

import math

import torch

from ..grid import shifted_grid
from .draws import check_count, generator


def _itemsize(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


class GaussianMixtureFlow:
    """Exact flow-matching velocity of a Gaussian mixture, with the model interface of DESIGN §2.

    cond: None (unconditional) or a LongTensor of component labels per row; the label
    `components` means unconditional (like DiT's null class), so classifier-free guidance can be
    tried on it.
    """

    _CHUNK_ELEMENTS = 1 << 18

    def __init__(self, shape=(4, 32, 32), components: int = 8, teacher_steps: int = 200,
                 shift: float = 1.0, seed: int = 0, *, mean_scale: float = 1.0,
                 std_range=(0.3, 0.7), device="cpu"):
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        if not 0 < std_range[0] <= std_range[1]:
            raise ValueError(f"std_range must satisfy 0 < low <= high, got {std_range}")
        self.shape = tuple(int(d) for d in shape)
        self.dim = math.prod(self.shape)
        self.components = components
        self.seed = seed
        gen = torch.Generator().manual_seed(seed)
        self.means = (torch.randn(components, self.dim, generator=gen, dtype=torch.float64) * mean_scale).to(device)
        low, high = std_range
        self.stds = (low + (high - low) * torch.rand(components, generator=gen, dtype=torch.float64)).to(device)
        w = 0.5 + torch.rand(components, generator=gen, dtype=torch.float64)
        self.weights = (w / w.sum()).to(device)
        self._means_sq = (self.means * self.means).sum(-1)
        self.fm_steps = shifted_grid(teacher_steps, shift).to(device)
        self.name = f"gaussian_mixture(shape={self.shape}, components={components}, seed={seed})"

    @property
    def fingerprint(self) -> dict:
        """What determines its velocity beyond the grid (for search checkpoints): the mixture itself."""
        return dict(model="GaussianMixtureFlow", shape=list(self.shape), means=self.means, stds=self.stds,
                    weights=self.weights)

    def check_latent(self, x) -> None:
        """ValueError unless x is a batch of latents of the mixture's shape."""
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"the mixture takes latents [B, {', '.join(map(str, self.shape))}], got {got}")

    # -------------------------------------------------------------------------- the model
    def _means_dot(self, x: torch.Tensor) -> torch.Tensor:
        """<x_r, mu_k> [R, K], one matrix-vector product per row."""
        return torch.bmm(x[:, None, :], self.means.T.expand(x.shape[0], -1, -1))[:, 0]

    def _component_logits(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """log(w_k N(x; (1 - s) mu_k, var_k I)) [R, K] for x [R, D] float64 and s [R, 1]."""
        var = (1 - s) ** 2 * self.stds**2 + s**2                                # [R, K]
        sq = (x * x).sum(-1, keepdim=True) - 2 * (1 - s) * self._means_dot(x) + (1 - s) ** 2 * self._means_sq
        return torch.log(self.weights) - 0.5 * sq / var - 0.5 * self.dim * torch.log(2 * math.pi * var)

    def _log_resp(self, x: torch.Tensor, s: torch.Tensor, cond) -> torch.Tensor:
        """Log posterior weights [R, K] of the components given x_s, or the labelled component."""
        logits = self._component_logits(x, s)
        if cond is not None:
            labels = torch.as_tensor(cond, device=x.device).reshape(-1).long()
            if labels.numel() == 1 and x.shape[0] > 1:
                labels = labels.expand(x.shape[0])
            if labels.numel() != x.shape[0]:
                raise ValueError(f"cond must hold one label per row ({x.shape[0]}), got {labels.numel()}")
            if ((labels < 0) | (labels > self.components)).any():
                raise ValueError(f"labels must lie in [0, {self.components}] ({self.components} = unconditional)")
            onehot = torch.full_like(logits, -math.inf)
            onehot[torch.arange(len(labels), device=x.device), labels.clamp(max=self.components - 1)] = 0.0
            logits = torch.where((labels < self.components)[:, None], onehot, logits)
        return torch.log_softmax(logits, dim=-1)

    def velocity(self, x: torch.Tensor, s: torch.Tensor, cond=None) -> torch.Tensor:
        """Velocity at times s (one per row) in float64, shape of x."""
        R = x.shape[0]
        xf = x.reshape(R, -1).double()
        s = s.reshape(R, 1).double().to(xf.device)
        w = self._log_resp(xf, s, cond).exp()                                   # [R, K]
        var = (1 - s) ** 2 * self.stds**2 + s**2
        a = (s - (1 - s) * self.stds**2) / var                                  # [R, K]
        wa = (w * a).sum(-1, keepdim=True)                                      # [R, 1]
        mean_coef = w * (a * (1 - s) + 1)                                       # [R, K]
        v = wa * xf - torch.bmm(mean_coef[:, None, :], self.means.expand(R, -1, -1))[:, 0]
        return v.reshape(x.shape)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None, kwargs=None) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.fm_steps.device).reshape(-1).long()
        if t.numel() == 1 and x.shape[0] > 1:
            t = t.expand(x.shape[0])
        if tuple(x.shape[1:]) != self.shape or t.numel() != x.shape[0]:
            raise ValueError(f"expected x [R, {self.shape}] and one grid index per row, got x {tuple(x.shape)}, t {tuple(t.shape)}")
        if cond is not None:
            cond = torch.as_tensor(cond, device=x.device).reshape(-1)
            if cond.numel() == 1:
                cond = cond.expand(x.shape[0])
        # Rows in chunks keep the float64 temporaries in cache.
        rows = max(1, self._CHUNK_ELEMENTS // self.dim)
        out = [self.velocity(x[a:a + rows], self.fm_steps[t[a:a + rows]], None if cond is None else cond[a:a + rows])
               for a in range(0, x.shape[0], rows)]
        return torch.cat(out).to(x.dtype)

    # -------------------------------------------------------------------------- sampling and scoring
    def noise(self, n: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
        """n standard-normal latents (the starting points of sampling)."""
        gen = generator(seed)
        n = check_count(n, self.dim * (8 + _itemsize(dtype)), "noises", self.means.device)
        return torch.randn(n, *self.shape, generator=gen, dtype=torch.float64).to(dtype).to(self.means.device)

    def sample_data(self, n: int, seed: int = 0, dtype=torch.float32):
        """n exact data samples and their component labels."""
        gen = generator(seed)
        n = check_count(n, self.dim * (24 + _itemsize(dtype)) + 16, "data samples", self.means.device)
        labels = torch.multinomial(self.weights.cpu(), n, replacement=True, generator=gen).to(self.means.device)
        eps = torch.randn(n, self.dim, generator=gen, dtype=torch.float64).to(self.means.device)
        x = self.means[labels] + self.stds[labels, None] * eps
        return x.reshape(n, *self.shape).to(dtype), labels

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of data samples under the mixture, float64 [n]."""
        xf = x.reshape(x.shape[0], -1).double()
        return torch.logsumexp(self._component_logits(xf, torch.zeros_like(xf[:, :1])), dim=-1)

    def nearest_component(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable component of each data sample [n]."""
        xf = x.reshape(x.shape[0], -1).double()
        return self._component_logits(xf, torch.zeros_like(xf[:, :1])).argmax(-1)
