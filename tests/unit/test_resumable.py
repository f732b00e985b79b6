"""The pieces of exact resume: keyed draws, the resumable samplers, random states, data position."""

from __future__ import annotations

import pickle
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from lightning_talos.data.datamodule import QuarterDataset, collate
from lightning_talos.data.pool import Pool
from lightning_talos.data.resumable import Draw, EpochSampler, mix, seeded
from lightning_talos.data.transforms import FlipAugment
from lightning_talos.defences.poisson import EpochPoissonSampler
from lightning_talos.modules.window import WindowMeans
from lightning_talos.runs.resume import data_position, rng_states, set_rng_states


def _sampler(n: int = 10, *, batch: int = 3, replicas: int = 1, rank: int = 0) -> EpochSampler:
    return EpochSampler(range(n), batch_size=batch, seed=7, num_replicas=replicas, rank=rank)


def test_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    a, b = _sampler(), _sampler()
    assert list(a) == list(b) and sorted(a) == list(range(10))
    b.set_epoch(1)
    assert list(b) != list(a)  # a new shuffle each epoch
    a.set_epoch(1)
    assert list(a) == list(b)
    other = EpochSampler(range(10), batch_size=3, seed=8, num_replicas=1, rank=0)
    assert list(other) != list(_sampler())


def test_resume_at_skips_exactly_the_first_batches_once() -> None:
    full = _sampler()
    full.set_epoch(4)
    expected = list(full)
    resumed = _sampler()
    resumed.resume_at(4, 2)
    rest = list(resumed)
    assert rest == expected[2 * 3 :]
    assert [d.key for d in rest] == [d.key for d in expected[6:]]  # same augmentation keys
    assert list(resumed) == expected  # the next epoch pass is whole again


def test_ranks_share_out_one_padded_permutation() -> None:
    shards = [list(_sampler(10, replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # 10 padded to 12
    drawn = sorted(int(i) for shard in shards for i in shard)
    assert set(drawn) == set(range(10)) and len(drawn) == 12
    keys = [d.key for shard in shards for d in shard]
    assert len(set(keys)) == 12  # every position its own draws, padding included


def test_draw_is_an_int_that_keeps_its_key_through_pickling() -> None:
    d = Draw(5, mix(1, 2, 3))
    back = pickle.loads(pickle.dumps(d))
    assert back == 5 and back.key == d.key and isinstance(back, Draw)
    assert torch.as_tensor([d, Draw(2, 0)]).tolist() == [5, 2]
    assert mix(1, 2, 3) != mix(1, 2, 4) and 0 <= mix(1, 2, 3) < 2**63


def test_seeded_transform_depends_on_its_key_only_and_leaves_the_global_stream() -> None:
    flip = FlipAugment(8)
    image = torch.arange(3 * 8 * 8, dtype=torch.uint8).view(3, 8, 8)
    outs = []
    for key in range(12):
        before = torch.get_rng_state()
        outs.append(seeded(key, flip, image))
        assert torch.equal(torch.get_rng_state(), before)
        assert torch.equal(seeded(key, flip, image), outs[-1])  # same key, same draw
    plain = image.float() / 255
    flipped = [torch.equal(o, plain.flip(-1)) for o in outs]
    assert all(f or torch.equal(o, plain) for f, o in zip(flipped, outs))
    assert any(flipped) and not all(flipped)  # both outcomes occur over the keys


def _pool(n: int = 24) -> Pool:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return Pool(name="toy", images=images, labels=np.arange(n) % 3, attributes=None, num_classes=3)


def _epoch(workers: int, batch: int) -> torch.Tensor:
    dataset = QuarterDataset(_pool(), np.arange(24), FlipAugment(8))
    sampler = EpochSampler(dataset, batch_size=batch, seed=3, num_replicas=1, rank=0)
    sampler.set_epoch(2)
    loader = DataLoader(
        dataset, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate
    )
    return torch.cat([b.image for b in loader])


def test_augmented_epoch_does_not_depend_on_workers_batch_size_or_global_seed() -> None:
    torch.manual_seed(0)
    reference = _epoch(0, 6)
    torch.manual_seed(1)
    assert torch.equal(_epoch(0, 4), reference)
    assert torch.equal(_epoch(1, 6), reference)


def test_poisson_sampler_resumes_its_epoch_and_learns_the_epoch_from_lightning() -> None:
    sampler = EpochPoissonSampler(num_samples=50, sample_rate=0.1, seed=3)
    loader = DataLoader(range(50), batch_sampler=sampler)
    _set_sampler_epoch(loader, 3)  # what Lightning's fit loop calls every epoch
    assert sampler.epoch == 3
    full = list(sampler)
    assert len(full) == 10 and full != (sampler.set_epoch(4) or list(sampler))
    resumed = EpochPoissonSampler(num_samples=50, sample_rate=0.1, seed=3)
    resumed.resume_at(3, 4)
    rest = list(resumed)
    assert rest == full[4:]
    assert [[d.key for d in b] for b in rest] == [[d.key for d in b] for b in full[4:]]


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path) -> None:
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    torch.randn(3), np.random.randn(3), random.random()  # a cached Gaussian in NumPy, too
    path = tmp_path / "rng.ckpt"
    torch.save({"rng": rng_states()}, path)

    def draws() -> tuple:
        return torch.rand(4).tolist(), np.random.randn(4).tolist(), random.random()

    expected = draws()
    set_rng_states(torch.load(path, weights_only=True)["rng"])
    assert draws() == expected


def test_window_state_round_trip_continues_the_mean() -> None:
    whole, saved = WindowMeans(), WindowMeans()
    for v in (1.0, 2.0):
        whole.add(loss=torch.tensor(v))
        saved.add(loss=torch.tensor(v))
    resumed = WindowMeans()
    resumed.load_state_dict(saved.state_dict())
    whole.add(loss=torch.tensor(6.0))
    resumed.add(loss=torch.tensor(6.0))
    assert float(resumed.pop(sync=False)["loss"]) == float(whole.pop(sync=False)["loss"]) == 3.0


@pytest.mark.parametrize(
    ("processed", "expected"),
    [(2, {"epoch": 1, "batches": 2}), (4, {"epoch": 2, "batches": 0})],
    ids=["inside an epoch", "at its end"],
)
def test_data_position_from_the_loop_counters(processed: int, expected: dict) -> None:
    progress = SimpleNamespace(current=SimpleNamespace(processed=processed))
    trainer = SimpleNamespace(
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
        current_epoch=1,
        num_training_batches=4,
    )
    assert data_position(trainer) == expected


def test_a_batch_equals_its_samples_one_by_one_and_leaves_the_callers_stream() -> None:
    dataset = QuarterDataset(_pool(), np.arange(24), FlipAugment(8))
    draws = [Draw(i, mix(3, 1, i)) for i in (5, 0, 17, 9)]
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    batch = dataset.__getitems__(draws)
    assert torch.equal(torch.rand(3), expected_next)  # the per-sample seeds were put back
    one_by_one = collate([dataset[d] for d in draws])
    for got, want in zip(batch, one_by_one):
        assert torch.equal(got, want)
    # seeded() draws what torch.manual_seed(key) would have drawn
    torch.manual_seed(mix(3, 1, 17))
    assert torch.equal(batch.image[2], FlipAugment(8)(_pool().images[17]))
    assert dataset.__getitems__([]) == []  # an empty Poisson batch, filled in by its collate
