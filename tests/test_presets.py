"""Published OSS presets: valid Schedules that hold the published numbers."""

import ast
import pathlib

import numpy as np
import pytest

from oss_fast import Schedule, presets


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_is_a_valid_euler_flow_schedule(name):
    s = presets.get(name)
    assert isinstance(s, Schedule)
    assert s.sigmas[-1] == 0.0 and s.sigmas.count(0.0) == 1
    assert all(b < a for a, b in zip(s.sigmas, s.sigmas[1:]))
    assert all(0.0 <= v <= 1.0 for v in s.sigmas)
    assert len(s) == s.metadata["steps"] == presets.PRESETS[name].steps
    assert s.solver == "euler" and s.parameterization == "flow"
    assert s.metadata["preset"] == name and s.metadata["source"].startswith("comfyanonymous/ComfyUI/")
    assert len(s.interpolate(7)) == 7  # moves to another step count


def test_one_preset_per_published_family():
    assert {"flux", "wan", "chroma"} <= set(presets.names())
    assert presets.names() == sorted(presets.names())


# (K, {position in the sigmas: value}) as read from ComfyUI's nodes_optimalsteps.py NOISE_LEVELS
PUBLISHED = {
    "flux": (10, {0: 0.9968, 7: 0.8287, 9: 0.2808}),
    "wan": (20, {0: 1.0, 18: 0.539, 19: 0.208}),
    "chroma": (40, {0: 0.992, 24: 0.501, 39: 0.048}),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_spot_values_match_the_published_lists(name):
    K, values = PUBLISHED[name]
    s = presets.get(name)
    assert len(s) == K
    for i, v in values.items():
        assert s.sigmas[i] == v
    assert presets.PRESETS[name].published[-1] == 0.001  # the node's stand-in, replaced by 0


def test_wan_records_the_shift_its_authors_state():
    assert presets.get("wan").metadata["shift"] == 8.0
    assert presets.get("flux").metadata["shift"] is None


def test_get_returns_independent_copies():
    a = presets.get("flux")
    a.sigmas[0] = 0.5
    a.metadata["note"] = "changed"
    b = presets.get("flux")
    assert b.sigmas[0] == 0.9968 and b.metadata["note"] != "changed"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        presets.get("xyz")
    assert str(err.value) == "unknown preset 'xyz' (known: chroma, flux, wan)"
    with pytest.raises(ValueError):
        presets.get(None)


def test_names_are_case_insensitive():
    assert presets.get("FLUX") == presets.get("flux") == presets.get("Flux")


def test_describe_rows_agree_with_get():
    rows = presets.describe()
    assert [r["name"] for r in rows] == presets.names()
    for row in rows:
        s = presets.get(row["name"])
        assert row["steps"] == len(s) and row["solver"] == s.solver
        assert (row["model"], row["source"], row["shift"]) == (
            s.metadata["model"], s.metadata["source"], s.metadata["shift"])


@pytest.mark.parametrize("name", presets.names())
def test_json_round_trip(tmp_path, name):
    s = presets.get(name)
    path = tmp_path / f"{name}.json"
    s.save(path)
    assert Schedule.load(path) == s


def test_module_uses_only_the_plain_value_layers():
    tree = ast.parse(pathlib.Path(presets.__file__).read_text())
    ours = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert ours <= {"schedule", "grid"}


def test_steps_resample_by_the_nodes_rule():
    """The node interpolates log-linearly over all K + 1 published values (0.001 included) and then
    sets the last to 0: for FLUX at 20 steps, the published values at every other step, and between
    0.2808 and 0.001 their geometric mean."""
    s = presets.get("flux", 20)
    published = presets.PRESETS["flux"].published
    assert len(s) == 20 and s.sigmas[-1] == 0.0
    assert s.sigmas[:-1:2] == pytest.approx(published[:-1], rel=1e-12)
    assert s.sigmas[19] == pytest.approx((0.2808 * 0.001) ** 0.5, rel=1e-12)
    assert s.metadata["steps"] == 20 and s.metadata["interpolated_from"] == 10
    assert presets.get("flux", 10) == presets.get("flux")
    with pytest.raises(ValueError, match=r"steps must be a whole number in \[1, 10000\]"):
        presets.get("flux", 0)


def test_wan_preset_carries_its_shift_to_the_schedule():
    assert presets.get("wan").shift == 8.0 and presets.get("flux").shift is None


def test_steps_are_whole_numbers_whatever_their_value():
    """10.0 equals the preset's own 10 steps and was accepted while 9.0 was refused: a float is never a
    step count; numpy integers are."""
    for bad in (10.0, 9.0, True, "10", 10.5):
        with pytest.raises(ValueError, match=r"steps must be a whole number in \[1, 10000\]"):
            presets.get("flux", bad)
    assert presets.get("flux", np.int64(10)) == presets.get("flux")
    assert presets.get("flux", np.int32(9)) == presets.get("flux", 9)
    assert presets.get("flux", np.int64(9)).metadata["steps"] == 9
