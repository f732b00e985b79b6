"""The embedded shapes-on-stripes dataset: determinism, balance, noise, recoverable attribute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_talos.data.formats.synthetic import ORIENTATION_NAMES, SHAPE_NAMES, make_synthetic
from lightning_talos.errors import UserError


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    first = make_synthetic(n=64, seed=3)
    again = make_synthetic(n=64, seed=3)
    other = make_synthetic(n=64, seed=4)
    assert torch.equal(first.images, again.images)
    assert np.array_equal(first.labels, again.labels)
    assert first.attributes is not None and again.attributes is not None
    assert np.array_equal(first.attributes, again.attributes)
    assert not torch.equal(first.images, other.images)


def test_pool_fields() -> None:
    pool = make_synthetic(n=10, image_size=48)
    assert pool.images.shape == (10, 3, 48, 48) and pool.images.dtype == torch.uint8
    assert pool.labels.dtype == np.int64 and pool.attributes is not None
    assert pool.attributes.dtype == np.int64
    assert (pool.num_classes, pool.num_attribute_classes) == (8, 2)
    assert pool.class_names == SHAPE_NAMES and pool.attribute_names == ORIENTATION_NAMES


def test_attribute_is_balanced_and_independent_of_the_label() -> None:
    pool = make_synthetic(n=2000, seed=0, label_noise=0.0, pixel_noise=0.0)
    assert pool.attributes is not None
    assert abs(pool.attributes.mean() - 0.5) < 0.04
    table = np.zeros((8, 2))
    np.add.at(table, (pool.labels, pool.attributes), 1)
    # 125 expected per cell; a dependent attribute would empty some cells.
    assert table.min() > 80 and table.max() < 175


def test_label_noise_rate() -> None:
    clean = make_synthetic(n=1000, seed=5, label_noise=0.0)
    noisy = make_synthetic(n=1000, seed=5, label_noise=0.3)
    # Same seed, same draws up to the flip: the images and attributes are identical.
    assert torch.equal(clean.images, noisy.images)
    assert abs((clean.labels != noisy.labels).mean() - 0.3) < 0.01
    assert noisy.labels.min() >= 0 and noisy.labels.max() < 8


def test_stripe_orientation_is_recoverable_from_pixels() -> None:
    pool = make_synthetic(n=500, seed=1)
    assert pool.attributes is not None
    x = pool.images.float()
    # Horizontal stripes change along rows (vertical differences), vertical ones along columns.
    along_rows = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
    along_cols = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    guess = (along_cols > along_rows).long().numpy()  # 1 = vertical
    assert (guess == pool.attributes).mean() > 0.9


@pytest.mark.parametrize(
    "kwargs", [{"n": 0}, {"n": 4, "image_size": 4}, {"n": 4, "label_noise": 1.0}]
)
def test_bad_arguments_are_user_errors(kwargs: dict) -> None:
    with pytest.raises(UserError):
        make_synthetic(**kwargs)


def test_clean_labels_are_the_drawn_shapes() -> None:
    clean = make_synthetic(n=1000, seed=5, label_noise=0.0)
    noisy = make_synthetic(n=1000, seed=5, label_noise=0.2)
    assert clean.clean_labels is not None and noisy.clean_labels is not None
    # Without noise the task labels are the clean ones; with it, exactly 20% differ from them.
    assert np.array_equal(clean.clean_labels, clean.labels)
    assert np.array_equal(noisy.clean_labels, clean.labels)
    assert (noisy.labels != noisy.clean_labels).mean() == pytest.approx(0.2)
