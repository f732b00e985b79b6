"""Member/non-member splits: four equal, disjoint, seeded quarters, saved with a hash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lightning_talos.data.splits import (
    QUARTERS,
    Splits,
    load_splits,
    member_split,
    resolve_splits,
    save_splits,
)
from lightning_talos.errors import UserError


def _quarters(splits: Splits) -> list[np.ndarray]:
    return [getattr(splits, name) for name in QUARTERS]


@pytest.mark.parametrize(("n", "seed"), [(100, 0), (1000, 3), (8, 1)])
def test_four_equal_disjoint_quarters_in_range(n: int, seed: int) -> None:
    splits = member_split(n, seed=seed)
    parts = _quarters(splits)
    assert [len(p) for p in parts] == [n // 4] * 4
    assert splits.quarter_size == n // 4
    assert splits.sizes() == dict.fromkeys(QUARTERS, n // 4)
    union = np.concatenate(parts)
    assert len(np.unique(union)) == len(union)  # disjoint, no duplicates inside a quarter
    assert union.min() >= 0 and union.max() < n
    for part in parts:
        assert part.dtype == np.int64
        assert (np.diff(part) > 0).all()  # sorted


def test_members_and_nonmembers_by_role() -> None:
    splits = member_split(40, seed=0)
    assert splits.members("target") is splits.target_train
    assert splits.nonmembers("target") is splits.target_test
    assert splits.members("shadow") is splits.shadow_train
    assert splits.nonmembers("shadow") is splits.shadow_test


def test_same_seed_same_splits_other_seed_differs() -> None:
    a, b = member_split(200, seed=5), member_split(200, seed=5)
    for x, y in zip(_quarters(a), _quarters(b)):
        np.testing.assert_array_equal(x, y)
    assert a.hash == b.hash
    c = member_split(200, seed=6)
    assert c.hash != a.hash
    assert not all(np.array_equal(x, y) for x, y in zip(_quarters(a), _quarters(c)))


def test_pool_size_caps_the_pool() -> None:
    splits = member_split(1000, seed=0, pool_size=40)
    assert splits.sizes() == dict.fromkeys(QUARTERS, 10)
    assert splits.pool_len == 1000
    union = np.concatenate(_quarters(splits))
    assert len(np.unique(union)) == 40 and union.max() < 1000
    # a cap above the pool size changes nothing
    assert member_split(100, seed=0, pool_size=10_000).hash == member_split(100, seed=0).hash


def test_remainder_dropped() -> None:
    splits = member_split(10, seed=0)
    assert splits.sizes() == dict.fromkeys(QUARTERS, 2)
    assert len(np.unique(np.concatenate(_quarters(splits)))) == 8


@pytest.mark.parametrize(("n", "cap"), [(3, None), (0, None), (100, 3)])
def test_too_small_pool_refused(n: int, cap: int | None) -> None:
    with pytest.raises(UserError, match="too small"):
        member_split(n, seed=0, pool_size=cap)


def test_hash_is_stable_and_tracks_indices() -> None:
    splits = member_split(40, seed=0)
    assert splits.hash == member_split(40, seed=0).hash
    assert len(splits.hash) == 16 and int(splits.hash, 16) >= 0
    parts = _quarters(splits)
    edited = parts[0].copy()
    edited[0] = parts[1][0]
    changed = Splits(edited, *parts[1:], seed=splits.seed, pool_len=splits.pool_len)
    assert changed.hash != splits.hash
    # swapping two quarters changes the hash too (quarter names are hashed)
    swapped = Splits(parts[1], parts[0], *parts[2:], seed=0, pool_len=40)
    assert swapped.hash != splits.hash


def test_save_load_round_trip(tmp_path: Path) -> None:
    splits = member_split(50, seed=2, pool_size=44)
    path = tmp_path / "sub" / "splits.json"
    save_splits(splits, path)
    assert json.loads(path.read_text())["hash"] == splits.hash
    loaded = load_splits(path)
    assert loaded.hash == splits.hash
    assert (loaded.seed, loaded.pool_len) == (2, 50)
    for x, y in zip(_quarters(loaded), _quarters(splits)):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == np.int64
    assert not list(path.parent.glob("*.tmp"))


def test_resolve_saves_then_reuses(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    first = resolve_splits(member_split(40, seed=0), path)
    assert path.is_file()
    written = path.read_text()
    again = resolve_splits(member_split(40, seed=0), path)
    assert again.hash == first.hash
    assert path.read_text() == written


def test_resolve_refuses_a_different_hash(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    resolve_splits(member_split(40, seed=0), path)
    with pytest.raises(UserError, match="hash") as err:
        resolve_splits(member_split(40, seed=1), path)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="hash"):
        resolve_splits(member_split(40, seed=0, pool_size=20), path)


def test_tampered_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    save_splits(member_split(40, seed=0), path)
    payload = json.loads(path.read_text())
    payload["target_train"][0], payload["target_test"][0] = (
        payload["target_test"][0],
        payload["target_train"][0],
    )
    path.write_text(json.dumps(payload))
    with pytest.raises(UserError, match="hash"):
        load_splits(path)
    with pytest.raises(UserError):
        resolve_splits(member_split(40, seed=0), path)


@pytest.mark.parametrize("text", ["not json", "{}", '{"hash": "x"}'])
def test_malformed_file_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "splits.json"
    path.write_text(text)
    with pytest.raises(UserError, match="cannot read"):
        load_splits(path)
