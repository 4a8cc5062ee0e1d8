import importlib

import pytest
import torch

from oss_fast.grid import shifted_grid
from oss_fast.zoo import DigitsFlow, digits

from models import euler_samples

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def classifier():
    """3-nearest-neighbours on the real digits, in their 0..16 pixel space."""
    from sklearn.neighbors import KNeighborsClassifier

    x, labels = DigitsFlow.data()
    return KNeighborsClassifier(n_neighbors=3).fit(((x + 1) * 8).reshape(len(x), -1).numpy(), labels.numpy())


def test_weights_load_on_a_shifted_grid():
    model = digits(teacher_steps=40, shift=3.0)
    assert model.fm_steps.dtype == torch.float64 and model.fm_steps.shape == (41,)
    assert model.fm_steps[0] == 0 and model.fm_steps[-1] == 1
    assert torch.equal(model.fm_steps, shifted_grid(40, 3.0))
    assert sum(p.numel() for p in model.net.parameters()) < 500_000


def test_missing_weights_name_the_training_script(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.import_module("oss_fast.zoo.digits_flow"), "WEIGHTS_PATH", tmp_path / "none.pt")
    with pytest.raises(FileNotFoundError, match="scripts/train_zoo.py"):
        digits()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_has_the_shape_and_dtype_of_x(dtype):
    model = digits(teacher_steps=20)
    x = model.noise(5, dtype=dtype)
    v = model(x, torch.full((5,), 7), model.labels(5))
    assert v.shape == (5, 1, 8, 8) and v.dtype == dtype and torch.isfinite(v).all()
    assert torch.equal(model(x, torch.tensor([7]), None), model(x, torch.full((5,), 7), None))


def test_labels_out_of_range_are_rejected():
    model = digits()
    with pytest.raises(ValueError, match="labels"):
        model(model.noise(2), torch.tensor([3]), torch.tensor([1, 11]))


def test_guidance_extrapolates_from_the_null_label():
    plain = digits(dtype=torch.float64)
    guided = digits(guidance_scale=2.5, dtype=torch.float64)
    x = plain.noise(12, seed=4)
    t = torch.randint(1, 101, (12,), generator=torch.Generator().manual_seed(2))
    labels = plain.labels(12, seed=5)
    cond_v, uncond_v = plain(x, t, labels), plain(x, t, None)
    assert torch.equal(uncond_v, plain(x, t, torch.full((12,), 10)))
    assert not torch.allclose(cond_v, uncond_v, atol=1e-3)  # the labels matter
    torch.testing.assert_close(guided(x, t, labels), uncond_v + 2.5 * (cond_v - uncond_v))
    assert torch.equal(guided(x, t, None), uncond_v)


def test_class_conditional_samples_show_their_digit(classifier):
    model = digits(teacher_steps=50)
    labels = torch.arange(10).repeat_interleave(5)
    x = euler_samples(model, model.noise(50, seed=7), labels)
    predicted = classifier.predict(((x + 1) * 8).clamp(0, 16).reshape(50, -1).numpy())
    assert (predicted == labels.numpy()).mean() >= 0.8


def test_unconditional_samples_match_the_pixel_statistics():
    model = digits(teacher_steps=50)
    x = euler_samples(model, model.noise(200, seed=8), None)
    data, _ = DigitsFlow.data()
    assert abs(x.mean() - data.mean()) < 0.1
    assert abs(x.std() - data.std()) < 0.1
    # The average image too, not only the overall statistics.
    assert (x.mean(0) - data.mean(0)).abs().max() < 0.25
