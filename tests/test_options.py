"""A search's options are defined once, by check_options' signature: oss_fast.search, SearchOptions and
the `oss-fast search` command are held to it here."""

import dataclasses
import inspect
from pathlib import Path
import pytest
import torch

from oss_fast import api, cli
from oss_fast.engine.options import AGGREGATES, MODES, OPTION_NAMES, SearchOptions, check_options
from oss_fast.solvers import SOLVERS

# the inputs of one run that are not options of the search
RUN_INPUTS = {"model_kwargs", "per_sample_kwargs", "checkpoint", "resume", "process_group"}
# options that reach SearchOptions under another name, and fields that are no option of their own
RENAMED = {"max_batch": "chunk"}
DERIVED_FIELDS = {"published", "validation_noises", "aggregate_given", "refine_rounds"}


def keyword_parameters(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.kind is p.KEYWORD_ONLY}


def test_search_takes_exactly_the_options_check_options_defines_with_the_same_defaults():
    search = keyword_parameters(api.search)
    options = keyword_parameters(check_options)
    assert set(search) - set(OPTION_NAMES) == RUN_INPUTS
    assert {name: search[name] for name in OPTION_NAMES} == {name: options[name] for name in OPTION_NAMES}


def test_every_option_is_documented_in_search():
    undocumented = [name for name in OPTION_NAMES if f"{name}:" not in api.search.__doc__ and
                    f"{name} " not in api.search.__doc__]
    assert not undocumented


def test_search_options_hold_every_option_and_nothing_unexplained():
    fields = {field.name for field in dataclasses.fields(SearchOptions)}
    assert {RENAMED.get(name, name) for name in OPTION_NAMES} | DERIVED_FIELDS == fields


def test_the_command_line_offers_the_options_choices_and_defaults():
    defaults = keyword_parameters(check_options)
    search = next(action for action in cli.parser()._subparsers._group_actions[0].choices.values()
                  if action.prog.endswith(" search"))
    flags = {action.dest: action for action in search._actions}
    assert list(flags["mode"].choices) == list(MODES) and flags["mode"].default == defaults["mode"]
    assert list(flags["solver"].choices) == list(SOLVERS) and flags["solver"].default == defaults["solver"]
    assert set(flags["aggregate"].choices) == set(AGGREGATES) and flags["aggregate"].default is None


def test_flags_left_out_pass_the_options_defaults():
    parsed = cli.parser().parse_args(["search", "--model", "gaussian_mixture"])
    options = cli.search_options(parsed, refine=True)
    assert set(options) <= set(OPTION_NAMES)
    defaults = keyword_parameters(check_options)
    left_out = {"aggregate", "stride", "band", "max_batch", "validate"}
    assert {name: options[name] for name in left_out} == {name: defaults[name] for name in left_out}
    assert options["mode"] == defaults["mode"] and options["solver"] == defaults["solver"]
    assert set(cli.FLAG_OF) <= set(OPTION_NAMES)


def test_teacher_mode_refuses_a_solver_of_higher_order_than_its_pair_states_hold(monkeypatch):
    """A third-order solver added to the registry is refused by mode teacher before any model call."""
    from oss_fast.engine import options
    from oss_fast.zoo import GaussianMixtureFlow

    model = GaussianMixtureFlow(shape=(2, 2, 2), teacher_steps=10)
    z = torch.randn(2, 2, 2, 2)
    third = dataclasses.replace(SOLVERS["unipc"], name="third", order=3)
    monkeypatch.setitem(options.SOLVERS, "third", third)
    with pytest.raises(ValueError, match=r"mode 'teacher' scores a third step from the pair .* order 2 at most"):
        check_options(model, z, student_steps=3, mode="teacher", solver="third")
    assert check_options(model, z, student_steps=3, mode="exact", solver="third", validate=False).solver == "third"


def test_every_option_has_a_row_in_the_search_docs():
    rows = [line for line in (Path(__file__).parents[1] / "docs" / "search.md").read_text().splitlines()
            if line.startswith("| `")]
    named = {name for row in rows for name in row.split("|")[1].replace("`", "").replace(",", " ").split()}
    assert set(OPTION_NAMES) <= named
