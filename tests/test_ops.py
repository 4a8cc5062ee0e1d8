"""The fused cost op: every backend against the pure-torch reference and the plain oracle."""

import importlib.util

import pytest
import torch

from oss_fast import reference as ref
from oss_fast.ops import (combo_costs, combo_costs_torch, euler_costs, euler_costs_torch, euler_rows, pick_backend,
                          step_rows, step_rows_torch)

HAS_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def problem(R=13, D=301, J=9, B=3, dtype=torch.float32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(R, D, generator=g).to(dtype)
    v = (torch.randn(R, D, generator=g) * 2).to(dtype)
    targets = torch.randn(J, B, D, generator=g).to(dtype)
    row_sample = torch.randint(0, B, (R,), generator=g)
    row_grid = torch.randint(1, J, (R,), generator=g)
    s = torch.sort(torch.rand(J, dtype=torch.float64, generator=g)).values
    return [t.to(device) for t in (x, v, targets, row_sample, row_grid, s)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("float32", [True, False])
def test_euler_rows_rounds_like_the_reference(dtype, float32):
    x, v, _, _, _, _ = problem(R=6, D=50, dtype=dtype)
    ds = -torch.rand(6, dtype=torch.float64)
    expected = torch.cat([ref.euler(x[r:r + 1], v[r:r + 1], float(ds[r]), float32) for r in range(6)])
    assert torch.equal(euler_rows(x, v, ds, float32), expected)


@pytest.mark.parametrize("norm", [1, 2, 1.5])
@pytest.mark.parametrize("dtype,float32", [(torch.float32, True), (torch.bfloat16, True), (torch.bfloat16, False)])
def test_torch_op_equals_the_oracle_pair_by_pair(norm, dtype, float32):
    x, v, targets, row_sample, row_grid, s = problem(R=7, D=40, J=6, dtype=dtype)
    costs = euler_costs_torch(x, v, targets, row_sample, row_grid, s, norm, float32)
    for r in range(7):
        for j in range(6):
            if j >= row_grid[r]:
                assert costs[r, j].item() == float("inf")
                continue
            xj = ref.euler(x[r:r + 1], v[r:r + 1], float(s[j]) - float(s[row_grid[r]]), float32)
            expected = ref.cost(xj[0], targets[j, row_sample[r]], norm)
            assert costs[r, j].item() == pytest.approx(expected, rel=1e-14, abs=0)


def assert_same_costs(a, b, rel):
    assert torch.equal(torch.isinf(a), torch.isinf(b))
    finite = torch.isfinite(a)
    torch.testing.assert_close(a[finite], b[finite], rtol=rel, atol=0)


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("R,D,J,B", [(1, 1, 2, 1), (13, 301, 9, 3), (40, 4099, 33, 2)])
def test_csrc_op_equals_torch_op(norm, R, D, J, B):
    args = problem(R, D, J, B)
    assert_same_costs(euler_costs(*args, norm=norm, backend="csrc"), euler_costs_torch(*args, norm), 1e-13)


def test_csrc_op_with_fewer_targets_than_grid_indices():
    x, v, targets, row_sample, row_grid, s = problem(R=10, D=64, J=9, B=2)
    full = euler_costs(x, v, targets, row_sample, row_grid, s, backend="csrc")
    first = euler_costs(x, v, targets[:1], row_sample, row_grid, s, backend="csrc")
    assert torch.equal(first, full[:, :1])


def test_csrc_bound_only_drops_pairs_that_cannot_win():
    x, v, targets, row_sample, row_grid, s = problem(R=30, D=5000, J=12, B=2)
    full = euler_costs_torch(x, v, targets, row_sample, row_grid, s)
    # bounds around the true costs: some pairs below, some above, some exactly at their bound
    g = torch.Generator().manual_seed(1)
    per_target = full.masked_fill(torch.isinf(full), 0).max(0).values
    bound = per_target[None].repeat(2, 1) * torch.rand(2, 12, generator=g, dtype=torch.float64) * 1.5
    bound[0, 0] = full[row_sample == 0, 0][0]
    got = euler_costs(x, v, targets, row_sample, row_grid, s, backend="csrc", bound=bound)
    assert_bound_only_drops_pairs_that_cannot_win(got, full, bound[row_sample])


def assert_bound_only_drops_pairs_that_cannot_win(got, full, limit):
    below = full < limit
    torch.testing.assert_close(got[below], full[below], rtol=1e-13, atol=0)
    above = ~below & torch.isfinite(full)
    assert torch.all(torch.isinf(got[above]) | torch.isclose(got[above], full[above], rtol=1e-13, atol=0))
    assert torch.isinf(got[above]).any()  # the bound did stop some pairs


@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("float32", [True, False])
def test_triton_op_equals_torch_op(dtype, norm, float32):
    # odd sizes: rows not a multiple of the row tile, targets and latent not multiples of their blocks
    args = problem(R=11, D=300, J=21, B=3, dtype=dtype, device=DEVICE)
    from oss_fast.ops.euler_cost_triton import euler_costs_triton

    expected = euler_costs_torch(*[a.cpu() for a in args], norm, float32)
    blocks = None if DEVICE == "cuda" else (4, 16, 64)  # several blocks of each kind, even interpreted
    for slices in (None, 3):  # the latent in one piece, or in slices summed afterwards
        got = euler_costs_triton(*args, norm=norm, float32=float32, blocks=blocks, slices=slices)
        assert_same_costs(got.cpu(), expected, 1e-12)


@pytest.mark.cuda
@pytest.mark.parametrize("float32", [True, False])
def test_triton_op_bfloat16_on_gpu(float32):
    # (the interpreter miscomputes bfloat16 casts, so this runs on a GPU only)
    args = problem(R=37, D=1000, J=50, B=2, dtype=torch.bfloat16, device="cuda")
    from oss_fast.ops.euler_cost_triton import euler_costs_triton

    got = euler_costs_triton(*args, norm=2, float32=float32)
    assert_same_costs(got.cpu(), euler_costs_torch(*[a.cpu() for a in args], 2, float32), 1e-12)


def test_forced_backend_that_cannot_run_fails_loudly(monkeypatch):
    args = problem(dtype=torch.bfloat16)
    monkeypatch.setenv("OSS_FAST_BACKEND", "csrc")
    with pytest.raises(RuntimeError, match="OSS_FAST_BACKEND=csrc"):
        euler_costs(*args)
    monkeypatch.setenv("OSS_FAST_BACKEND", "torch")
    assert_same_costs(euler_costs(*args), euler_costs_torch(*args), 0)


def test_requested_backend_that_cannot_run_fails_loudly():
    x, v, targets, row_sample, row_grid, s = problem(dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="backend csrc cannot run the cost op here: csrc needs float32"):
        euler_costs(x, v, targets, row_sample, row_grid, s, backend="csrc")
    x, v, hist, coef, targets, row_sample, row_grid = combo_problem(dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="unknown backend 'cuda'"):
        combo_costs(x, v, hist, coef, targets, row_sample, row_grid, backend="cuda")


def test_bad_inputs():
    x, v, targets, row_sample, row_grid, s = problem()
    with pytest.raises(ValueError, match="x and v"):
        euler_costs(x, v[:, :5], targets, row_sample, row_grid, s)
    with pytest.raises(ValueError, match="targets"):
        euler_costs(x, v, targets[:, :, :5], row_sample, row_grid, s)
    with pytest.raises(ValueError, match="row_grid"):
        euler_costs(x, v, targets, row_sample, row_grid.int(), s)
    with pytest.raises(ValueError, match="row_grid"):  # checked again at the csrc entry point
        euler_costs(x, v, targets, row_sample, row_grid + 100, s, backend="csrc")
    with pytest.raises(ValueError, match="s must"):
        euler_costs(x, v, targets, row_sample, row_grid, s.float())


@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
def test_backend_choice_and_forced_triton(monkeypatch):
    x, v, targets, row_sample, row_grid, s = problem(R=5, D=64, J=6, B=2)
    # unforced on CPU tensors: csrc for float32 at p in {1, 2}, else torch; never the slow interpreter
    assert pick_backend(x, v, targets, 2) == "csrc"
    assert pick_backend(x, v, targets, 3) == "torch"
    assert pick_backend(x.double(), v.double(), targets.double(), 2) == "torch"
    # forced: Triton runs (on CPU under the interpreter) and gives the reference's costs
    monkeypatch.setenv("OSS_FAST_BACKEND", "triton")
    args = [a.to(DEVICE) for a in (x, v, targets, row_sample, row_grid, s)]
    assert pick_backend(*args[:3], 2) == "triton"
    assert_same_costs(euler_costs(*args).cpu(), euler_costs_torch(x, v, targets, row_sample, row_grid, s), 1e-12)


# ----------------------------------------------------------------------------- multistep (combination) op

def combo_problem(R=13, D=301, J=9, B=3, H=2, dtype=torch.float32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x, v, targets, row_sample, row_grid, _ = problem(R, D, J, B, dtype, seed)
    hist = torch.randn(R, H, D, generator=g, dtype=torch.float64)
    coef = torch.randn(R, J, 2 + H, generator=g, dtype=torch.float64)
    return [t.to(device) for t in (x, v, hist, coef, targets, row_sample, row_grid)]


def combo_oracle(x, v, hist, coef, targets, row_sample, row_grid, norm):
    """Pair by pair, in float64 with exact Python sums: the definition of the op."""
    R, J = coef.shape[:2]
    out = torch.full((R, J), float("inf"), dtype=torch.float64)
    for r in range(R):
        for j in range(int(row_grid[r])):
            if j >= J:
                break
            y = coef[r, j, 0] * x[r].double() + coef[r, j, 1] * v[r].double()
            for k in range(hist.shape[1]):
                y = y + coef[r, j, 2 + k] * hist[r, k]
            d = (y.to(x.dtype).float() - targets[j, row_sample[r]].float()).double()
            out[r, j] = float((d * d if norm == 2 else d.abs()).sum()) / x.shape[1]
    return out


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("H", [0, 1, 2])
def test_combo_torch_op_equals_the_oracle(norm, H):
    args = combo_problem(R=7, D=50, J=6, B=2, H=H)
    assert_same_costs(combo_costs_torch(*args, norm), combo_oracle(*args, norm), 1e-12)


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("R,D,J,B,H", [(1, 1, 2, 1, 1), (13, 301, 9, 3, 2), (40, 4099, 33, 2, 1), (9, 1031, 7, 2, 3)])
def test_combo_csrc_op_equals_torch_op(norm, R, D, J, B, H):
    args = combo_problem(R, D, J, B, H)
    assert_same_costs(combo_costs(*args, norm=norm, backend="csrc"), combo_costs_torch(*args, norm), 1e-13)


def test_combo_csrc_bound_only_drops_pairs_that_cannot_win():
    args = combo_problem(R=30, D=2000, J=12, B=2, H=2)
    row_sample = args[5]
    full = combo_costs_torch(*args)
    bound = torch.full((2, 12), float(full[torch.isfinite(full)].median()), dtype=torch.float64)
    got = combo_costs(*args, backend="csrc", bound=bound)
    assert_bound_only_drops_pairs_that_cannot_win(got, full, bound[row_sample])


@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("H", [0, 2])
def test_combo_triton_op_equals_torch_op(dtype, norm, H):
    args = combo_problem(R=11, D=300, J=21, B=3, H=H, dtype=dtype, device=DEVICE)
    from oss_fast.ops.combo_cost_triton import combo_costs_triton

    expected = combo_costs_torch(*[a.cpu() for a in args], norm)
    blocks = None if DEVICE == "cuda" else (4, 16, 64)
    for slices in (None, 3):
        got = combo_costs_triton(*args, norm=norm, blocks=blocks, slices=slices)
        assert_same_costs(got.cpu(), expected, 1e-12)


@pytest.mark.parametrize("W,D,H", [(1, 1, 1), (5, 301, 2), (17, 4099, 1), (3, 1030, 3)])
def test_step_rows_csrc_equals_torch_bit_for_bit(W, D, H):
    """The state a search keeps must be the one its cost was taken of: same products, sums, roundings."""
    g = torch.Generator().manual_seed(W + D + H)
    x, v = (torch.randn(W, D, generator=g) for _ in range(2))
    hist = torch.randn(W, H, D, generator=g, dtype=torch.float64)
    M = torch.randn(W, 1 + H, 2 + H, generator=g, dtype=torch.float64)
    got_x, got_h = step_rows(M, x, v, hist)
    want_x, want_h = step_rows_torch(M, x, v, hist)
    assert got_x.dtype == torch.float32 and got_h.dtype == torch.float64
    assert torch.equal(got_x, want_x) and torch.equal(got_h, want_h)
    # the state is the cost op's combination: its cost against itself as the target is exactly 0
    targets = got_x[None]
    coef = M[:, None, 0].contiguous()
    rows = torch.arange(W)
    assert torch.equal(combo_costs(x, v, hist, coef, targets.expand(1, W, D).contiguous(), rows,
                                   torch.ones(W, dtype=torch.int64), backend="csrc"), torch.zeros(W, 1, dtype=torch.float64))


def test_step_rows_into_rows_of_other_tensors_equals_torch_and_touches_nothing_else():
    g = torch.Generator().manual_seed(3)
    R, W, S, D, H = 9, 4, 12, 1030, 2
    x, v = (torch.randn(R, D, generator=g) for _ in range(2))
    hist = torch.randn(R, H, D, generator=g, dtype=torch.float64)
    M = torch.randn(W, 1 + H, 2 + H, generator=g, dtype=torch.float64)
    src, dst = torch.tensor([7, 0, 7, 3]), torch.tensor([11, 2, 5, 0])
    out_x, out_h = torch.full((S, D), 9.0), torch.full((S, H, D), 9.0, dtype=torch.float64)
    step_rows(M, x, v, hist, src=src, dst=dst, out_x=out_x, out_h=out_h)
    want_x, want_h = step_rows_torch(M, x[src], v[src], hist[src])
    assert torch.equal(out_x[dst], want_x) and torch.equal(out_h[dst], want_h)
    untouched = torch.ones(S, dtype=torch.bool)
    untouched[dst] = False
    assert bool((out_x[untouched] == 9).all()) and bool((out_h[untouched] == 9).all())


def test_step_rows_bad_inputs():
    x = torch.randn(3, 8)
    hist = torch.randn(3, 2, 8, dtype=torch.float64)
    M = torch.randn(3, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"M \[W, 1 \+ H, 2 \+ H\]"):
        step_rows(M[:, :2], x, x, hist)
    with pytest.raises(ValueError, match="must be float64"):
        step_rows(M, x, x, hist.float())
    out_x, out_h = torch.zeros(5, 8), torch.zeros(5, 2, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="come together"):
        step_rows(M, x, x, hist, out_x=out_x)
    with pytest.raises(ValueError, match="dst must not repeat"):
        step_rows(M, x, x, hist, dst=torch.tensor([1, 1, 2]), out_x=out_x, out_h=out_h)
    with pytest.raises(ValueError, match="dst values"):
        step_rows(M, x, x, hist, dst=torch.tensor([1, 9, 2]), out_x=out_x, out_h=out_h)
    with pytest.raises(ValueError, match="src values"):
        step_rows(M, x, x, hist, src=torch.tensor([0, 1, 3]), dst=torch.tensor([0, 1, 2]), out_x=out_x, out_h=out_h)
    with pytest.raises(ValueError, match="must not overlap"):  # stepping rows onto themselves
        step_rows(M, x, x, hist, src=torch.tensor([0, 1, 2]), dst=torch.tensor([0, 1, 2]), out_x=x, out_h=hist)


def test_combo_bad_inputs():
    x, v, hist, coef, targets, row_sample, row_grid = combo_problem()
    with pytest.raises(ValueError, match="hist must be float64"):
        combo_costs(x, v, hist.float(), coef, targets, row_sample, row_grid)
    with pytest.raises(ValueError, match="coef must be float64"):
        combo_costs(x, v, hist, coef[:, :, :3], targets, row_sample, row_grid)
    with pytest.raises(ValueError, match="row_sample values"):
        combo_costs(x, v, hist, coef, targets, row_sample + 5, row_grid)
