"""The contract every bundled model keeps (DESIGN §2), and loading models by name."""

import pytest
import torch

from oss_fast.grid import shifted_grid
from oss_fast.zoo import BUNDLED, DigitsFlow, GaussianMixtureFlow, PatchesFlow, digits, load_model, noises, patches

pytest.importorskip("sklearn")

BUNDLED_MODELS = {
    "mixture": lambda: GaussianMixtureFlow(shape=(4, 8, 8), teacher_steps=200),
    "digits": lambda: digits(dtype=torch.float64),
    "digits guided": lambda: digits(guidance_scale=2.5, dtype=torch.float64),
    "patches": lambda: patches(teacher_steps=20, dtype=torch.float64),
}


@pytest.mark.parametrize("name", list(BUNDLED_MODELS))
@pytest.mark.parametrize("conditional", [True, False])
def test_a_rows_output_does_not_depend_on_its_batch(name, conditional):
    # Searches batch rows of different samples and grid indices: a row's velocity must not change
    # with the rows beside it, or batched and per-sample searches would disagree.
    model = BUNDLED_MODELS[name]()
    n, N = 29, len(model.fm_steps) - 1
    x = model.noise(n, seed=3)
    t = torch.randint(1, N + 1, (n,), generator=torch.Generator().manual_seed(0))
    cond = model.labels(n, seed=1) if conditional and hasattr(model, "labels") else None
    if conditional and cond is None:
        cond = torch.randint(0, model.components, (n,), generator=torch.Generator().manual_seed(1))
    batched = model(x, t, cond, {})
    one_by_one = torch.cat([model(x[i:i + 1], t[i:i + 1], None if cond is None else cond[i:i + 1], {})
                            for i in range(n)])
    assert batched.shape == x.shape and batched.dtype == x.dtype
    assert torch.equal(batched, one_by_one)


@pytest.mark.parametrize("name,kind", [("digits", DigitsFlow), ("patches", PatchesFlow),
                                       ("gaussian_mixture", GaussianMixtureFlow), ("mixture", GaussianMixtureFlow)])
def test_bundled_models_load_by_name_on_the_asked_grid(name, kind):
    model = load_model(name, teacher_steps=40, shift=3.0)
    assert isinstance(model, kind)
    assert torch.equal(model.fm_steps, shifted_grid(40, 3.0))
    assert set(BUNDLED) == {"digits", "patches", "gaussian_mixture"}


def test_noises_are_seeded_and_carry_labels_for_conditional_models():
    model = load_model("digits", teacher_steps=10)
    z, cond = noises(model, 5, seed=7)
    z2, cond2 = noises(model, 5, seed=7)
    assert torch.equal(z, z2) and torch.equal(cond, cond2) and z.shape == (5, 1, 8, 8)
    assert not torch.equal(noises(model, 5, seed=8)[0], z)
    assert noises(load_model("gaussian_mixture", teacher_steps=10), 3, seed=0)[1] is None


def make_constant(teacher_steps=10):
    class Constant:
        fm_steps = shifted_grid(teacher_steps)

    return Constant()


@pytest.mark.parametrize("spec,message", [
    ("nope", "unknown model 'nope'"),
    ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
    ("json:nothing_here", "has no factory 'nothing_here'"),
    ("collections:OrderedDict", "returned OrderedDict, which has no fm_steps"),
])
def test_bad_model_specs_are_value_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        load_model(spec)


def test_factories_get_the_arguments_they_take():
    model = load_model("test_zoo:make_constant", teacher_steps=7)
    assert len(model.fm_steps) == 8
    with pytest.raises(ValueError, match="no noise"):
        noises(model, 2, seed=0)


def test_bundled_fingerprints_follow_what_changes_the_velocity():
    from oss_fast.engine.checkpoint import _digest

    digest = lambda model: _digest(model.fingerprint)  # noqa: E731
    for build, changes in ((GaussianMixtureFlow, [dict(mean_scale=2.0), dict(std_range=(0.3, 0.8)), dict(seed=1),
                                                   dict(components=7), dict(shape=(4, 32, 16))]),
                           (digits, [dict(guidance_scale=2.0), dict(dtype=torch.float64)]),
                           (patches, [dict(guidance_scale=2.0), dict(dtype=torch.float64)])):
        base = digest(build())
        assert digest(build()) == base  # built alike: the same fingerprint
        for change in changes:
            assert digest(build(**change)) != base, (build, change)
    assert digest(digits()) != digest(patches())
    model = digits()
    before = digest(model)
    with torch.no_grad():
        model.net.conv_in.weight.mul_(1.01)  # other weights of the same network
    assert digest(model) != before
