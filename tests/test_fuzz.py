"""Short fuzz tests of the compiled entry points, the cost op's front and the file loader (DESIGN §7):
random sizes, strides and dtypes. A call either returns what the reference returns or raises
ValueError; it never crashes (a crash takes the test process down) or hangs."""

import json
import math

import pytest
import torch

from oss_fast import Schedule, _C, dp
from oss_fast import reference as ref
from oss_fast.ops import euler_costs, euler_costs_torch

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
settings = hypothesis.settings(max_examples=300, deadline=None, derandomize=True)

SIZES = st.one_of(st.integers(-2, 6), st.sampled_from([2**31 - 1, 2**62, -(2**63)]))
DTYPES = st.sampled_from([torch.float64, torch.float32, torch.int64, torch.uint8])


@st.composite
def arrays(draw, max_numel=40):
    """A CPU tensor of a random dtype and shape, contiguous or a strided view."""
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    t = torch.randint(-3, 9, tuple(shape)).to(draw(DTYPES))
    if draw(st.booleans()) and t.dim() >= 1 and t.shape[-1] > 1:
        t = t[..., ::2]
    return t


def capsule(t):
    return torch.utils.dlpack.to_dlpack(t)


def or_right(drawn, shape, dtype):
    """The drawn tensor, or (drawn None) a right one for the sizes when they are plausible."""
    if drawn is not None:
        return drawn
    if any(not 0 <= n <= 8 for n in shape):
        return torch.zeros(0)
    if dtype == torch.float64:
        return torch.rand(shape, dtype=dtype)
    return torch.randint(-1, 8, shape, dtype=dtype)


MAYBE = st.one_of(st.none(), arrays())


@settings
@hypothesis.given(MAYBE, MAYBE, MAYBE, MAYBE, SIZES, SIZES, SIZES)
def test_reduce_candidates_entry_point(costs, cand, mn, arg, G, M, J):
    costs, cand = or_right(costs, (G, M, J), torch.float64), or_right(cand, (G, M), torch.int64)
    mn, arg = or_right(mn, (G, J), torch.float64), or_right(arg, (G, J), torch.int64)
    try:
        _C.cpu.reduce_candidates(capsule(costs), capsule(cand), G, M, J, capsule(mn), capsule(arg))
    except ValueError:
        return
    # accepted: the buffers were exactly right, so the result is the reference's
    assert costs.numel() == G * M * J and mn.numel() == G * J
    costs = costs.reshape(G, M, J)
    for g in range(G):
        mins, args = ref.reduce_candidates(costs[g].tolist(), cand.reshape(G, M)[g].tolist()) if M else \
            ([math.inf] * J, [-1] * J)  # no candidate: nothing reaches any target
        assert mn.reshape(G, J)[g].tolist() == mins and arg.reshape(G, J)[g].tolist() == args


@settings
@hypothesis.given(MAYBE, MAYBE, SIZES, SIZES, SIZES, st.sampled_from([0, 1, 5]), MAYBE, MAYBE)
def test_kstep_and_traceback_entry_points(cost, from_, G, J, K, objective, path, value):
    cost, from_ = or_right(cost, (G, J, J), torch.float64), or_right(from_, (G, K + 1, J), torch.int64)
    path, value = or_right(path, (G, K), torch.int64), or_right(value, (G,), torch.float64)
    try:
        _C.cpu.kstep_path(capsule(cost), G, J, K, objective, capsule(path), capsule(value))
    except ValueError:
        pass
    else:
        assert cost.numel() == G * J * J and objective in (0, 1)
        for g in range(G):
            if value[g] < math.inf:
                assert value[g].item() == ref.kstep_path(cost.reshape(G, J, J)[g].tolist(), K,
                                                          ["sum", "max"][objective])[1]
    try:
        _C.cpu.traceback(capsule(from_), G, K, J, capsule(path))
    except ValueError:
        return
    assert from_.numel() == G * (K + 1) * J
    got = path.reshape(G, K)
    if bool(((from_ >= 0) & (from_ < J)).all()):  # a DP's predecessors: the reference's domain
        assert got.tolist() == [ref.traceback(from_.reshape(G, K + 1, J)[g].tolist(), K) for g in range(G)]
    else:  # a predecessor off the grid ends the path in -1s, never a read outside from_
        assert bool(((got >= -1) & (got < J)).all())


@settings
@hypothesis.given(st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=4), min_size=1,
                           max_size=6), SIZES, SIZES)
def test_median_front_and_entry_point(rows, S, K):
    width = len(rows[0])
    rows = [r for r in rows if len(r) == width]
    assert dp.median_steps(torch.tensor(rows, dtype=torch.int64)).tolist() == ref.median(rows)
    out = torch.empty(max(0, min(K, 8)), dtype=torch.int64)
    try:
        _C.cpu.median_steps(capsule(torch.tensor(rows, dtype=torch.int64)), S, K, capsule(out))
    except ValueError:
        return
    # accepted: S x K elements, read as S rows of K (the element count is what the capsule vouches for)
    assert S * K == len(rows) * width
    assert out.tolist() == ref.median(torch.tensor(rows, dtype=torch.int64).reshape(S, K).tolist())


@settings
@hypothesis.given(st.integers(0, 6), st.integers(1, 70), st.integers(1, 5), st.integers(1, 3),
                  st.sampled_from([torch.float32, torch.float64, torch.bfloat16]), st.booleans(), st.booleans(),
                  st.integers(-1, 7), st.sampled_from([1, 2]))
def test_cost_op_front(R, D, J, B, dtype, strided_rows, strided_grid, grid_shift, norm):
    g = torch.Generator().manual_seed(R * 1000 + D)
    x = torch.randn(R, 2 * D, generator=g).to(dtype)[:, ::2]  # a strided view of the latent
    v = torch.randn(R, D, generator=g).to(dtype)
    targets = torch.randn(J, B, D, generator=g).to(dtype)
    row_sample = torch.randint(0, B, (2 * R,), generator=g)[::2] if strided_rows else torch.randint(0, B, (R,))
    row_grid = torch.randint(1, J + 1, (R,), generator=g) + (grid_shift if grid_shift < 0 or grid_shift > 5 else 0)
    s = torch.linspace(0, 1, 2 * (J + 1), dtype=torch.float64)[::2] if strided_grid else \
        torch.linspace(0, 1, J + 1, dtype=torch.float64)
    try:
        got = euler_costs(x, v, targets, row_sample, row_grid, s, norm=norm)
    except ValueError as err:
        assert "row_grid" in str(err)  # the only invalid input drawn: grid indices off the grid
        return
    expected = euler_costs_torch(x.contiguous(), v, targets, row_sample.contiguous(), row_grid, s.contiguous(), norm)
    torch.testing.assert_close(got, expected, rtol=1e-12 if dtype != torch.bfloat16 else 1e-2, atol=0)


GOOD = {"format": "oss_fast.schedule/1", "indices": [1, 3], "sigmas": [0.75, 0.25, 0.0],
        "grid": [0.0, 0.25, 0.5, 0.75, 1.0], "timesteps": None, "parameterization": "flow", "metadata": {"a": 1}}
JSON = st.recursive(st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=True)
                    | st.text(max_size=5), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)


@settings
@hypothesis.given(st.sampled_from(sorted(GOOD)), JSON)
def test_schedule_load_with_a_field_replaced(tmp_path_factory, field, value):
    path = tmp_path_factory.mktemp("s") / "s.json"
    path.write_text(json.dumps(dict(GOOD, **{field: value})))
    try:
        schedule = Schedule.load(path)
    except ValueError:
        return
    # accepted: a valid schedule, which saves and loads back to itself
    assert all(math.isfinite(s) for s in schedule.sigmas) and schedule.sigmas[-1] == 0.0
    schedule.save(path)
    assert Schedule.load(path) == schedule


@settings
@hypothesis.given(st.binary(max_size=64), st.integers(0, 400))
def test_schedule_load_of_damaged_bytes(tmp_path_factory, noise, at):
    good = json.dumps(GOOD).encode()
    path = tmp_path_factory.mktemp("s") / "s.json"
    path.write_bytes(good[:at] + noise + good[at + len(noise):])
    try:
        Schedule.load(path)
    except ValueError:
        pass
