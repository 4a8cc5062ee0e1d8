"""Samplers as step rules over flow time with a history (DESIGN §3.5): one definition serves the
search, `sample` and the exports.

Flow time s runs from 1 (noise) to 0 (data); the model returns the velocity v = eps - x0, so the
data prediction at (x, s) is m = x - s v. A sampler state is x plus `history` vectors h_1..h_H made
from earlier steps, with their times and the number of steps taken (its depth, capped at 2). One step
from time s to time t evaluates the model once (v at x) and is linear in the vectors:

    [x_t, h'_1, ..., h'_H] = M(s, t, s_prev, s_prev2, depth) @ [x, v, h_1, ..., h_H]

`Solver.matrix` gives M for any batch of (state, target) pairs, so the search can score every jump
of every candidate with per-pair scalars (never an N x N x D tensor), and keep the winners' history.

* `euler`: x_t = x + (t - s) v.
* `ab2`: variable-step Adams-Bashforth 2 in flow time, h_1 = the previous velocity:
  x_t = x + h v + h^2 / (2 h_p) (v - v_prev), h = t - s, h_p = s - s_prev; the first step is Euler.
  k-diffusion's `lms` at order 2 on flow sigmas (ComfyUI "lms" with order 2).
* `dpmpp_2m`: diffusers' DPMSolverMultistepScheduler (dpmsolver++, midpoint, order 2) on flow
  sigmas with flow prediction: alpha = 1 - s, sigma = s, lambda = log(alpha / sigma); first order on
  the first step and on the final step to sigma 0; h_1 = the previous data prediction.
* `unipc`: diffusers' UniPCMultistepScheduler (bh2, order 2, predict_x0, corrector on) on flow
  sigmas with flow prediction. Its predictor is DPM-Solver++(2M)'s; its corrector, applied to the
  current sample once the model was evaluated there, is carried as h_1 = the corrected sample without
  its term in the current data prediction (so x_corrected = h_1 + kappa m); h_2 = the previous data
  prediction. Like diffusers, a time of exactly 1 counts as 1 - 1e-6 in its log-SNR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .ops import euler_rows, step_rows

# diffusers' UniPC moves a first sigma of 1 to 1 - 1e-6 "to avoid inf torch.log(alpha)"
UNIPC_ONE = 1.0 - 1e-6


def _lam(s):
    """log-SNR of flow time s: log((1 - s) / s) (-inf at s = 1, +inf at s = 0)."""
    return torch.log1p(-s) - torch.log(s)


def _e_minus_h(s, t):
    """exp(-(lambda_t - lambda_s)) = t (1 - s) / ((1 - t) s), finite at s = 1 and t = 0."""
    return t * (1 - s) / ((1 - t) * s)


def _stack(rows):
    """rows of entries (tensors or numbers, broadcast together) -> [..., len(rows), len(rows[0])]."""
    device = next((e.device for row in rows for e in row if isinstance(e, torch.Tensor)), None)
    flat = torch.broadcast_tensors(*[torch.as_tensor(e, dtype=torch.float64, device=device) for row in rows for e in row])
    width = len(rows[0])
    return torch.stack([torch.stack(flat[r * width:(r + 1) * width], -1) for r in range(len(rows))], -2)


@dataclass(frozen=True)
class Solver:
    """One entry of the registry SOLVERS: everything that names, steps or exports a solver reads it."""

    name: str
    history: int  # vectors a state carries beside x
    order: int
    step_matrix: Callable = field(compare=False, repr=False)  # (s, t, s_prev, s_prev2, depth) -> M, see matrix
    log_snr: bool  # steps in log((1 - s) / s), which exists for flow times s in [0, 1] only
    method: str  # what the step is, in a few words (for messages)
    # parameterization ("flow", "ddpm") -> (diffusers scheduler class name, the config entries that make it run
    # this solver); empty where diffusers has none. Data only: integrations/diffusers.py builds the scheduler
    diffusers: dict = field(compare=False, repr=False)
    kdiffusion: str | None  # the k-diffusion / ComfyUI sampler that runs these steps on schedule.to_sigmas()

    def matrix(self, s, t, s_prev, s_prev2, depth) -> torch.Tensor:
        """M [..., 1 + H, 2 + H] of steps from time s to time t (float64 tensors, broadcast together),
        for states with the given previous times and depth (0: no step taken yet, 1, 2: two or more)."""
        s, t, s_prev, s_prev2 = (torch.as_tensor(a, dtype=torch.float64) for a in (s, t, s_prev, s_prev2))
        depth = torch.as_tensor(depth)
        return self.step_matrix(s, t, s_prev, s_prev2, depth)

    def carried_times(self, s, s_prev, depth):
        """(s_prev, s_prev2, depth) of the state a step from time s reaches."""
        return s, s_prev, torch.clamp(torch.as_tensor(depth) + 1, max=2)


def _euler(s, t, s_prev, s_prev2, depth):
    """M of an Euler step: x_t = x + (t - s) v; no history."""
    return _stack([[1.0, t - s]])


def _ab2(s, t, s_prev, s_prev2, depth):
    """M of a variable-step Adams-Bashforth 2 step in flow time (Euler at depth 0), carrying h_1 = v."""
    h = t - s
    w = torch.where(depth > 0, h * h / (2 * (s - s_prev)), 0.0)  # the first step is Euler
    return _stack([[1.0, h + w, -w], [0.0, 1.0, 0.0]])


def _dpm_first_and_second(s, t, s_prev, second):
    """(coef of x, coef of the current data prediction m, coef of the previous one) of a
    DPM-Solver++ step, first order where `second` is False: x_t = (t/s) x - A (1 + q/2) m + A q/2 m_prev."""
    A = (1 - t) * (_e_minus_h(s, t) - 1)
    q = (_lam(t) - _lam(s)) / (_lam(s) - _lam(s_prev))  # 1 / r0 of diffusers (0 when s_prev = 1)
    q = torch.where(second, q, 0.0)
    return t / s, -A * (1 + q / 2), A * q / 2


def _dpmpp_2m(s, t, s_prev, s_prev2, depth):
    """M of a DPM-Solver++(2M) step (first order first and to sigma 0), carrying h_1 = the data prediction m."""
    second = (depth > 0) & (t > 0)  # first order on the first step and on the final step to sigma 0
    cx, cm, cprev = _dpm_first_and_second(s, t, s_prev, second)
    # m = x - s v
    return _stack([[cx + cm, -cm * s, cprev], [1.0, -s, 0.0]])


def _unic(s, s_prev, s_prev2, order2):
    """diffusers' UniC (bh2) from s_prev to s: x_corrected = a x_corr_prev + b m_prev + c m_prev2 + kappa m."""
    phi = _e_minus_h(s_prev, s) - 1  # expm1(-h), h = lambda_s - lambda_prev
    h = _lam(s) - _lam(s_prev)
    # order 1: rho = 1/2 on (m - m_prev)
    # order 2: rks = [r1, 1]; rho solves [[1, 1], [r1, 1]] rho = b
    hh = -h
    k1 = phi / hh - 1
    b1 = k1 / phi
    b2 = 2 * (k1 / hh - 0.5) / phi
    r1 = (_lam(s_prev2) - _lam(s_prev)) / h
    rho_a = (b1 - b2) / (1 - r1)
    rho_b = b1 - rho_a
    rho_a = torch.where(order2, rho_a, 0.0)
    rho_b = torch.where(order2, rho_b, 0.5)
    D = (1 - s) * phi  # alpha_s * B_h
    # x_c = (s/s_prev) x_cp - D m_prev - D (rho_a (m_prev2 - m_prev) / r1 + rho_b (m - m_prev))
    c = torch.where(order2, -D * rho_a / r1, 0.0)
    b = -D - c + D * rho_b
    return s / s_prev, b, c, -D * rho_b


def _unipc(s, t, s_prev, s_prev2, depth):
    """M of a UniPC step: corrector, then DPM-Solver++(2M) predictor; h_1 = next corrector less kappa m, h_2 = m."""
    s, t, s_prev, s_prev2 = (torch.clamp(a, max=UNIPC_ONE) for a in (s, t, s_prev, s_prev2))
    # the state's corrected sample: x (no step yet) or h_1 + kappa m, with m = x - s v
    _, _, _, kappa = _unic(s, s_prev, s_prev2, depth > 1)
    fresh = depth == 0
    xc_x = torch.where(fresh, 1.0, kappa)          # x_corrected = xc_x x + xc_v v + xc_h1 h_1
    xc_v = torch.where(fresh, 0.0, -kappa * s)
    xc_h1 = torch.where(fresh, 0.0, 1.0)
    # predictor: DPM-Solver++(2M) from the corrected sample, first order on the first and final steps
    second = (depth > 0) & (t > 0)
    px, pm, pprev = _dpm_first_and_second(s, t, s_prev, second)
    x_row = [px * xc_x + pm, px * xc_v - pm * s, px * xc_h1, pprev]
    # the next state's h_1: its corrector from s to t (order 2 once this step was), less its kappa term
    a, b, c, _ = _unic(t, s, s_prev, second)
    h1_row = [a * xc_x + b, a * xc_v - b * s, a * xc_h1, c]
    return _stack([x_row, h1_row, [1.0, -s, 0.0, 0.0]])


# diffusers' multistep schedulers run a flow model on flow sigmas with flow prediction, a DDPM-family one
# (DiT) on its own sigmas with epsilon prediction
_PREDICTION = {"flow": dict(use_flow_sigmas=True, prediction_type="flow_prediction"),
               "ddpm": dict(use_flow_sigmas=False, prediction_type="epsilon")}


def _for_both(scheduler: str, **config) -> dict:
    """The diffusers scheduler of a solver for both parameterizations, each with its prediction."""
    return {kind: (scheduler, dict(config, **prediction)) for kind, prediction in _PREDICTION.items()}


# the registry: a new solver is one entry and its matrix function (engine/pairs.py's mode teacher takes order <= 2)
SOLVERS = {solver.name: solver for solver in (
    Solver("euler", history=0, order=1, step_matrix=_euler, log_snr=False, method="Euler", kdiffusion="euler",
           diffusers={"flow": ("FlowMatchEulerDiscreteScheduler", {}),
                      # first-order DPM-Solver++ is DDIM, and Euler in flow time; unlike EulerDiscreteScheduler it
                      # starts from unit noise, as DDPM-family pipelines (DiT) draw it
                      "ddpm": ("DPMSolverMultistepScheduler", dict(
                          algorithm_type="dpmsolver++", solver_order=1, prediction_type="epsilon",
                          use_flow_sigmas=False, final_sigmas_type="zero"))}),
    Solver("ab2", history=1, order=2, step_matrix=_ab2, log_snr=False, method="linear multistep", kdiffusion="lms",
           diffusers={}),  # diffusers' LMSDiscreteScheduler takes no flow sigmas
    Solver("dpmpp_2m", history=1, order=2, step_matrix=_dpmpp_2m, log_snr=True, method="DPM-Solver++(2M)",
           kdiffusion=None,  # k-diffusion's dpmpp_2m counts orders its own way (no lower-order final step)
           diffusers=_for_both("DPMSolverMultistepScheduler", algorithm_type="dpmsolver++", solver_order=2,
                               solver_type="midpoint", lower_order_final=True, euler_at_final=False,
                               final_sigmas_type="zero", thresholding=False)),
    Solver("unipc", history=2, order=2, step_matrix=_unipc, log_snr=True, method="UniPC (bh2)",
           kdiffusion=None,  # ComfyUI's uni_pc is its own code, untested against these steps
           diffusers=_for_both("UniPCMultistepScheduler", solver_order=2, solver_type="bh2", predict_x0=True,
                               lower_order_final=True, disable_corrector=[], final_sigmas_type="zero",
                               thresholding=False)),
)}


def check_solver_name(name) -> str:
    """name, when it is the name of a solver of the registry; ValueError listing them otherwise."""
    if not isinstance(name, str) or name not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)} (a name), got {name!r}")
    return name


def get_solver(name) -> Solver:
    """The solver of a name (or a Solver, returned as is); ValueError naming the known ones."""
    return name if isinstance(name, Solver) else SOLVERS[check_solver_name(name)]


def _per_row(t, rows: int, device) -> torch.Tensor:
    """A time for every row: a number, or one per row, as float64 [rows]."""
    return torch.as_tensor(t, dtype=torch.float64, device=device).expand(rows).clone()


class Trajectory:
    """A batch of samples moving along a schedule with a solver: `x` at time `s` (one for all rows,
    or one per row: rows may follow different schedules), and what the solver remembers. Euler
    steps round as the reference does (float32=True: in float32)."""

    def __init__(self, solver, x: torch.Tensor, s, float32: bool = True):
        self.solver = get_solver(solver)
        self.x = x
        self.float32 = float32
        B = x.shape[0]
        self.s = _per_row(s, B, x.device)
        H = self.solver.history
        self.history = torch.zeros((B, H, x[0].numel()), dtype=torch.float64, device=x.device) if H else None
        self.times = torch.ones((B, 2), dtype=torch.float64, device=x.device)
        self.depth = torch.zeros(B, dtype=torch.int64, device=x.device)

    def step(self, v: torch.Tensor, t) -> torch.Tensor:
        """One step with the velocity v at x to time t (one, or one per row); returns the new x."""
        B = self.x.shape[0]
        t = _per_row(t, B, self.x.device)
        if self.solver.name == "euler":
            self.x = euler_rows(self.x, v, t - self.s, self.float32)
        else:
            M = self.solver.matrix(self.s, t, self.times[:, 0], self.times[:, 1], self.depth).to(self.x.device)
            x, self.history = step_rows(M, self.x.reshape(B, -1), v.reshape(B, -1), self.history)  # the cost op's order
            self.x = x.reshape(self.x.shape)
            s_prev, s_prev2, self.depth = self.solver.carried_times(self.s, self.times[:, 0], self.depth)
            self.times = torch.stack([s_prev, s_prev2], 1)
        self.s = t
        return self.x
