"""TalosDataModule: augmentation chosen by use; eval is exact, ordered and never random."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_talos.config.load import compose
from lightning_talos.data.datamodule import (
    QuarterDataset,
    Sample,
    TalosDataModule,
    as_float,
    collate,
)
from lightning_talos.data.formats.synthetic import make_synthetic
from lightning_talos.data.pool import NO_ATTRIBUTE, Pool
from lightning_talos.data.splits import member_split

SIZE = 16
N = 48


@pytest.fixture(scope="module")
def pool() -> Pool:
    return make_synthetic(n=N, image_size=SIZE, seed=0)


@pytest.fixture(scope="module")
def splits():
    return member_split(N, seed=0)


def _data(mode: str = "batched", batch: int = 5):
    overrides = [f"data.image_size={SIZE}", f"data.batch_size={batch}"]
    overrides += [f"data.eval_batch_size={batch}", f"data.aug.mode={mode}"]
    return compose(overrides).data


def _dm(pool: Pool, splits, use: str, mode: str = "batched", **kw) -> TalosDataModule:
    return TalosDataModule(_data(mode), pool, splits, role="target", use=use, **kw)


def _check_metadata(batch: Sample, pool: Pool) -> None:
    index = torch.as_tensor(batch.index).long()
    assert torch.equal(torch.as_tensor(batch.label).long(), torch.as_tensor(pool.labels)[index])
    expected_attr = (
        torch.as_tensor(pool.attributes)[index]
        if pool.attributes is not None
        else torch.full_like(index, NO_ATTRIBUTE)
    )
    assert torch.equal(torch.as_tensor(batch.attribute).long(), expected_attr)


def test_eval_loader_is_exact_ordered_and_deterministic(pool: Pool, splits) -> None:
    dm = _dm(pool, splits, "two_views", mode="pil")  # eval ignores the training use
    indices = splits.nonmembers("target")
    loader = dm.eval_loader(indices)
    torch.manual_seed(0)
    first = list(loader)
    torch.manual_seed(123)
    second = list(loader)
    assert len(first) == -(-len(indices) // 5)
    for a, b in zip(first, second):
        assert isinstance(a, Sample)
        assert a.image.dtype == torch.uint8
        assert a.image.shape[1:] == (3, SIZE, SIZE)
        for x, y in zip(a, b):
            assert torch.equal(x, y)
        _check_metadata(a, pool)
    index = torch.cat([b.index for b in first])
    assert torch.equal(index, torch.as_tensor(indices))  # index order, nothing dropped
    images = torch.cat([b.image for b in first])
    assert torch.equal(images, pool.images[torch.as_tensor(indices)])


def test_val_loaders_are_members_then_nonmembers(pool: Pool, splits) -> None:
    for role in ("target", "shadow"):
        dm = TalosDataModule(_data(), pool, splits, role=role, use="flip")
        members, nonmembers = dm.val_dataloader()
        got_m = torch.cat([b.index for b in members])
        got_n = torch.cat([b.index for b in nonmembers])
        assert torch.equal(got_m, torch.as_tensor(splits.members(role)))
        assert torch.equal(got_n, torch.as_tensor(splits.nonmembers(role)))
        assert next(iter(members)).image.dtype == torch.uint8


def test_batched_contrastive_yields_raw_uint8_members(pool: Pool, splits) -> None:
    dm = _dm(pool, splits, "two_views", mode="batched")
    assert dm.train_transform() is None
    seen = []
    for batch in dm.train_dataloader():
        assert batch.image.dtype == torch.uint8
        assert batch.image.shape[1:] == (3, SIZE, SIZE)
        assert torch.equal(batch.image, pool.images[batch.index])
        _check_metadata(batch, pool)
        seen.append(batch.index)
    assert sorted(torch.cat(seen).tolist()) == splits.members("target").tolist()


def test_pil_contrastive_yields_two_float_views(pool: Pool, splits) -> None:
    dm = _dm(pool, splits, "two_views", mode="pil")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, Sample)
    assert batch.image.dtype == torch.float32
    assert batch.image.shape == (5, 2, 3, SIZE, SIZE)
    assert batch.image.min() >= 0 and batch.image.max() <= 1
    assert not torch.equal(batch.image[:, 0], batch.image[:, 1])  # two independent views
    assert set(batch.index.tolist()) <= set(splits.members("target").tolist())
    _check_metadata(batch, pool)


def test_pil_contrastive_with_original_adds_the_clean_image(pool: Pool, splits) -> None:
    dm = _dm(pool, splits, "two_views", mode="pil", with_original=True)
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == (5, 3, 3, SIZE, SIZE)
    torch.testing.assert_close(batch.image[:, 2], as_float(pool.images[batch.index]))


def test_flip_yields_original_or_mirror(pool: Pool, splits) -> None:
    dm = _dm(pool, splits, "flip")
    torch.manual_seed(0)
    flipped = kept = 0
    for batch in dm.train_dataloader():
        assert batch.image.dtype == torch.float32
        assert batch.image.shape[1:] == (3, SIZE, SIZE)
        _check_metadata(batch, pool)
        original = as_float(pool.images[batch.index])
        for img, ref in zip(batch.image, original):
            same, mirror = torch.equal(img, ref), torch.equal(img, ref.flip(-1))
            assert same or mirror
            kept += same
            flipped += mirror and not same
    assert flipped > 0 and kept > 0  # both happen among 12 samples at p=0.5 (seeded)


def test_dataset_without_attribute_gives_minus_one() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=gen)
    bare = Pool("fake", images, np.arange(8) % 3, None, num_classes=3)
    dataset = QuarterDataset(bare, np.array([1, 4, 6]))
    sample = dataset[1]
    assert sample.index == 4 and sample.label == 1 and sample.attribute == NO_ATTRIBUTE
    batch = collate(dataset.__getitems__([0, 2]))
    assert batch.index.tolist() == [1, 6]
    assert batch.attribute.tolist() == [NO_ATTRIBUTE, NO_ATTRIBUTE]
    assert torch.equal(batch.image, images[[1, 6]])
    dm = TalosDataModule(
        compose(["data.image_size=8"]).data,
        bare,
        member_split(8, seed=0),
        role="shadow",
        use="flip",
    )
    for loaded in dm.train_dataloader():
        _check_metadata(loaded, bare)
        assert (loaded.attribute == NO_ATTRIBUTE).all()


def test_getitem_and_getitems_agree(pool: Pool, splits) -> None:
    dataset = QuarterDataset(pool, splits.target_train)
    batch = collate(dataset.__getitems__([0, 3, 5]))
    singles = collate([dataset[i] for i in (0, 3, 5)])
    for x, y in zip(batch, singles):
        assert torch.equal(torch.as_tensor(x), torch.as_tensor(y))
    assert len(dataset) == len(splits.target_train)


def test_as_float() -> None:
    images = torch.tensor([[0, 255, 51]], dtype=torch.uint8)
    torch.testing.assert_close(as_float(images), torch.tensor([[0.0, 1.0, 0.2]]))
    floats = torch.rand(2, 3)
    assert as_float(floats) is floats


@pytest.mark.parametrize(("role", "use"), [("target", "bogus"), ("attacker", "eval")])
def test_bad_use_or_role_raises(pool: Pool, splits, role: str, use: str) -> None:
    with pytest.raises(ValueError):
        TalosDataModule(_data(), pool, splits, role=role, use=use)
