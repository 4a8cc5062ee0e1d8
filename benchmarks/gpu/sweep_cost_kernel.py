"""Times the Triton cost kernel over a few block configurations (and checks each against the torch
op), to choose default_config() on a GPU. python benchmarks/gpu/sweep_cost_kernel.py"""

import sys
import time

import torch

sys.path.insert(0, "benchmarks/gpu")
from cost_roofline import problem  # noqa: E402

from oss_fast.ops import euler_costs_torch  # noqa: E402
from oss_fast.ops.euler_cost_triton import euler_costs_triton  # noqa: E402

CONFIGS = [(16, 16, 8, 4), (16, 16, 16, 8), (8, 32, 8, 4), (32, 32, 4, 8), (16, 32, 8, 8), (32, 16, 8, 8),
           (8, 8, 32, 4), (4, 16, 64, 4)]


def bench(fn, repeat=3):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        begin = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - begin)
    return best


check = problem(4096, "cuda", torch.float32, N=60)
expected = euler_costs_torch(*check)
for D in (4096, 65536, 2097152):
    args = problem(D, "cuda", torch.float32)
    for BR, BJ, BD, warps in CONFIGS:
        got = euler_costs_triton(*check, blocks=(BR, BJ, BD), num_warps=warps)
        ok = torch.allclose(got, expected, rtol=1e-12, atol=0) and torch.equal(torch.isinf(got), torch.isinf(expected))
        ms = bench(lambda: euler_costs_triton(*args, blocks=(BR, BJ, BD), num_warps=warps)) * 1e3
        print(f"D={D:8d} BR={BR:2d} BJ={BJ:2d} BD={BD:2d} warps={warps}: {ms:9.3f} ms {'ok' if ok else 'WRONG'}", flush=True)
