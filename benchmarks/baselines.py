"""Faithful re-implementations of the published search loops, written from DESIGN §3.1 (mode
compat), as the baselines of the benchmarks:

* `search_oss_style`: one batch-1 model call per candidate and a Python loop over targets, the
  cost of each jump a separate float32 tensor expression (the published search_OSS);
* `search_oss_batch_style`: per sample and level one model call on all N candidates, then a
  Python loop over sources with the targets vectorised (the published search_OSS_batch).

Both return one list of grid indices per sample.
"""

from __future__ import annotations

import torch


def _teacher(model, z, cond, kwargs):
    s = model.fm_steps
    N = len(s) - 1
    traj = [None] * (N + 1)
    traj[N] = z
    x = z
    for i in range(N, 0, -1):
        v = model(x, torch.full((z.shape[0],), i, dtype=torch.long, device=z.device), cond, kwargs)
        x = x + v * (s[i - 1] - s[i])
        traj[i - 1] = x
    return torch.stack(traj)


def _trace(from_, K):
    path = [0]
    for k in range(K - 1, -1, -1):
        path.append(int(from_[k][path[-1]]))
    return path[1:]


@torch.no_grad()
def search_oss_style(model, z, cond, student_steps, model_kwargs=None):
    kwargs = model_kwargs or {}
    s = model.fm_steps
    N, K, B = len(s) - 1, student_steps, z.shape[0]
    traj = _teacher(model, z, cond, kwargs)
    out = []
    for b in range(B):
        cond_b = None if cond is None else cond[b:b + 1]
        best = torch.full((N + 1,), float("inf"), device=z.device)
        from_ = [torch.full((N + 1,), N, dtype=torch.long) for _ in range(K + 1)]
        cur = torch.cat([z[b:b + 1]] * (N + 1))
        nxt = cur.clone()
        for k in range(K):
            for i in range(N, 0, -1):
                x_i = cur[i:i + 1]
                v = model(x_i, torch.tensor([i], device=z.device), cond_b, kwargs)
                for j in range(i - 1, -1, -1):
                    x_j = x_i + v * (s[j] - s[i])
                    c = ((x_j - traj[j, b]) ** 2).mean()
                    if c < best[j]:
                        best[j] = c
                        from_[k][j] = i
                        nxt[j] = x_j[0]
            from_[k + 1] = from_[k].clone()
            cur = nxt.clone()
        out.append(_trace(from_, K))
    return out


@torch.no_grad()
def search_oss_batch_style(model, z, cond, student_steps, model_kwargs=None):
    kwargs = model_kwargs or {}
    s = model.fm_steps.to(z.device)
    N, K, B = len(s) - 1, student_steps, z.shape[0]
    traj = _teacher(model, z, cond, kwargs)
    grid = torch.arange(1, N + 1, device=z.device)
    view = (-1,) + (1,) * (z.dim() - 1)
    out = []
    for b in range(B):
        cond_b = None if cond is None else cond[b:b + 1].expand(N)
        best = torch.full((N + 1,), float("inf"), device=z.device)
        from_ = [torch.full((N + 1,), N, dtype=torch.long, device=z.device) for _ in range(K + 1)]
        cur = torch.cat([z[b:b + 1]] * (N + 1))
        nxt = cur.clone()
        for k in range(K):
            v = model(cur[1:], grid, cond_b, kwargs)
            for i in range(N, 0, -1):
                ds = (s[:i] - s[i]).to(z.dtype)
                x_j = cur[i:i + 1] + ds.reshape(view) * v[i - 1:i]
                c = ((x_j - traj[:i, b]) ** 2).flatten(1).mean(1)
                improve = c < best[:i]
                best[:i] = torch.where(improve, c, best[:i])
                from_[k][:i] = torch.where(improve, i, from_[k][:i])
                nxt[:i] = torch.where(improve.reshape(view), x_j, nxt[:i])
            from_[k + 1] = from_[k].clone()
            cur = nxt.clone()
        out.append(_trace([f.cpu() for f in from_], K))
    return out
