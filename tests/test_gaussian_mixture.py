import pytest
import torch

from oss_fast import reference as ref
from oss_fast.grid import shifted_grid
from oss_fast.zoo import GaussianMixtureFlow


def test_velocity_at_pure_noise_is_x_minus_prior_mean():
    # At s = 1 every component has the same marginal N(0, I): posterior = prior, E[eps|x] = x.
    model = GaussianMixtureFlow(shape=(2, 3), components=3, teacher_steps=10)
    x = model.noise(4, dtype=torch.float64)
    v = model(x, torch.full((4,), 10))
    expected = x.reshape(4, -1) - (model.weights[:, None] * model.means).sum(0)
    torch.testing.assert_close(v.reshape(4, -1), expected, rtol=1e-12, atol=1e-12)


def test_conditional_velocity_is_the_single_gaussian_one():
    # Given component k: E[x0|x] = mu + (1-s) sigma^2 / var (x - (1-s) mu), E[eps|x] = s / var (x - (1-s) mu).
    model = GaussianMixtureFlow(shape=(5,), components=4, teacher_steps=8, shift=2.0)
    x = model.noise(3, seed=2, dtype=torch.float64)
    k, i = 2, 5
    s = model.fm_steps[i].item()
    mu, sig2 = model.means[k], model.stds[k].item() ** 2
    var = (1 - s) ** 2 * sig2 + s**2
    d = x - (1 - s) * mu
    expected = s / var * d - (mu + (1 - s) * sig2 / var * d)
    v = model(x, torch.full((3,), i), torch.full((3,), k))
    torch.testing.assert_close(v, expected, rtol=1e-12, atol=1e-12)


def test_log_likelihood_matches_torch_distributions():
    model = GaussianMixtureFlow(shape=(3,), components=5)
    x, _ = model.sample_data(16, seed=4, dtype=torch.float64)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=model.weights),
        torch.distributions.Independent(torch.distributions.Normal(model.means, model.stds[:, None].expand(5, 3)), 1),
    )
    torch.testing.assert_close(model.log_likelihood(x), mix.log_prob(x), rtol=1e-10, atol=1e-10)


def test_shifted_grid():
    g = shifted_grid(4, 3.0)
    assert g[0].item() == 0.0 and g[-1].item() == 1.0
    assert torch.all(g[1:] > g[:-1])
    assert g[2].item() == pytest.approx(0.75)  # 3 * 0.5 / (1 + 2 * 0.5)
    assert torch.equal(shifted_grid(4), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))


def test_thousand_step_euler_samples_land_on_the_mixture():
    model = GaussianMixtureFlow(shape=(4, 16, 16), components=8, teacher_steps=1000, seed=0)
    n = 256
    x = ref.sample(model, model.noise(n, seed=1), list(range(1, 1001)))
    labels = model.nearest_component(x)
    counts = torch.bincount(labels, minlength=8).double()
    w = model.weights
    # each component's frequency within 4 binomial standard deviations
    assert torch.all((counts - n * w).abs() <= 4 * torch.sqrt(n * w * (1 - w))), (counts, n * w)
    for k in range(8):
        members = x[labels == k].reshape(-1, model.dim).double()
        if len(members) < 8:
            continue
        residual_var = (members - model.means[k]).var(dim=0).mean().item()
        assert residual_var == pytest.approx(model.stds[k].item() ** 2, rel=0.05), k


def test_bad_arguments():
    with pytest.raises(ValueError, match="shift"):
        shifted_grid(10, 0.0)
    model = GaussianMixtureFlow(shape=(2,), components=2, teacher_steps=4)
    with pytest.raises(ValueError, match="labels"):
        model(model.noise(1), torch.tensor([1]), torch.tensor([5]))
    with pytest.raises(ValueError, match="expected x"):
        model(torch.zeros(1, 3), torch.tensor([1]))
