"""The bundled patches model: 16x16 RGB patches of scikit-learn's two photographs."""

import pytest
import torch

from oss_fast.zoo import PatchesFlow, patches

from models import euler_samples

pytest.importorskip("sklearn")


def test_crops_are_patches_of_the_photographs_with_their_labels():
    photographs = PatchesFlow.photographs()
    assert photographs.shape == (2, 3, 213, 320) and photographs.min() >= -1 and photographs.max() <= 1
    x, labels = PatchesFlow.crops(photographs, 6, torch.Generator().manual_seed(0))
    assert x.shape == (6, 3, 16, 16)
    for patch, label in zip(x, labels):  # each crop (or its mirror) occurs in its own photograph
        windows = photographs[label].unfold(1, 16, 1).unfold(2, 16, 1)  # [3, 198, 305, 16, 16]
        found = [((windows - p[:, None, None]).abs().amax(dim=(0, 3, 4)) == 0).any() for p in (patch, patch.flip(-1))]
        assert any(found)


def test_samples_match_the_pixel_statistics_of_each_photograph():
    model = patches(teacher_steps=40)
    photographs = PatchesFlow.photographs()
    for label in (0, 1):
        x = euler_samples(model, model.noise(96, seed=label), torch.full((96,), label))
        data = photographs[label]
        assert abs(x.mean() - data.mean()) < 0.15
        assert abs(x.std() - data.std()) < 0.15
        # per colour channel too: the temple's and the flower's palettes differ
        assert (x.mean(dim=(0, 2, 3)) - data.mean(dim=(1, 2))).abs().max() < 0.2


def test_weights_are_small_and_the_shapes_are_checked():
    model = patches(teacher_steps=10)
    assert sum(p.numel() for p in model.net.parameters()) < 500_000
    with pytest.raises(ValueError, match=r"expected x \[R, 3, 16, 16\]"):
        model(torch.zeros(2, 1, 8, 8), torch.tensor([3]))
    with pytest.raises(ValueError, match="labels"):
        model(model.noise(2), torch.tensor([3]), torch.tensor([0, 3]))
