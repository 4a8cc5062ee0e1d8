"""The fused cost op against the memory-bandwidth and FMA roofline (issue 3, item 6).

One level of a search with N = 200: R = 200 candidate rows (grid indices 1..200 of one sample)
against all J = 201 targets, for latent sizes D = 4096, 65,536 and 2,097,152. Per element of a
(row, target) pair the op does 3 float32 operations (multiply, add, subtract) and 3 float64 ones
(convert, multiply, add). Rooflines:
  memory: every input read once, (2R + J) D elements, plus the R x J float64 output, at the
          bandwidth measured here by a device-to-device copy;
  compute: the float64 work at the card's float64 FMA peak (the binding one on H100/H200).
Prints the time, the % of each roofline and the speed-up over the pure-torch reference op.

    python benchmarks/gpu/cost_roofline.py               # on CUDA
    python benchmarks/gpu/cost_roofline.py --device cpu  # the csrc op on CPU, D = 4096 and 65,536
"""

from __future__ import annotations

import argparse
import time

import torch

from oss_fast.ops import euler_costs, euler_costs_torch

# float64 peaks without tensor cores (FMA counted as 2 flops), from NVIDIA's data sheets (SXM)
FP64_PEAK = {"H100": 34e12, "H200": 34e12, "A100": 9.7e12}


def timed(fn, device, repeat=5):
    fn()
    best = float("inf")
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        begin = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - begin)
    return best


def copy_bandwidth(device):
    a = torch.empty(2**28 if device == "cuda" else 2**25, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    return 2 * a.numel() / timed(lambda: b.copy_(a), device)


def problem(D, device, dtype, N=200):
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(N, D, device=device, generator=g).to(dtype)
    v = torch.randn(N, D, device=device, generator=g).to(dtype)
    targets = torch.randn(N + 1, 1, D, device=device, generator=g).to(dtype)
    rows = torch.arange(1, N + 1, device=device)
    s = torch.linspace(0, 1, N + 1, dtype=torch.float64, device=device)
    return x, v, targets, torch.zeros_like(rows), rows, s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    device, dtype = args.device, getattr(torch, args.dtype)
    sizes = args.sizes or ([4096, 65536, 2097152] if device == "cuda" else [4096, 65536])
    bw = copy_bandwidth(device)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    fp64 = next((v for k, v in FP64_PEAK.items() if k in name), None)
    print(f"# {name}: copy bandwidth {bw / 1e9:.0f} GB/s; float64 peak {fp64 / 1e12 if fp64 else float('nan'):.1f} TFLOP/s; {args.dtype}")
    print(f"{'D':>9} {'ms':>9} {'GB/s (unique)':>14} {'% mem roof':>10} {'fp64 TFLOP/s':>13} {'% fp64 roof':>11} {'vs torch op':>11}")
    for D in sizes:
        args_ = problem(D, device, dtype)
        R, J = args_[0].shape[0], args_[2].shape[0]
        pairs = R * (R + 1) // 2  # row i reaches targets 0..i-1
        fast = timed(lambda: euler_costs(*args_), device)
        ref = timed(lambda: euler_costs_torch(*args_), device, repeat=1) if D <= 65536 else float("nan")
        unique = (2 * R + J) * D * args_[0].element_size() + R * J * 8
        fp64_flops = 2 * pairs * D  # multiply-add of the square (the convert is not counted)
        mem_roof = unique / bw
        comp_roof = fp64_flops / fp64 if fp64 else float("nan")
        print(f"{D:9d} {fast * 1e3:9.3f} {unique / fast / 1e9:14.0f} {100 * mem_roof / fast:10.1f} "
              f"{fp64_flops / fast / 1e12:13.2f} {100 * comp_roof / fast:11.1f} {ref / fast:10.1f}x")


if __name__ == "__main__":
    main()
