"""What a search's own buffers take, from its sizes alone, and the refusal before the first model call
of a search that cannot fit (DESIGN §6: huge sizes fail up front, not after the teacher ran).

The estimate counts what the engine allocates (the model's activations aside: a CUDA out-of-memory
error in a model call halves the chunk, engine/runner.py):

* the teacher trajectory T [(N+1), B, D] (mode teacher: its velocities too) and, with a channel or
  frame selection, its selected copy [(N+1), B, D'] and the selection's indices;
* modes compat/exact: the levels' states [B, (N+1), D] (a multistep solver's history beside them,
  float64), the DP's predecessors [G, K+1, N+1] (G = 1 joint, else B) and, per level, the rows' states
  and velocities [R, D] and costs [R, N+1] float64 (twice: the rows' and the DP's grouped copy; a
  multistep solver's per-pair step matrices besides), R the rows of the largest level: B (N+1) for
  the full search, B times the larger of the coarse sub-grid and a band for refinement;
  refinement's velocity cache; the validation guard's fresh noises sampled along five schedules;
* mode teacher: the jump costs [B, N+1, N+1] float64 (a multistep solver: the Gram matrices and the
  pair costs [B, N+2, N+1, N+1]).
"""

from __future__ import annotations

import math

from ..models.memory import check_fits, gib
from ..solvers import get_solver
from .options import JOINT, SearchOptions
from .refine import default_stride, row_budget

CACHE_KEY_BYTES = 64  # a cached row's key: the sample and its chain of grid indices (Python ints, per index)


def selected_size(shape: tuple, opts: SearchOptions) -> int | None:
    """The latent elements a cost compares (channels/frames selection), None for all of them."""
    if opts.channels == "all" and opts.frames == "all":
        return None
    channels = shape[0] if opts.channels == "all" else int(opts.channels)
    if opts.frames == "all" or len(shape) < 2:
        return channels * math.prod(shape[1:])
    return channels * int(opts.frames) * math.prod(shape[2:])


def search_bytes(opts: SearchOptions, B: int, shape: tuple, itemsize: int) -> list:
    """The search's largest buffers for B latents of `shape` with `itemsize` bytes per element:
    [(what, bytes, what lowers it)], largest first (see the module's docstring)."""
    N, K = opts.teacher_steps, opts.student_steps
    J, D, e = N + 1, math.prod(shape), itemsize
    selected = selected_size(shape, opts)
    Ds = D if selected is None else selected
    H = get_solver(opts.solver).history
    G = 1 if opts.aggregate in JOINT else B
    fewer = f"fewer noises (B = {B}) or a model grid of fewer teacher steps (N = {N})"
    teacher = J * B * D * e * (2 if opts.mode == "teacher" else 1)
    parts = [(f"the teacher trajectory ((N+1) x B x D = {J} x {B} x {D})", teacher, fewer)]
    if opts.mode == "teacher":
        rows = B * min(J, opts.chunk)  # the jump costs are computed a chunk of grid indices at a time
        if H:
            parts.append((f"mode teacher's pair costs with solver {opts.solver} (B x (N+2) x (N+1)^2 = "
                          f"{B} x {J + 1} x {J}^2)", 2 * J * B * D * e + (2 * J * B * Ds + 4 * B * J * J
                                                                       + B * (J + 1) * J * J + 3 * J ** 3) * 8,
                          f"fewer teacher steps (N = {N}): their number grows as N^3; or mode 'compat' or 'exact'"))
        else:
            parts.append((f"mode teacher's jump costs (B x (N+1)^2 = {B} x {J}^2)", 2 * B * J * J * 8, fewer))
    else:
        parts.append((f"the levels' states (B x (N+1) x D = {B} x {J} x {D})", B * J * D * (e + 8 * H), fewer))
        parts.append((f"the DP's predecessors (G x (K+1) x (N+1) = {G} x {K + 1} x {J})", G * (K + 2) * J * 8,
                      "fewer student steps, or a joint aggregation (one DP for all noises)"))
        stride = default_stride(N, K, opts.stride) if opts.refine else 1
        if stride > 1:
            width = opts.band if opts.band is not None else stride
            coarse_rows, band_rows = -(-N // stride) + 1, 2 * width + 1
            rows = B * min(J, max(coarse_rows, band_rows))
            lower = (f"a narrower band (now ±{width} indices)" if band_rows >= coarse_rows else
                     f"a larger stride (now {stride})") + f", fewer noises (B = {B}) or fewer teacher steps (N = {N})"
        else:
            rows = B * J
            lower = (f"refine=True (a level then evaluates a band of rows, not all N + 1 per noise), fewer noises "
                     f"(B = {B}) or fewer teacher steps (N = {N})")
        # per row: its state and velocity, then Euler: the winners' gathered copies and new states;
        # a multistep solver: its history and the cost op's float64 working copies, and per pair the
        # step matrices
        per_row = 5 * D * e if not H else 2 * D * e + (2 * H + 2) * Ds * 8
        pair_matrix = (1 + H) * (2 + H) * 2 + (2 + H) if H else 0
        parts.append((f"a level's rows and costs (R x (N+1) = {rows} x {J})",
                      rows * per_row + rows * J * 8 * (2 + pair_matrix), lower))
        if stride > 1:
            limit = row_budget(N, K, B, opts.max_rows)
            cached = min(limit, B * (K + 1) * (coarse_rows + opts.refine_rounds * band_rows))
            parts.append((f"refinement's velocity cache ({cached} rows)", cached * (D * e + CACHE_KEY_BYTES * (K + 2)),
                          f"a smaller max_rows (now {limit}), fewer noises (B = {B}) or fewer teacher steps (N = {N})"))
        if opts.validate:
            noises = opts.validation_noises or 4 * B
            parts.append((f"the validation guard ({noises} fresh noises, 5 schedules)",
                          noises * D * (2 * e + 5 * (2 * e + 8 * H)), "fewer validation noises (validate=n) or validate=False"))
    if selected is not None:  # the selected copy of the teacher, the indices, each level's rows restricted to it
        parts.append((f"the compared channels/frames ({Ds} of {D} elements per latent)",
                      (J * B + 2 * rows) * Ds * e + (D + Ds) * 8, "fewer channels or frames compared"))
    return sorted(parts, key=lambda p: -p[1])


def check_search_memory(opts: SearchOptions, B: int, shape: tuple, itemsize: int, device,
                        available: int | None = None) -> None:
    """ValueError (one line) naming the largest buffer, the estimate and what lowers it when the
    search's buffers (search_bytes) exceed the memory available on `device` (given, or read now)."""
    parts = search_bytes(opts, B, shape, itemsize)
    what, largest, lower = parts[0]
    check_fits(sum(p[1] for p in parts), device, f"this search (N = {opts.teacher_steps}, K = {opts.student_steps}, "
               f"B = {B}, latent {'x'.join(map(str, shape))})",
               f"its largest part, {what}, takes {gib(largest)}; use {lower}", available)
