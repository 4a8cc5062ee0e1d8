"""The `oss-fast` command: search, sample, compare, export, presets, quality, info.

    oss-fast search                       # the bundled default model; outputs in a folder it prints
    oss-fast search --model gaussian_mixture --student-steps 5 --shift 3
    oss-fast search --model mypkg.models:make_model      # any factory returning a velocity model
    oss-fast compare --model digits a.json b.json
    oss-fast sample --model digits --schedule a.json
    oss-fast export a.json --format comfyui --steps 20     # SIGMAS; also json, diffusers
    oss-fast export flux --format diffusers --steps 20    # a published preset, by name
    oss-fast presets                      # the published schedules
    oss-fast quality                      # the quality tables (docs/quality.md)
    oss-fast info
    torchrun --nproc_per_node=2 -m oss_fast search ...   # the search's model calls shared by 2 ranks

Bad input (unknown model, unreadable file, step counts out of range, an unusable --device, --out
or --checkpoint) is reported in one line on stderr with exit code 2, before any long work; Ctrl-C
in one line with exit code 130, removing the output folder the run created if it is still empty.
Every file is written atomically (oss_fast.files); a run holds its --out folder, so a second run on
the same folder is refused rather than mixing its files in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from . import Schedule, build_info, presets, sample, search
from .files import folder_lock, write_atomic
from .progress import progress
from .quality import quality_table, transfer_table
from .report import compare, image_grid, plots_missing, steps_on
from .solvers import SOLVERS
from .engine.checkpoint import check_checkpoint_path
from .engine.memory import search_bytes
from .engine.options import AGGREGATES, MODES, OPTION_DEFAULTS, check_options
from .engine.refine import row_budget
from .models.memory import gib
from .zoo import BUNDLED, DEFAULT_MODEL, load_model, noises


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)  # --student-step is a typo, not an option

    def error(self, message):  # one line, exit 2 (argparse prints the usage too)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def whole_number_type(low: int, high: int | None = None, high_text: str | None = None):
    """An argparse type: a whole number in [low, high] (no upper bound when high is None)."""
    bounds = f">= {low}" if high is None else f"in [{low}, {high_text or high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {bounds}, got {text!r}")
        return value
    return parse


positive_int = whole_number_type(1)
count_int = whole_number_type(0)
seed_int = whole_number_type(0, 2**63 - 1, "2**63 - 1")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


# the API's argument names as the user typed them on the command line
FLAG_OF = {"student_steps": "--student-steps", "teacher_steps": "--teacher-steps", "max_batch": "--max-batch",
           "aggregate": "--aggregate"}


def as_typed(message: str) -> str:
    """An API error message with its argument names replaced by the options that set them."""
    for name, option in FLAG_OF.items():
        message = re.sub(rf"(?<![-\w]){re.escape(name)}\b", option, message)
    return re.sub(r"mode='(\w+)'|mode '(\w+)'", lambda m: f"--mode {m.group(1) or m.group(2)}", message)


def checked_device(text: str) -> str:
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {text!r} is not a device (cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"--device {text}: no such CUDA GPU is visible here")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {text}: only cpu and cuda are supported")
    return text


def output_folder(path: Path, args) -> Path:
    """--out, created now (before any long work), checked writable and held for the rest of the run
    (a second run on it is refused); the folders created here are removed at the end of the run if
    they are still empty (Ctrl-C or an error before any output). Under torchrun, rank 0 writes the
    outputs, so it alone holds the folder and cleans up."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} exists and is not a folder")
    created = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {path}: cannot create it ({err.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path} is not writable")
    if os.environ.get("RANK", "0") == "0":
        args.run_stack.callback(remove_if_empty, created)
        args.run_stack.enter_context(folder_lock(path))
    return path


def remove_if_empty(folders) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (the run's outputs), or gone: nothing more to remove above it
            return


def output_file(text: str | None, option: str) -> Path | None:
    """A file option (--out of export and quality): its folder must exist, and it must not be one."""
    if text is None:
        return None
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder, not a file")
    if not path.absolute().parent.is_dir():
        raise ValueError(f"{option} {path}: the folder {path.absolute().parent} does not exist")
    return path


def model_of(args, device: str):
    """The --model, built on the --teacher-steps grid of --shift."""
    try:
        return load_model(args.model, args.teacher_steps, args.shift, device)
    except SystemExit as err:  # a factory that exits would end the command with its code and no word
        raise ValueError(f"--model {args.model}: the factory called sys.exit({err.code!r}) instead of returning "
                         "a model") from None


def model_name(spec: str) -> str:
    return spec.replace(":", "-").replace(".", "-")


def distributed_rank(device: str) -> tuple[int, str, bool]:
    """Under torchrun (WORLD_SIZE > 1): joins the process group (NCCL for CUDA, else gloo) and
    returns (rank, this rank's device, whether it joined here); otherwise (0, device, False)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, device, False
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), device, joined


def print_comparison(comparison) -> None:
    print(comparison)
    if comparison.note:
        print(f"no pictures: {comparison.note}")


def what_ran(res, args, refine: bool) -> str:
    """Which search ran, why, and what it cost against the published search."""
    st = res.stats
    spent = st.teacher_rows + st.candidate_rows
    cost = (f"model rows: {spent} = {spent / st.published_rows:.0%} of the {st.published_rows} the published "
            f"search spends on these inputs (N (K + 1) per noise)")
    if res.guard is not None:
        return (f"solver {res.solver}; the multistep default: the Euler search's schedule, the solver's refined searches "
                f"begun around it, uniform and time-shifted steps, judged on fresh noises by the guard "
                f"(--no-validate to skip it):\n{res.guard.summary()}\n{cost}, the guard's validation included")
    why = {"median": "the published cal_medium rule over per-noise paths",
           "joint": "one decision for all noises on their mean error",
           "joint_rms": "one decision for all noises on their mean RMS error",
           "per_sample": "one path per noise"}[res.aggregate]
    if res.mode == "teacher":
        how = "the teacher's own jumps"
    elif refine and st.rows_per_pass:
        how = (f"refined coarse to fine (the default): a pass on every {st.refine_stride}th grid index, then "
               f"{len(st.rows_per_pass) - 1} pass(es) within ±{st.refine_band} indices of the last path; --full for "
               f"the full search")
    else:
        how = "the full search" + (" (the grid is too short to coarsen)" if refine else "")
    return f"solver {res.solver}; mode {res.mode}, {how}; aggregate {res.aggregate} ({why}).\n{cost}"


# ---------------------------------------------------------------------------- commands

def cmd_search(args) -> int:
    checked_device(args.device)
    if args.pipeline:
        return cmd_search_pipeline(args)
    given = [option for option, value in pipeline_only(args).items() if value is not None]
    if given:
        raise ValueError(f"{given[0]} is for --pipeline searches (a diffusers pipeline folder or hub id)")
    if args.samples is None:
        args.samples = 32
    if args.checkpoint:
        check_checkpoint_path(args.checkpoint)
    elif args.resume:
        raise ValueError("--resume needs --checkpoint FILE")
    if (args.full or args.mode == "teacher") and (args.stride or args.band):
        why = "--full" if args.full else "--mode teacher (it evaluates no candidates, so it does not refine)"
        raise ValueError(f"--stride and --band shape the refinement: leave them out with {why}")
    refine = args.mode != "teacher" and not args.full
    solver = "" if args.solver == "euler" else f"-{args.solver}"
    out = output_folder(Path(args.out or f"oss_fast_out/{model_name(args.model)}-N{args.teacher_steps}"
                                         f"-K{args.student_steps}{solver}-{args.mode}"
                                         f"{'-' + args.aggregate if args.aggregate else ''}{'' if refine else '-full'}"), args)
    rank, device, joined = distributed_rank(args.device)
    model = model_of(args, device)
    z, cond = noises(model, args.samples, args.seed)
    res = search(model, z, cond, checkpoint=args.checkpoint, resume=args.resume, **search_options(args, refine))
    if joined:  # leave the group together: a rank exiting with it open can abort the others
        dist.barrier()
        dist.destroy_process_group()
    if rank != 0:  # every rank holds the same result; one writes it
        return 0
    meta = dict(samples=args.samples, shift=args.shift)
    print(f"model {args.model}: teacher steps {args.teacher_steps}, student steps {args.student_steps}, "
          f"{args.samples} search noise(s)")
    print(what_ran(res, args, refine))
    if res.aggregate == "per_sample":
        return save_per_sample(res, model, args, out, meta)
    schedule = Schedule.from_search(res, model, seeds=[args.seed], metadata=meta)
    schedule.save(out / "schedule.json")
    print(f"schedule (grid indices): {schedule.indices}")
    print(f"sigmas: {[round(s, 5) for s in schedule.sigmas]}")
    print(f"search: {res.stats.summary()}")
    if not args.no_compare:
        print_comparison(compare(model, {"oss": schedule}, out, samples=args.eval_samples, seed=args.seed + 1000,
                                 show=not args.no_progress))
    print(f"outputs written to {out.resolve()}")
    return 0


def pipeline_only(args) -> dict:
    """The search options that only a --pipeline search takes, as given (None: not given)."""
    return {"--prompt": args.prompt, "--prompts": args.prompts, "--negative-prompt": args.negative_prompt,
            "--class-labels": args.class_labels, "--height": args.height, "--width": args.width,
            "--frames": args.frames, "--guidance": args.guidance, "--dtype": args.dtype}


def pipeline_request(args):
    """The prompts and sizes asked for, checked before the pipeline is loaded."""
    from .integrations.pipelines import Request

    prompts = list(args.prompt or [])
    if args.prompts:
        try:
            lines = Path(args.prompts).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"--prompts {args.prompts}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
        prompts += [line.strip() for line in lines if line.strip()]
        if not prompts:
            raise ValueError(f"--prompts {args.prompts} holds no prompt (one per line)")
    for option in ("--model", "--shift"):
        if getattr(args, option[2:]) is not None:
            raise ValueError(f"{option} is for the bundled models: a --pipeline search uses the pipeline's own "
                             f"network and scheduler")
    return Request(prompts=prompts, negative_prompt=args.negative_prompt, class_labels=args.class_labels,
                   height=args.height, width=args.width, frames=args.frames, guidance=args.guidance,
                   samples=args.samples, seed=args.seed)


def cmd_search_pipeline(args) -> int:
    """oss-fast search --pipeline: a diffusers pipeline's network, the user's prompts, a schedule for it."""
    from .integrations import pipelines

    request = pipeline_request(args)
    pipelines.check_source(args.pipeline)  # before the output folder and the minutes of loading
    source = str(Path(args.pipeline).resolve()) if os.path.isdir(args.pipeline) else args.pipeline  # recipe.py's
    refine = args.mode != "teacher" and not args.full
    solver = "" if args.solver == "euler" else f"-{args.solver}"
    name = model_name(Path(args.pipeline).name if os.path.isdir(args.pipeline) else args.pipeline.replace("/", "-"))
    out = output_folder(Path(args.out or f"oss_fast_out/{name}-N{args.teacher_steps}-K{args.student_steps}{solver}"
                                         f"-{args.mode}{'' if refine else '-full'}"), args)
    checkpoint = args.checkpoint or str(out / "search.ckpt")
    check_checkpoint_path(checkpoint)
    args.resume_hint = f"the checkpoint is {checkpoint}: rerun the same command with --resume to continue"
    dtype_name = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    dtype = pipelines.DTYPES[dtype_name]
    print(f"loading {args.pipeline} ({dtype_name} on {args.device}) ...", flush=True)
    pipe = pipelines.load_pipeline(args.pipeline, dtype, args.device)
    job = pipelines.prepare(pipe, source, request, args.teacher_steps)
    B = len(job.z)
    options = search_options(args, refine)
    print_plan(job, args, B, options)
    res = search(job.model, job.z, job.cond, model_kwargs=job.model_kwargs, checkpoint=checkpoint, resume=args.resume,
                 **options)
    print(what_ran(res, args, refine))
    if res.aggregate == "per_sample":
        raise ValueError("--aggregate per_sample makes one path per noise, not a schedule for a pipeline: use median, "
                         "joint or joint_rms")
    meta = dict(pipeline=job.pipeline_class, source=source, dtype=str(dtype).replace("torch.", ""),
                samples_per_prompt=job.rows_per_prompt, **job.settings)
    schedule = Schedule.from_search(res, job.model, seeds=[args.seed], metadata=meta)
    schedule.save(out / "schedule.json")
    print(f"schedule (grid indices): {schedule.indices}")
    print(f"sigmas: {[round(s, 5) for s in schedule.sigmas]}")
    print(f"search: {res.stats.summary()}")
    written = ["schedule.json", "recipe.py"] + write_exports(schedule, out)
    write_atomic(out / "recipe.py", pipelines.recipe(job, schedule))
    if not args.no_compare and args.preview:
        written += write_preview(job, schedule, out, args)
    print(f"outputs written to {out.resolve()}: {', '.join(written)} (and search.ckpt, the search's checkpoint)"
          if not args.checkpoint else f"outputs written to {out.resolve()}: {', '.join(written)}")
    return 0


def search_options(args, refine: bool) -> dict:
    """oss_fast.search's options from `oss-fast search`'s flags (a flag left out passes the option's default)."""
    return dict(student_steps=args.student_steps, mode=args.mode, solver=args.solver, aggregate=args.aggregate,
                refine=refine, stride=args.stride, band=args.band, max_batch=args.max_batch,
                validate=False if args.no_validate else None, progress=not args.no_progress)


def print_plan(job, args, B: int, options: dict) -> None:
    """What the search will do and cost, before its first model call: model rows, a time estimate
    from one timed model call, the search's own buffers and on CUDA the memory held and at the peak
    of a call."""
    N, K = args.teacher_steps, args.student_steps
    settings = ", ".join(f"{k} {v}" for k, v in job.settings.items()
                         if k in ("size", "frames", "guidance", "shift") and v is not None)
    print(f"pipeline {job.pipeline_class} ({job.family}): {settings}; {len(job.prompts)} "
          f"{'class label(s)' if job.family == 'dit' else 'prompt(s)'} x {job.rows_per_prompt} noise(s) = {B} search "
          f"noises; teacher grid of N = {N} steps, K = {K} student steps, solver {args.solver}")
    opts = check_options(job.model, job.z, **options)
    published = N * (K + 1) * B
    if opts.mode == "teacher":
        rows, how = N * B, "the teacher alone (mode teacher)"
    elif not opts.refine:
        rows, how = published, "the full search, as published"
    elif opts.validate:
        rows, how = published, "the refined searches and the guard, within the published rows"
    else:
        rows, how = row_budget(N, K, B, opts.max_rows), "the refined search, stopped at half the published rows"
    print(f"model rows: at most about {rows} ({how}) of the published search's {published} = N (K + 1) x {B}")
    buffers = sum(part[1] for part in search_bytes(opts, B, tuple(job.z.shape[1:]), job.z.element_size()))
    print(f"the search's own buffers (teacher trajectory, states, costs): about {gib(buffers)} on {job.z.device}")
    chunk = min(B, opts.chunk)
    z, cond, kwargs = job.rows(slice(0, chunk))
    cuda = job.z.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.no_grad():
        job.model(z, torch.full((chunk,), N, dtype=torch.long, device=z.device), cond, kwargs)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(f"one model call of {chunk} rows took {seconds:.2f} s (a first call: warm-up included): the search will "
          f"take at most about {duration(seconds / chunk * rows)}")
    if cuda:
        print(f"CUDA memory: {torch.cuda.memory_allocated() / 2**30:.1f} GiB held (network, VAE, inputs), "
              f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB at the peak of a {chunk}-row call "
              f"(--max-batch lowers it), of {torch.cuda.get_device_properties(z.device).total_memory / 2**30:.0f} GiB")


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def write_exports(schedule: Schedule, out: Path) -> list[str]:
    """ComfyUI's SIGMAS (flow schedules) and the diffusers call arguments (Euler flow schedules)."""
    written = []
    if schedule.parameterization == "flow":
        write_atomic(out / "comfyui_sigmas.json", json.dumps(schedule.to_sigmas().tolist()) + "\n")
        written.append("comfyui_sigmas.json")
        if schedule.solver == "euler":
            write_atomic(out / "diffusers.json", json.dumps(schedule.diffusers_export(), indent=1) + "\n")
            written.append("diffusers.json")
    return written


PREVIEW_SEED = 1000  # held-out noises: seed + 1000, as the comparison's


def write_preview(job, schedule: Schedule, out: Path, args) -> list[str]:
    """The first prompts' images from fresh noises: the teacher (N Euler steps), our schedule and the
    pipeline's own schedule at the same step count and solver, decoded by the pipeline's VAE, with
    each image's PSNR to the teacher's (preview.json, preview.png)."""
    count = min(args.preview, len(job.prompts))
    index = torch.arange(count) * job.rows_per_prompt
    _, cond, kwargs = job.rows(index.to(job.z.device))
    z = job.noise(count, args.seed + PREVIEW_SEED)
    K, N = len(schedule), args.teacher_steps
    # rows: the teacher's N Euler steps; this schedule; the pipeline's own K-step schedule (same solver)
    runs = {"teacher": (job.model, list(range(1, N + 1)), "euler"), "oss": (job.model, schedule, schedule.solver),
            "default": (job.default_model(K), list(range(1, K + 1)), schedule.solver)}
    images = {}
    with progress(len(runs), "preview", enabled=not args.no_progress) as bar:
        for name, (model, steps, solver) in runs.items():
            with torch.no_grad():
                images[name] = job.decode(sample(model, z, steps, cond, solver=solver, model_kwargs=kwargs))
            bar.update()
    psnrs = {name: [round(10 * math.log10(1 / max(float(((im - ref) ** 2).mean()), 1e-20)), 2)
                    for im, ref in zip(imgs, images["teacher"])] for name, imgs in images.items() if name != "teacher"}
    report = dict(prompts=job.prompts[:count], teacher_steps=N, steps=K, solver=schedule.solver,
                  psnr_to_teacher=psnrs)
    write_atomic(out / "preview.json", json.dumps(report, indent=1) + "\n")
    print(f"preview: PSNR (dB) of each image to the teacher's ({N} Euler steps), {count} prompt(s):")
    for name, what in (("oss", f"this schedule, {K} {schedule.solver} steps"),
                       ("default", f"the pipeline's own {K}-step schedule, {schedule.solver}")):
        print(f"  {what}: {', '.join(f'{v:.1f}' for v in psnrs[name])}")
    if plots_missing():
        print(f"no preview.png: {plots_missing()}")
        return ["preview.json"]
    image_grid(images, out / "preview.png", lambda x: x, reference="teacher", cell=2.0)  # a few large images
    return ["preview.json", "preview.png"]


def save_per_sample(res, model, args, out: Path, meta: dict) -> int:
    """--aggregate per_sample: every noise's path as its own schedule file, and no single schedule."""
    for i, steps in enumerate(res.steps):
        Schedule.from_search(res, model, sample=i, seeds=[args.seed], metadata=dict(meta, noise=i)).save(
            out / f"schedule-noise-{i:03d}.json")
    distinct = len({tuple(steps) for steps in res.steps})
    print(f"{len(res.steps)} schedules, one per search noise ({distinct} distinct paths), written as "
          f"schedule-noise-000.json ... schedule-noise-{len(res.steps) - 1:03d}.json; per_sample makes no single "
          "schedule.json and no comparison: compare some with oss-fast compare FILE..., or search with "
          "--aggregate median/joint/joint_rms for one schedule")
    print(f"search: {res.stats.summary()}")
    print(f"outputs written to {out.resolve()}")
    return 0


def cmd_compare(args) -> int:
    checked_device(args.device)
    schedules = {Path(p).stem if Path(p).stem != "schedule" else Path(p).parent.name: load_schedule(p)
                 for p in args.schedules}
    out = output_folder(Path(args.out or "oss_fast_out/compare"), args)
    model = model_of(args, args.device)
    for name, schedule in schedules.items():
        check_fits(name, schedule, model)
    print_comparison(compare(model, schedules, out, samples=args.samples, seed=args.seed))
    print(f"outputs written to {out.resolve()}")
    return 0


SAMPLE_BATCH = 256  # noises per batch: the model's activations are one batch's however many samples are asked for
PICTURED = 16  # samples.png shows the first ones


def cmd_sample(args) -> int:
    checked_device(args.device)
    schedule = load_schedule(args.schedule)
    out = output_folder(Path(args.out or "oss_fast_out/samples"), args)
    model = model_of(args, args.device)
    check_fits(args.schedule, schedule, model)
    z, cond = noises(model, args.samples, args.seed)
    steps = steps_on(schedule, model.fm_steps)
    x = torch.empty_like(z)
    with progress(args.samples, "sampling", enabled=not args.no_progress) as bar:
        for start in range(0, args.samples, SAMPLE_BATCH):
            rows = slice(start, start + SAMPLE_BATCH)
            part = cond[rows] if cond is not None and len(cond) == args.samples else cond
            x[rows] = sample(model, z[rows], steps, part, solver=schedule.solver)
            bar.update(len(x[rows]))
    write_atomic(out / "samples.pt", lambda f: torch.save(x, f))
    if hasattr(model, "to_images"):
        if plots_missing():
            print(f"no samples.png: {plots_missing()}")
        else:
            image_grid({"samples": x[:PICTURED]}, out / "samples.png", model.to_images)
    print(f"{args.samples} samples along {steps} ({schedule.solver}) written to {out.resolve()}")
    return 0


def cmd_quality(args) -> int:
    out = output_file(args.out, "--out")  # before the table, which takes minutes
    common = dict(teacher_steps=args.teacher_steps, ks=args.ks, eval_samples=args.eval_samples,
                  show=not args.no_progress)
    common.update({k: v for k, v in dict(models=args.models, search_samples=args.search_samples).items()
                   if v is not None})
    if args.solvers and args.transfer:
        raise ValueError("--solvers and --transfer are two tables: ask for one")
    table = transfer_table(**common) if args.transfer else quality_table(**common, solvers=args.solvers)
    print(table)
    if out:
        write_atomic(out, table + "\n")
    return 0


def cmd_info(args) -> int:
    print(json.dumps(build_info(), indent=2))
    return 0


def cmd_presets(args) -> int:
    rows = presets.describe()
    print(f"{'name':8} {'model':12} {'steps':>5} {'solver':6} {'shift':>5}  source")
    for r in rows:
        shift = "-" if r["shift"] is None else f"{r['shift']:g}"
        print(f"{r['name']:8} {r['model']:12} {r['steps']:>5} {r['solver']:6} {shift:>5}  {r['source']}")
    print("export one with: oss-fast export NAME --format json|comfyui|diffusers [--steps n]")
    return 0


def schedule_or_preset(name: str, steps: int | None) -> Schedule:
    """A schedule file, or a published preset by name (at `steps` by the preset's own rule)."""
    if os.path.isfile(name):
        schedule = Schedule.load(name)
        return schedule if steps is None else schedule.interpolate(steps)
    if name.lower() in presets.names():
        return presets.get(name, steps)
    raise ValueError(f"{name} is neither a schedule file nor a preset ({', '.join(presets.names())})")


def cmd_export(args) -> int:
    out = output_file(args.out, "--out")
    schedule = schedule_or_preset(args.schedule, args.steps)  # the step count first: a shift then snaps it
    if args.size:
        schedule = schedule.for_resolution(*args.size)
    if args.shift is not None:
        if schedule.grid is not None and len(schedule) > len(schedule.grid) - 1:
            raise ValueError(f"--shift snaps the steps onto a grid of the schedule's own {len(schedule.grid) - 1} steps, "
                             f"fewer than --steps {len(schedule)}: export at most {len(schedule.grid) - 1} steps with --shift")
        schedule = schedule.for_shift(args.shift)
    if args.strength is not None and args.format != "diffusers":  # diffusers: the export keeps the tail itself
        schedule = schedule.for_denoise(args.strength)
    if args.format == "json":
        text = json.dumps(schedule.to_dict(), indent=1)
    elif args.format == "comfyui":
        if schedule.parameterization != "flow":
            raise ValueError("a DDPM-family (DiT) schedule has no ComfyUI flow SIGMAS")
        text = json.dumps(schedule.sigmas)
    else:
        text = json.dumps(schedule.diffusers_export(strength=args.strength), indent=1)
    if out:
        write_atomic(out, text + "\n")
        print(f"{args.format} export of {args.schedule} ({len(schedule)} steps, {schedule.solver}) written to {out}")
    else:
        print(text)
    return 0


def image_size(text: str) -> list[int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise argparse.ArgumentTypeError(f"must be HEIGHTxWIDTH in pixels, e.g. 1024x768, got {text!r}")
    return [int(match[1]), int(match[2])]


def load_schedule(path):
    if not os.path.isfile(path):
        raise ValueError(f"cannot read schedule file {path}")
    return Schedule.load(path)


def check_fits(name: str, schedule: Schedule, model) -> None:
    """A schedule with grid indices must have been made on the --model's grid, for that model."""
    if schedule.indices is None:  # sigmas only: snapped onto the model's grid when used
        return
    if schedule.grid is not None and len(schedule.grid) != len(model.fm_steps):
        raise ValueError(f"schedule {name} was searched on a {len(schedule.grid) - 1}-step grid; "
                         f"use --teacher-steps {len(schedule.grid) - 1}")
    # metadata is free-form provenance: what it records is used only where it has the expected type
    grid = recorded(schedule.metadata, "grid", dict) or {}
    if schedule.indices_on(model.fm_steps) is None:
        shift = recorded(grid, "shift", float)
        hint = f"; use --shift {shift:g}" if recorded(grid, "kind", str) == "shifted" and shift else ""
        raise ValueError(f"schedule {name} was made on another grid than --model's "
                         f"({recorded(grid, 'kind', str) or 'custom'} grid){hint}")
    made_for, given = recorded(schedule.metadata, "model", str), getattr(model, "name", None)
    if made_for and isinstance(given, str) and made_for.split("(")[0] != given.split("(")[0]:
        raise ValueError(f"schedule {name} was searched for model {made_for.split('(')[0]}, not {given.split('(')[0]}")


def recorded(metadata: dict, key: str, kind: type):
    """metadata[key] if it is of the kind (float: a finite real number), else None."""
    value = metadata.get(key)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else None
    return value if isinstance(value, kind) else None


def default_threads() -> int:
    """$OMP_NUM_THREADS when set, else the cores idle now: on a busy machine torch's default of one
    thread per core stalls (a first search 10-25x slower on a 2-core machine with one other job)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy)))


def class_labels(text: str) -> list[int]:
    try:
        labels = [int(part) for part in text.split(",")]
    except ValueError:
        labels = None
    if not labels or any(label < 0 for label in labels):
        raise argparse.ArgumentTypeError(f"must be class numbers >= 0 separated by commas, e.g. 1,207,360, got {text!r}")
    return labels


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------- parser

def parser() -> argparse.ArgumentParser:
    p = Parser(prog="oss-fast", description="Optimal Stepsize Search for diffusion and flow-matching samplers")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    def model_options(q, teacher_steps=100):
        q.add_argument("--model", help=f"a bundled model ({', '.join(BUNDLED)}) or module:factory "
                                       f"(default {DEFAULT_MODEL})")
        q.add_argument("--teacher-steps", type=positive_int, default=teacher_steps,
                       help=f"N, the model's grid (default {teacher_steps})")
        q.add_argument("--shift", type=positive_float, help="grid shift a: s' = a s / (1 + (a - 1) s) (default 1)")
        q.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")
        q.add_argument("--device", default=_default_device(), help="cpu or cuda (default: cuda if available)")
        threads_option(q)

    def threads_option(q):
        q.add_argument("--threads", type=positive_int,
                       help="torch's CPU threads (default: $OMP_NUM_THREADS if set, else the cores idle now)")

    s = sub.add_parser("search", help="search a schedule, save it, compare it with uniform steps")
    model_options(s)
    pipe = s.add_argument_group("a diffusers pipeline (FLUX, SD3, Wan text-to-video, DiT) instead of --model")
    pipe.add_argument("--pipeline", metavar="PATH_OR_ID",
                      help="a pipeline folder (pipe.save_pretrained) or a hub id in the local cache; never downloads "
                           "(default: none, --model's network)")
    pipe.add_argument("--prompt", action="append", help="a prompt (repeat for more; default: none)")
    pipe.add_argument("--prompts", metavar="FILE", help="prompts, one per line (default: none)")
    pipe.add_argument("--negative-prompt", help="SD3 and Wan's guidance prompt (default: empty)")
    pipe.add_argument("--class-labels", type=class_labels,
                      help="DiT: class labels, e.g. 1,207,360 (default: --samples random labels)")
    pipe.add_argument("--height", type=positive_int, help="image height in pixels (default: the pipeline's)")
    pipe.add_argument("--width", type=positive_int, help="image width in pixels (default: the pipeline's)")
    pipe.add_argument("--frames", type=positive_int, help="Wan: video frames, 4 k + 1 (default 81)")
    pipe.add_argument("--guidance", type=positive_float,
                      help="guidance scale (default: the pipeline's: FLUX 3.5, SD3 7, Wan 5, DiT 4)")
    pipe.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="the network's dtype (default bf16 on cuda, "
                                                                          "fp32 on cpu)")
    pipe.add_argument("--preview", type=count_int, default=4, metavar="N",
                      help="images of the first N prompts: teacher, this schedule, the pipeline's own (default 4; "
                           "0: none)")
    s.add_argument("--student-steps", type=positive_int, default=10, help="K, the student's steps (default 10)")
    s.add_argument("--mode", choices=list(MODES), default=OPTION_DEFAULTS["mode"],
                   help="compat (default: the published search's DP), exact (the paper's Algorithm 1) or teacher "
                        "(no model calls beyond the teacher's)")
    s.add_argument("--full", action="store_true",
                   help="the full search (every grid index at every level, as published) instead of coarse-to-fine "
                        "refinement at under half its model rows (default: refined)")
    s.add_argument("--stride", type=positive_int, help="refinement: the coarse pass's stride (default N / 25)")
    s.add_argument("--band", type=positive_int, help="refinement: the band's half-width (default: the stride)")
    s.add_argument("--solver", choices=list(SOLVERS), default=OPTION_DEFAULTS["solver"],
                   help="the sampler the schedule is for (default euler; dpmpp_2m and unipc as diffusers runs "
                        "them, ab2 = k-diffusion/ComfyUI lms at order 2)")
    s.add_argument("--aggregate", choices=list(AGGREGATES), help="how the noises' paths make one schedule (default median for euler, joint_rms for "
                        "multistep solvers)")
    s.add_argument("--no-validate", action="store_true",
                   help="multistep solvers: skip the guard that judges the searched schedule against the standard "
                        "ones on fresh noises (default: run it, within the published search's model rows)")
    s.add_argument("--samples", type=positive_int,
                   help="noises searched on (default 32); --pipeline: noises per prompt (default 32 in all)")
    s.add_argument("--seed", type=seed_int, default=0, help="seed of the search noises (default 0; held-out: seed + 1000)")
    s.add_argument("--eval-samples", type=positive_int, default=64,
                   help="held-out noises of the comparison (default 64)")
    s.add_argument("--max-batch", type=positive_int, default=None, help="rows per model call (default 32)")
    s.add_argument("--out", help="output folder (default under ./oss_fast_out, named after the model and options)")
    s.add_argument("--no-compare", action="store_true", help="only search and save (default: compare / preview)")
    s.add_argument("--checkpoint", help="write the search state here (after the teacher; with --full also after "
                                        "each level) (default: none; --pipeline: search.ckpt in --out)")
    s.add_argument("--resume", action="store_true", help="continue from --checkpoint (default: start afresh)")
    s.set_defaults(run=cmd_search)

    c = sub.add_parser("compare", help="schedules against the teacher, uniform and shifted steps")
    model_options(c)
    c.add_argument("schedules", nargs="+", help="schedule JSON files")
    c.add_argument("--samples", type=positive_int, default=64, help="held-out noises (default 64)")
    c.add_argument("--seed", type=seed_int, default=1000, help="seed of the noises (default 1000)")
    c.add_argument("--out", help="output folder (default ./oss_fast_out/compare)")
    c.set_defaults(run=cmd_compare)

    m = sub.add_parser("sample", help="sample along a saved schedule")
    model_options(m)
    m.add_argument("--schedule", required=True, help="schedule JSON file")
    m.add_argument("--samples", type=positive_int, default=16, help="samples to draw (default 16)")
    m.add_argument("--seed", type=seed_int, default=1000, help="seed of the noises (default 1000)")
    m.add_argument("--out", help="output folder (default ./oss_fast_out/samples)")
    m.set_defaults(run=cmd_sample)

    e = sub.add_parser("export", help="a schedule file or preset in another convention (json, comfyui, diffusers)")
    e.add_argument("schedule", help="a schedule JSON file, or a preset name (oss-fast presets)")
    e.add_argument("--format", choices=["json", "comfyui", "diffusers"], default="json",
                   help="json: the schedule file; comfyui: SIGMAS (descending flow sigmas ending at 0); diffusers: "
                        "the scheduler that runs its solver and the sigmas/timesteps to pass (default json)")
    e.add_argument("--steps", type=positive_int, help="another step count (log-linear interpolation; at most 10000) (default: the "
                   "schedule's)")
    e.add_argument("--shift", type=positive_float,
                   help="for a grid / pipeline of this time shift: the flow times kept (snapped onto the grid) "
                        "(default: the schedule's own grid)")
    e.add_argument("--size", type=image_size, help="HEIGHTxWIDTH: follow a FLUX-style pipeline's shift to this size (default: the "
                   "size searched at)")
    e.add_argument("--strength", type=float,
                   help="img2img / denoise strength in [0, 1]: the last round(steps x strength) steps, as the ComfyUI "
                        "node keeps them; diffusers: arguments for img2img pipelines (default: text-to-image, all steps)")
    e.add_argument("--out", help="write to this file (default: print)")
    e.set_defaults(run=cmd_export)

    r = sub.add_parser("presets", help="the published OSS schedules (export them with oss-fast export NAME)")
    r.set_defaults(run=cmd_presets)

    q = sub.add_parser("quality", help="the quality table of every mode on the bundled models")
    q.add_argument("--models", nargs="+", default=None, choices=list(BUNDLED),
                   help="default: all bundled models (--transfer: digits and gaussian_mixture)")
    q.add_argument("--teacher-steps", type=positive_int, default=100, help="N, the models' grid (default 100)")
    q.add_argument("--ks", type=positive_int, nargs="+", default=[5, 10], help="student step counts (default 5 10)")
    q.add_argument("--search-samples", type=positive_int, default=None,
                   help="search noises (default 32; --solvers: 16, the protocol of the solver targets)")
    q.add_argument("--eval-samples", type=positive_int, default=64, help="held-out noises (default 64)")
    q.add_argument("--solvers", action="store_true",
                   help="the multistep solvers' table (Euler-OSS vs fixed schedules vs solver-aware searches) "
                        "(default: the modes' table)")
    q.add_argument("--transfer", action="store_true",
                   help="the transfer table: schedules carried between grids of shift 1, 3 and 6 (default: the "
                        "modes' table)")
    q.add_argument("--out", help="also write the table to this file (default: print only)")
    q.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")
    threads_option(q)
    q.set_defaults(run=cmd_quality)

    i = sub.add_parser("info", help="how oss_fast was built and what it can use here")
    i.set_defaults(run=cmd_info)
    return p


def main(argv=None) -> int:
    if os.getcwd() not in sys.path:  # module:factory finds modules of the current folder, as python -m does
        sys.path.insert(0, os.getcwd())
    args = parser().parse_args(argv)
    if hasattr(args, "model") and not getattr(args, "pipeline", None):  # a --pipeline search refuses these two
        args.model = args.model or DEFAULT_MODEL
        args.shift = 1.0 if args.shift is None else args.shift
    if hasattr(args, "threads"):
        torch.set_num_threads(args.threads or default_threads())
    try:
        with contextlib.ExitStack() as args.run_stack:  # the output folder's lock and clean-up
            code = args.run(args)
        sys.stdout.flush()  # here, where a reader that went away is handled, not at exit
        return code
    except BrokenPipeError:  # the reader went away (oss-fast presets | head): stop quietly, as a filter does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141  # 128 + SIGPIPE
    except (ValueError, TypeError, FloatingPointError, OSError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"oss-fast: error: {as_typed(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = (f"; {args.resume_hint}" if getattr(args, "resume_hint", None) else
                  f"; resume with --checkpoint {args.checkpoint} --resume" if getattr(args, "checkpoint", None) else "")
        print(f"oss-fast: interrupted{resume}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
