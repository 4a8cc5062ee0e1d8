"""A search shared by 1 and 2 torch.distributed ranks (gloo on CPU, NCCL on GPUs), in one run.

    python benchmarks/bench_distributed.py                  # CPU: 1 rank x 2 threads, 1 x 1, 2 x 1
    python benchmarks/bench_distributed.py --device cuda    # needs 2 GPUs for the 2-rank row

Each configuration runs in fresh processes; the time is rank 0's wall time for the search (after
one warm-up model call), and the steps of every configuration are compared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CASES = {"a": "GaussianMixtureFlow(4x32x32), N=200, K=10, B=4, compat",
         "b": "tiny random diffusers DiT (4x16x16), N=100, K=10, B=4, compat"}


def _rank(rank, world, threads, case, device, rendezvous, out):
    import torch.distributed as dist

    import oss_fast
    from bench_search import build

    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    if world > 1:
        if device == "cuda":
            torch.cuda.set_device(rank)
        dist.init_process_group("nccl" if device == "cuda" else "gloo", init_method=f"file://{rendezvous}",
                                rank=rank, world_size=world)
    dev = f"cuda:{rank}" if device == "cuda" else "cpu"
    model, z, cond = build(case, dev)
    model(z[:1], torch.ones(1, dtype=torch.long, device=z.device), None if cond is None else cond[:1], {})
    begin = time.perf_counter()
    res = oss_fast.search(model, z, cond, student_steps=10, mode="compat", aggregate="per_sample", max_batch=64,
                          progress=False)
    seconds = time.perf_counter() - begin
    if rank == 0:
        torch.save(dict(seconds=seconds, steps=res.steps, summary=res.stats.summary()), out)
    if world > 1:
        dist.destroy_process_group()


def measure(world, threads, case, device):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.pt")
        mp.spawn(_rank, args=(world, threads, case, device, os.path.join(tmp, "rdv"), out), nprocs=world, join=True)
        return torch.load(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    configs = [(1, 2), (1, 1), (2, 1)] if args.device == "cpu" else [(1, 1), (2, 1)]
    print(f"# {os.cpu_count()} cores, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, {args.device}")
    for case in args.cases:
        print(f"\ncase {case}: {CASES[case]}")
        print(f"{'ranks':>5} {'threads/rank':>12} {'search s':>9} {'vs 1 rank x 1 thread':>21}  same steps")
        results = {cfg: measure(*cfg, case, args.device) for cfg in configs}
        base = results[(1, 1)]
        for (world, threads), r in results.items():
            print(f"{world:5d} {threads:12d} {r['seconds']:9.2f} {base['seconds'] / r['seconds']:20.2f}x  "
                  f"{r['steps'] == base['steps']}")


if __name__ == "__main__":
    main()
