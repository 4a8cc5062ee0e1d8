"""csrc pathfinding core (through oss_fast.dp) against the plain reference, exactly."""

import itertools
import math

import numpy as np
import pytest
import torch

import oss_fast
from oss_fast import _C, dp
from oss_fast import reference as ref

INF = math.inf


def random_level(rng, G, N, M, ties=True):
    """Costs [G, M, N+1] with exact ties, inf and NaN; candidates [G, M] in random order, -1 padded."""
    J = N + 1
    if ties:
        costs = rng.integers(0, 4, size=(G, M, J)).astype(np.float64)
    else:
        costs = rng.random((G, M, J))
    special = rng.random((G, M, J))
    costs[special < 0.05] = INF
    costs[(special >= 0.05) & (special < 0.08)] = np.nan
    cand = np.full((G, M), -1, dtype=np.int64)
    for g in range(G):
        n = rng.integers(0, min(M, N) + 1)
        cand[g, :n] = rng.choice(np.arange(1, N + 1), size=n, replace=False)
        rng.shuffle(cand[g])
    return torch.from_numpy(costs), torch.from_numpy(cand)


def run_dp(mode, N, K, G, seed, device="cpu"):
    """Drive K random levels through dp (on device) and the reference; compare every level and the
    per-target reduction."""
    rng = np.random.default_rng(seed)
    J = N + 1
    best = torch.full((G, J), INF, dtype=torch.float64, device=device)
    from_ = torch.full((G, K + 1, J), N, dtype=torch.int64, device=device)
    best_ref = [[INF] * J for _ in range(G)]
    from_ref = [[[N] * J for _ in range(K + 1)] for _ in range(G)]
    for k in range(K):
        M = int(rng.integers(1, min(N, 24) + 1))
        costs, cand = random_level(rng, G, N, M)
        mn, arg = dp.reduce_candidates(costs.to(device), cand.to(device))
        improved = dp.level_update(mode, best, from_, k, costs.to(device), cand.to(device))
        for g in range(G):
            mins, args = ref.reduce_candidates(costs[g].tolist(), cand[g].tolist())
            assert mn[g].cpu().tolist() == mins and arg[g].cpu().tolist() == args
            imp = ref.level_update(mode, best_ref[g], from_ref[g], k, mins, args)
            assert improved[g].tolist() == imp, (mode, N, K, k, g)
        assert best.cpu().tolist() == best_ref
        assert from_.cpu().tolist() == from_ref
    paths = dp.traceback(from_)
    assert paths.cpu().tolist() == [ref.traceback(from_ref[g], K) for g in range(G)]
    return best.cpu(), from_.cpu(), paths.cpu()


def dp_cases():
    for N in (1, 2, 7):
        for K in range(1, N + 1):
            yield N, K
    for K in (1, 2, 50, 199, 200):
        yield 200, K


@pytest.mark.parametrize("mode", ["compat", "exact"])
@pytest.mark.parametrize("G", [1, 3])
@pytest.mark.parametrize("N,K", list(dp_cases()))
def test_level_update_and_traceback_match_reference(mode, G, N, K):
    run_dp(mode, N, K, G, seed=N * 1000 + K * 10 + G)


def test_reduce_tie_rule_largest_index_wins_and_nan_never_wins():
    costs = torch.tensor([[[1.0, 2.0, 0.0], [1.0, float("nan"), 0.0], [3.0, 2.0, 0.0]]], dtype=torch.float64)
    cand = torch.tensor([[1, 3, 2]])
    mn, arg = dp.reduce_candidates(costs, cand)
    # j=0: cost 1 at i=1 and i=3 -> 3; j=1: i=3 is NaN, i=2 costs 2 -> 2; j=2: only i=3 reaches it.
    assert arg.tolist() == [[3, 2, 3]]
    assert mn.tolist() == [[1.0, 2.0, 0.0]]


def test_compat_equal_cost_does_not_replace_earlier_level():
    best = torch.full((1, 3), INF, dtype=torch.float64)
    from_ = torch.full((1, 3, 3), 2, dtype=torch.int64)
    level0 = torch.tensor([[[5.0, 0.0, 0.0]]], dtype=torch.float64)
    dp.level_update("compat", best, from_, 0, costs=level0, cand=torch.tensor([[1]]))
    level1 = torch.tensor([[[5.0, INF, 0.0]]], dtype=torch.float64)  # ties level 0's best at j=0
    improved = dp.level_update("compat", best, from_, 1, costs=level1, cand=torch.tensor([[2]]))
    assert improved.tolist() == [[False, False, False]]
    assert from_[0, 1, 0].item() == 1


def brute_force(C, K, objective):
    N = len(C) - 1
    best = None
    for mids in itertools.combinations(range(N - 1, 0, -1), K - 1):
        nodes = [N, *mids, 0]
        value = None
        for a, b in zip(nodes, nodes[1:]):
            c = C[a][b]
            value = c if value is None else (value + c if objective == "sum" else max(value, c))
        if best is None or value < best[0]:
            best = (value, sorted(nodes[1:-1] + [N]))
    return best


@pytest.mark.parametrize("objective", ["sum", "max"])
@pytest.mark.parametrize("N", [1, 2, 3, 5, 7])
def test_kstep_path_equals_brute_force(objective, N):
    rng = np.random.default_rng(N)
    for K in range(1, N + 1):
        for G in (1, 3):
            cost = torch.from_numpy(rng.random((G, N + 1, N + 1)))
            paths, values = dp.kstep_path(cost, K, objective)
            for g in range(G):
                C = cost[g].tolist()
                value, path = brute_force(C, K, objective)
                assert values[g].item() == value
                if objective == "sum":  # continuous random costs: the optimum is unique
                    assert paths[g].tolist() == path
                nodes = [N] + paths[g].tolist()[::-1][1:] + [0]
                edges = [C[a][b] for a, b in zip(nodes, nodes[1:])]
                recomputed = edges[0]
                for e in edges[1:]:
                    recomputed = recomputed + e if objective == "sum" else max(recomputed, e)
                assert recomputed == value


@pytest.mark.parametrize("objective", ["sum", "max"])
@pytest.mark.parametrize("N,K", [(7, 1), (7, 3), (7, 7), (50, 10), (200, 20)])
def test_kstep_path_with_ties_matches_reference(objective, N, K):
    rng = np.random.default_rng(N + K)
    cost = rng.integers(0, 3, size=(2, N + 1, N + 1)).astype(np.float64)
    cost[rng.random(cost.shape) < 0.03] = np.nan
    for g in range(2):
        try:
            path, value = ref.kstep_path(cost[g].tolist(), K, objective)
        except ValueError:  # a NaN on the only path (K == N): both must refuse
            with pytest.raises(ValueError, match="no path"):
                dp.kstep_path(torch.from_numpy(cost[g:g + 1]), K, objective)
            continue
        paths, values = dp.kstep_path(torch.from_numpy(cost[g:g + 1]), K, objective)
        assert paths[0].tolist() == path
        assert values[0].item() == value


def test_kstep_path_without_finite_path_raises():
    cost = torch.full((1, 4, 4), INF, dtype=torch.float64)
    with pytest.raises(ValueError, match="no path"):
        dp.kstep_path(cost, 2)


@pytest.mark.parametrize("S", [1, 2, 3, 8, 9])
def test_median_matches_reference(S):
    rng = np.random.default_rng(S)
    steps = rng.integers(0, 200, size=(S, 10))
    assert dp.median_steps(torch.from_numpy(steps)).tolist() == ref.median(steps.tolist())


def test_median_hand_example():
    # positions: sorted [1, 3] -> (3 + 1) // 2 = 2; sorted [5, 7] -> 6; three rows [2, 4, 9] -> (4 + 2) // 2 = 3
    assert dp.median_steps(torch.tensor([[1, 5], [3, 7]])).tolist() == [2, 6]
    assert dp.median_steps(torch.tensor([[9], [2], [4]])).tolist() == [3]


# ----------------------------------------------------------------------------- bad inputs

def f64(*shape):
    return torch.zeros(shape, dtype=torch.float64)


def i64(*shape):
    return torch.zeros(shape, dtype=torch.int64)


@pytest.mark.parametrize("call,argument", [
    (lambda: dp.reduce_candidates(f64(1, 2, 3).float(), i64(1, 2)), "costs"),
    (lambda: dp.reduce_candidates(f64(1, 2, 3), i64(1, 3)), "cand"),
    (lambda: dp.reduce_candidates(f64(1, 2, 3), i64(1, 2).int()), "cand"),
    (lambda: dp.reduce_candidates(f64(1, 3, 2).transpose(1, 2), i64(1, 2)), "costs"),
    (lambda: dp.reduce_candidates([[0.0]], i64(1, 1)), "costs"),
    (lambda: dp.level_update("nope", f64(1, 3), i64(1, 3, 3), 0, costs=f64(1, 1, 3), cand=i64(1, 1)), "mode"),
    (lambda: dp.level_update("compat", f64(1, 3), i64(1, 3, 3), 2, costs=f64(1, 1, 3), cand=i64(1, 1)), "level"),
    (lambda: dp.level_update("compat", f64(1, 3), i64(1, 3, 4), 0, costs=f64(1, 1, 3), cand=i64(1, 1)), "from_"),
    (lambda: dp.level_update("compat", f64(1, 3).float(), i64(1, 3, 3), 0, costs=f64(1, 1, 3), cand=i64(1, 1)), "best"),
    (lambda: dp.level_update("compat", f64(1, 3), i64(1, 3, 3), 0, costs=f64(2, 1, 3), cand=i64(2, 1)), "costs"),
    (lambda: dp.level_update("compat", f64(1, 3), i64(1, 3, 3), 0, costs=f64(1, 1, 3), cand=i64(1, 2)), "cand"),
    (lambda: dp.traceback(i64(1, 1, 3)), "from_"),
    (lambda: dp.traceback(f64(1, 3, 3)), "from_"),
    (lambda: dp.kstep_path(f64(1, 4, 4), 4), "K"),
    (lambda: dp.kstep_path(f64(1, 4, 4), 0), "K"),
    (lambda: dp.kstep_path(f64(1, 4, 3), 1), "cost"),
    (lambda: dp.kstep_path(f64(1, 4, 4), 1, "mean"), "objective"),
    (lambda: dp.median_steps(f64(2, 2)), "steps"),
    (lambda: dp.median_steps(i64(0, 2)), "steps"),
])
def test_front_rejects_bad_inputs_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def cap(t):
    return torch.utils.dlpack.to_dlpack(t)


HUGE = 2**31 - 1


@pytest.mark.parametrize("call,argument", [
    # bare addresses (the mistake of passing data_ptr()s) are refused, never read
    (lambda: _C.cpu.reduce_candidates(8, 8, 1, 1, 1, 8, 8), "costs must be a DLPack capsule"),
    (lambda: _C.cpu.reduce_candidates(cap(f64(1, 1, 3)), cap(i64(1, 1)), 1, -1, 3, cap(f64(1, 3)), cap(i64(1, 3))),
     "M must be >= 0"),
    # huge sizes on small tensors
    (lambda: _C.cpu.reduce_candidates(cap(f64(1, 1, 3)), cap(i64(1, 1)), HUGE, HUGE, HUGE, cap(f64(1, 3)),
                                      cap(i64(1, 3))), "costs: its sizes overflow"),
    (lambda: _C.cpu.reduce_candidates(cap(f64(1, 1, 3)), cap(i64(1, 1)), 1, 1, HUGE, cap(f64(1, 3)), cap(i64(1, 3))),
     "costs holds 3 elements but the sizes given need"),
    # wrong dtype or layout behind the right sizes
    (lambda: _C.cpu.reduce_candidates(cap(f64(1, 1, 3).float()), cap(i64(1, 1)), 1, 1, 3, cap(f64(1, 3)),
                                      cap(i64(1, 3))), "costs has the wrong dtype"),
    (lambda: _C.cpu.reduce_candidates(cap(f64(1, 2, 4)[:, :, ::2]), cap(i64(1, 2)), 1, 2, 2, cap(f64(1, 2)),
                                      cap(i64(1, 2))), "costs must be contiguous"),
    (lambda: _C.cpu.level_update(5, *(cap(x) for x in (f64(1, 3), i64(1, 3), f64(1, 3), i64(1, 3, 3))),
                                 cap(torch.zeros(1, 3, dtype=torch.uint8)), 1, 3, 2, 0), "mode"),
    (lambda: _C.cpu.level_update(0, *(cap(x) for x in (f64(1, 3), i64(1, 3), f64(1, 3), i64(1, 3, 3))),
                                 cap(torch.zeros(1, 3, dtype=torch.uint8)), 1, 3, 2, 2), "k"),
    (lambda: _C.cpu.traceback(cap(i64(1, 3, 3)), 1, 0, 3, cap(i64(1, 1))), "K must be >= 1"),
    (lambda: _C.cpu.traceback(cap(i64(1, 3, 3)), 1, 2**40, 3, cap(i64(1, 2))), "from"),  # oversized trace-back
    (lambda: _C.cpu.kstep_path(cap(f64(1, 3, 3)), 1, 3, 1, 7, cap(i64(1, 1)), cap(f64(1))), "objective"),
    (lambda: _C.cpu.kstep_path(cap(f64(1, 3, 3)), 1, 3, 3, 0, cap(i64(1, 3)), cap(f64(1))), "K"),
    (lambda: _C.cpu.kstep_path(cap(f64(1, 3, 3)), 1, HUGE, 2, 0, cap(i64(1, 2)), cap(f64(1))), "cost"),
    (lambda: _C.cpu.median_steps(cap(i64(2, 2)), HUGE, 2, cap(i64(2))), "steps"),
])
def test_csrc_entry_points_reject_bad_inputs(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


@pytest.mark.parametrize("steps,message", [([], "one or more step lists"), ([[1, 2], [3]], "of one length"),
                                           ([[1.5, 2.5]], "integer grid indices"), ([[True]], "integer"),
                                           ([[2**64]], "fit in int64")])
def test_cal_medium_refuses_what_is_not_step_lists(steps, message):
    with pytest.raises(ValueError, match=message):
        oss_fast.cal_medium(steps)


@pytest.mark.parametrize("values", [[2**63 - 1, 2**63 - 1], [-2**63, -2**63], [2**63 - 1, 2**63 - 3],
                                    [-2**63, 2**63 - 1], [-3, 4]])
def test_median_midpoint_does_not_overflow(values):
    # the cal_medium rule (a + b) // 2 on Python's unbounded ints is the oracle
    steps = torch.tensor([[v] for v in values], dtype=torch.int64)
    assert dp.median_steps(steps).tolist() == [sum(values) // 2]
    assert oss_fast.cal_medium([[v] for v in values]) == ref.median([[v] for v in values]) == [sum(values) // 2]


# ----------------------------------------------------------------------------- CUDA twin

@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["compat", "exact"])
@pytest.mark.parametrize("N,K", [(1, 1), (2, 2), (7, 4), (200, 10), (200, 200)])
def test_cuda_twin_equals_cpu(mode, N, K):
    cpu = run_dp(mode, N, K, 3, seed=N + K, device="cpu")
    gpu = run_dp(mode, N, K, 3, seed=N + K, device="cuda")
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b)


@pytest.mark.cuda
@pytest.mark.parametrize("objective", ["sum", "max"])
def test_cuda_kstep_and_median_equal_cpu(objective):
    rng = np.random.default_rng(0)
    cost = torch.from_numpy(rng.integers(0, 3, size=(3, 201, 201)).astype(np.float64))
    for K in (1, 5, 200):
        p_cpu, v_cpu = dp.kstep_path(cost, K, objective)
        p_gpu, v_gpu = dp.kstep_path(cost.cuda(), K, objective)
        assert torch.equal(p_cpu, p_gpu.cpu()) and torch.equal(v_cpu, v_gpu.cpu())
    steps = torch.from_numpy(rng.integers(0, 200, size=(9, 20)))
    assert torch.equal(dp.median_steps(steps), dp.median_steps(steps.cuda()).cpu())


@pytest.mark.cuda
def test_cuda_entry_point_rejects_host_pointer():
    host = f64(1, 1, 3)
    with pytest.raises(ValueError, match="costs"):
        _C.cuda.reduce_candidates(host.data_ptr(), i64(1, 1).data_ptr(), 1, 1, 3,
                                  f64(1, 3).data_ptr(), i64(1, 3).data_ptr(), 0)
