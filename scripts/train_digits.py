"""Train the bundled digits flow-matching model (oss_fast/zoo/digits_weights.pt) on a CPU.

Rectified flow on all 1797 scikit-learn digits: x_s = (1 - s) x0 + s eps, target v = eps - x0.
About 6 minutes on 2 CPU cores with the defaults:

    python scripts/train_digits.py [--steps 2500] [--out oss_fast/zoo/digits_weights.pt] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from oss_fast.zoo.digits_flow import NULL_LABEL, WEIGHTS_PATH, DigitsFlow, DigitsNet

CONFIG = dict(channels=48, inner_channels=80, emb_dim=128, groups=8)
BATCH = 256
LR = 2e-3
WARMUP_STEPS = 100
EMA_DECAY = 0.999
LABEL_DROPOUT = 0.1


def sample_times(n: int, gen: torch.Generator) -> torch.Tensor:
    """Half uniform, half logit-normal: the middle gets most weight, both ends keep some."""
    uniform = torch.rand(n, generator=gen)
    logit_normal = torch.sigmoid(torch.randn(n, generator=gen))
    return torch.where(torch.rand(n, generator=gen) < 0.5, uniform, logit_normal)


def learning_rate(step: int, steps: int) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < WARMUP_STEPS:
        return LR * (step + 1) / WARMUP_STEPS
    return LR * 0.5 * (1 + math.cos(math.pi * (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS)))


def train(steps: int, seed: int) -> tuple[DigitsNet, float]:
    """Train DigitsNet; returns the EMA network and the mean loss of the last 100 steps."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data, labels = DigitsFlow.data()
    net = DigitsNet(**CONFIG)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.01)
    recent_losses = []
    start = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(data), (BATCH,), generator=gen)
        x0, y = data[idx], labels[idx]
        y = torch.where(torch.rand(BATCH, generator=gen) < LABEL_DROPOUT, NULL_LABEL, y)
        eps = torch.randn(x0.shape, generator=gen)
        s = sample_times(BATCH, gen)
        x_s = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * eps
        loss = (net(x_s, s, y) - (eps - x0)).pow(2).mean()
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps)
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
                  f"lr {learning_rate(step, steps):.2e}  {time.time() - start:.0f}s", flush=True)
    return ema, sum(recent_losses) / len(recent_losses)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--out", default=str(WEIGHTS_PATH))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.time()
    ema, final_loss = train(args.steps, args.seed)
    state = {k: v.float().clone() for k, v in ema.state_dict().items()}
    torch.save({"config": CONFIG, "state_dict": state}, args.out)
    params = sum(p.numel() for p in ema.parameters())
    print(f"final loss {final_loss:.4f}; {params} parameters; {time.time() - start:.0f}s; saved {args.out}")


if __name__ == "__main__":
    main()
