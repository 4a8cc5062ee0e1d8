"""Train a bundled flow-matching model (oss_fast/zoo/<name>_weights.pt) on a CPU.

Rectified flow: x_s = (1 - s) x0 + s eps, target v = eps - x0, labels dropped to the null label
10% of the time (classifier-free guidance), an EMA of the weights saved.

    python scripts/train_zoo.py digits   # all 1797 scikit-learn digits; about 6.6 min on 2 CPU cores
    python scripts/train_zoo.py patches  # 16x16 patches of scikit-learn's two photographs; about 23 min
    options: [--steps S] [--out FILE] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from oss_fast.zoo import digits_flow, patches_flow
from oss_fast.zoo.unet import SmallUNet

WARMUP_STEPS = 100
EMA_DECAY = 0.999
LABEL_DROPOUT = 0.1


def digits_data():
    data, labels = digits_flow.DigitsFlow.data()

    def draw(n, gen):
        idx = torch.randint(0, len(data), (n,), generator=gen)
        return data[idx], labels[idx]

    return draw


def patches_data():
    photographs = patches_flow.PatchesFlow.photographs()
    return lambda n, gen: patches_flow.PatchesFlow.crops(photographs, n, gen)


MODELS = {  # name: (network config, batch, learning rate, steps, data, default output)
    "digits": (dict(channels=48, inner_channels=80, emb_dim=128, groups=8), 256, 2e-3, 2500, digits_data,
               digits_flow.WEIGHTS_PATH),
    "patches": (dict(channels=48, inner_channels=96, emb_dim=128, groups=8, image_channels=3, labels=3), 64, 2e-3,
                4000, patches_data, patches_flow.WEIGHTS_PATH),
}


def sample_times(n: int, gen: torch.Generator) -> torch.Tensor:
    """Half uniform, half logit-normal: the middle gets most weight, both ends keep some."""
    uniform = torch.rand(n, generator=gen)
    logit_normal = torch.sigmoid(torch.randn(n, generator=gen))
    return torch.where(torch.rand(n, generator=gen) < 0.5, uniform, logit_normal)


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < WARMUP_STEPS:
        return peak * (step + 1) / WARMUP_STEPS
    return peak * 0.5 * (1 + math.cos(math.pi * (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS)))


def train(name: str, steps: int, seed: int) -> tuple[SmallUNet, float]:
    """Train the named model's SmallUNet; returns the EMA network and the mean loss of the last 100 steps."""
    config, batch, peak_lr, _, make_data, _ = MODELS[name]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    draw = make_data()
    net = SmallUNet(**config)
    null_label = net.label_emb.num_embeddings - 1
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=peak_lr, weight_decay=0.01)
    recent_losses = []
    start = time.time()
    for step in range(steps):
        x0, y = draw(batch, gen)
        y = torch.where(torch.rand(batch, generator=gen) < LABEL_DROPOUT, null_label, y)
        eps = torch.randn(x0.shape, generator=gen)
        s = sample_times(batch, gen)
        x_s = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * eps
        loss = (net(x_s, s, y) - (eps - x0)).pow(2).mean()
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps, peak_lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # The EMA warms up so early steps do not freeze the random initialisation into it.
        decay = min(EMA_DECAY, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - decay)
        recent_losses = (recent_losses + [loss.item()])[-100:]
        if (step + 1) % 100 == 0 or step + 1 == steps:
            print(f"step {step + 1}/{steps}  loss(last 100) {sum(recent_losses) / len(recent_losses):.4f}  "
                  f"lr {learning_rate(step, steps, peak_lr):.2e}  {time.time() - start:.0f}s", flush=True)
    return ema, sum(recent_losses) / len(recent_losses)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the model's)")
    parser.add_argument("--out", default=None, help="weights file (default: the bundled one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config, _, _, default_steps, _, default_out = MODELS[args.model]
    torch.set_num_threads(2)
    start = time.time()
    ema, final_loss = train(args.model, args.steps or default_steps, args.seed)
    state = {k: v.float().clone() for k, v in ema.state_dict().items()}
    out = args.out or str(default_out)
    torch.save({"config": config, "state_dict": state}, out)
    params = sum(p.numel() for p in ema.parameters())
    print(f"final loss {final_loss:.4f}; {params} parameters; {time.time() - start:.0f}s; saved {out}")


if __name__ == "__main__":
    main()
