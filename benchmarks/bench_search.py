"""oss_fast against the published search loops, measured in one run on one machine (DESIGN §5).

Cases (issue 3), all in mode compat:
  a   GaussianMixtureFlow(shape=(4, 32, 32)), N=200, K=10, B=4
  b   a tiny random diffusers DiTTransformer2DModel (latent 4x16x16), N=100, K=10, B=4
  xl  a DiT-XL/2-sized random transformer in bfloat16 (latent 4x32x32), N=100, K=10, B=2 (GPU)

Each method runs in a fresh process (so its peak memory is its own), `--repeat` times (the run
with the median total time is reported), warmed up by one model call
per batch size it uses (and one cost op, which compiles the Triton kernel), and reports its total time,
the time spent inside model calls, the number of model calls and rows (padding included), and the process's peak
resident memory (peak GPU memory on CUDA). Methods: "oss_fast" (the default search: refined coarse
to fine), "oss_fast full" (refine=False, the published search's answer) and the two baselines.
Printed: the speed-up of the default over each method, total time / model-call time, whether the
full search's steps equal the baselines', and (on CPU) both PSNRs of each method's median schedule
to the teacher on 16 held-out noises.

    python benchmarks/bench_search.py                 # both cases, all methods
    python benchmarks/bench_search.py --cases a --device cuda
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CASES = {
    "a": dict(model="mixture", N=200, K=10, B=4, max_batch=64),
    "b": dict(model="dit", N=100, K=10, B=4, max_batch=64),
    "xl": dict(model="dit-xl", N=100, K=10, B=2, max_batch=100),
}
METHODS = ("oss_fast", "oss_fast full", "search_OSS_batch-style", "search_OSS-style")


class CallMeter:
    """Counts and times the calls of a velocity model (synchronising on CUDA)."""

    def __init__(self, model):
        self.model = model
        self.fm_steps = model.fm_steps
        self.calls = self.rows = 0
        self.seconds = 0.0

    def __call__(self, x, t, cond, kwargs):
        begin = time.perf_counter()
        v = self.model(x, t, cond, kwargs)
        if v.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - begin
        self.calls += 1
        self.rows += x.shape[0]
        return v


class TinyDiTVelocity:
    """A random-weight diffusers DiT read as a velocity field on a uniform grid (timing only)."""

    def __init__(self, N, device):
        from diffusers import DiTTransformer2DModel

        torch.manual_seed(0)
        self.net = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
                                         num_layers=2, sample_size=16, patch_size=2, num_embeds_ada_norm=1000,
                                         norm_num_groups=32).to(device).eval()
        self.fm_steps = torch.linspace(0, 1, N + 1, dtype=torch.float64, device=device)

    @torch.no_grad()
    def __call__(self, x, t, cond, kwargs):
        timestep = (self.fm_steps[t] * 999).round().long()
        return self.net(x, timestep=timestep, class_labels=cond).sample


def build(case: str, device: str):
    spec = CASES[case]
    g = torch.Generator().manual_seed(0)
    if spec["model"] == "mixture":
        from oss_fast.zoo import GaussianMixtureFlow

        model = GaussianMixtureFlow(shape=(4, 32, 32), teacher_steps=spec["N"], device=device)
        return model, model.noise(spec["B"], seed=0).to(device), None
    labels = torch.randint(0, 1000, (spec["B"],), generator=g).to(device)
    if spec["model"] == "dit-xl":
        from dit_xl import DiTXLVelocity

        z = torch.randn(spec["B"], 4, 32, 32, generator=g).to(device, torch.bfloat16)
        return DiTXLVelocity(spec["N"], device), z, labels
    model = TinyDiTVelocity(spec["N"], device)
    z = torch.randn(spec["B"], 4, 16, 16, generator=g).to(device)
    return model, z, labels


def warm_up(model, z, cond, batch_sizes):
    """One call per batch size (library initialisation, kernel selection) and one cost op (Triton
    compilation), so that every method is timed warm; each runs in a fresh process."""
    from oss_fast.ops import euler_costs

    for n in sorted(batch_sizes):
        rows = torch.zeros(n, dtype=torch.long, device=z.device)
        model(z[rows], rows + 1, None if cond is None else cond[rows], {})
    flat = z.reshape(z.shape[0], -1)
    grid = torch.ones(z.shape[0], dtype=torch.long, device=z.device)
    euler_costs(flat, flat, flat[None], torch.arange(z.shape[0], device=z.device), grid,
                model.fm_steps.double()[:2].contiguous(), float32=False)
    if z.is_cuda:
        torch.cuda.synchronize()


def run_method(case: str, method: str, device: str, max_batch: int | None, repeat: int):
    import oss_fast
    from baselines import search_oss_batch_style, search_oss_style

    torch.set_grad_enabled(False)
    model, z, cond = build(case, device)
    K, N = CASES[case]["K"], CASES[case]["N"]
    max_batch = max_batch or CASES[case]["max_batch"]
    warm_up(model, z, cond, {1, z.shape[0], N, max_batch})
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runs = []
    for _ in range(repeat):
        meter = CallMeter(model)
        candidate_rows = None
        begin = time.perf_counter()
        if method.startswith("oss_fast"):  # the default (refined), or the full search the baselines make
            res = oss_fast.search(meter, z, cond, student_steps=K, mode="compat", aggregate="per_sample",
                                  float32=False, max_batch=max_batch, progress=False, refine=method == "oss_fast")
            steps, candidate_rows = res.steps, res.stats.candidate_rows
        elif method == "search_OSS-style":
            steps = search_oss_style(meter, z, cond, K)
        else:
            steps = search_oss_batch_style(meter, z, cond, K)
        total = time.perf_counter() - begin
        runs.append(dict(steps=steps, total=total, model=meter.seconds, calls=meter.calls, rows=meter.rows,
                         candidate_rows=candidate_rows))
        if method.startswith("oss_fast"):
            print(f"{method} stats: {res.stats.summary()}", flush=True)
    median = sorted(runs, key=lambda r: r["total"])[len(runs) // 2]
    median["peak"] = (torch.cuda.max_memory_allocated() if device == "cuda"
                      else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    median["all_totals"] = [r["total"] for r in runs]
    return median


def print_quality(case: str, results: dict, samples: int = 16) -> None:
    """Each method's median schedule (the published cal_medium rule) against the N-step teacher on
    held-out noises: both PSNRs (oss_fast.report.errors)."""
    import oss_fast
    from oss_fast.report import errors, teacher_samples

    torch.set_grad_enabled(False)
    model, z, cond = build(case, "cpu")
    g = torch.Generator().manual_seed(1)
    z = torch.randn((samples,) + tuple(z.shape[1:]), generator=g).to(z.dtype)
    cond = None if cond is None else torch.randint(0, 1000, (samples,), generator=g)
    teacher = teacher_samples(model, z, cond)
    for m, r in results.items():
        schedule = oss_fast.cal_medium(r["steps"])
        e = errors(model, z, cond, teacher, schedule)
        print(f"{m:24} schedule {schedule}: psnr {e['psnr']:.2f}, mean psnr {e['mean_psnr']:.2f} "
              f"({samples} held-out noises)")


def measure(case, method, device, max_batch, repeat):
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(run_method, case, method, device, max_batch, repeat).result()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["a", "b"], choices=list(CASES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="rows per model call for oss_fast (default: the case's, 64 or 100)")
    parser.add_argument("--repeat", type=int, default=3, help="searches per method; the median is reported")
    args = parser.parse_args(argv)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"# machine: {where}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    for case in args.cases:
        spec = CASES[case]
        print(f"\ncase {case}: {spec}")
        results = {m: measure(case, m, args.device, args.max_batch, args.repeat) for m in args.methods}
        memory = "peak GPU MiB" if args.device == "cuda" else "peak RSS MiB"
        print(f"{'method':24} {'total s':>9} {'model s':>9} {'total/model':>11} {'calls':>7} {'rows':>7} {memory:>13} {'speed-up':>9}")
        ours = results.get("oss_fast")
        for m, r in results.items():
            speedup = f"{r['total'] / ours['total']:.1f}x" if ours else "-"
            print(f"{m:24} {r['total']:9.2f} {r['model']:9.2f} {r['total'] / r['model']:11.2f} {r['calls']:7d} "
                  f"{r['rows']:7d} {r['peak'] / 2**20:13.0f} {speedup:>9}")
        full = results.get("oss_fast full")
        if full:
            for m, r in results.items():
                if m not in ("oss_fast", "oss_fast full"):
                    print(f"oss_fast full: steps identical to {m}: {r['steps'] == full['steps']}")
        for m in ("oss_fast", "oss_fast full"):
            if m in results:
                rows = results[m]["candidate_rows"] / spec["B"]
                print(f"{m} candidate rows per sample: {rows:.0f} + teacher {spec['N']} (published: "
                      f"{spec['N'] * (spec['K'] + 1)} in all)")
        if args.device == "cpu":
            print_quality(case, results)


if __name__ == "__main__":
    main()
