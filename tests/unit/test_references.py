"""Reference-model data plan: balanced, seeded, prefix-stable, saved with a hash, never re-drawn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lightning_talos.attacks.references import (
    inclusion_matrix,
    load_plan,
    population_sample,
    reference_plan,
    resolve_plan,
    save_plan,
)
from lightning_talos.data.splits import member_split
from lightning_talos.errors import UserError


@pytest.mark.parametrize(("n", "k"), [(101, 4), (100, 16), (7, 2)])
def test_every_candidate_in_half_of_the_references(n: int, k: int) -> None:
    inc = inclusion_matrix(n, k, seed=3)
    assert inc.shape == (k, n) and inc.dtype == bool
    np.testing.assert_array_equal(inc.sum(axis=0), k // 2)  # each column exactly K/2 IN
    np.testing.assert_array_equal(inc[0::2] ^ inc[1::2], True)  # pairs are complements
    assert set(inc.sum(axis=1).tolist()) <= {n // 2, n - n // 2}  # each reference ~ half


def test_odd_k_within_one_of_half_and_rows_differ() -> None:
    inc = inclusion_matrix(50, 5, seed=0)
    assert set(inc.sum(axis=0).tolist()) <= {2, 3}
    assert len({row.tobytes() for row in inc}) == 5  # no two references train on the same half


def test_seeded_and_prefix_stable() -> None:
    a = inclusion_matrix(200, 8, seed=1)
    np.testing.assert_array_equal(a, inclusion_matrix(200, 8, seed=1))
    np.testing.assert_array_equal(a[:3], inclusion_matrix(200, 3, seed=1))  # raising K appends
    assert not np.array_equal(a, inclusion_matrix(200, 8, seed=2))


def test_bad_sizes_raise() -> None:
    with pytest.raises(ValueError):
        inclusion_matrix(10, 0, seed=0)
    with pytest.raises(ValueError):
        inclusion_matrix(1, 2, seed=0)


def test_pools_by_mode() -> None:
    splits = member_split(400, seed=0)
    offline = reference_plan(splits, k=4, mode="offline", seed=0)
    np.testing.assert_array_equal(offline.pool, np.r_[splits.shadow_train, splits.shadow_test])
    online = reference_plan(splits, k=4, mode="online", seed=0)
    assert len(online.pool) == 400
    # Offline: a target candidate is OUT everywhere; a shadow sample is IN for K/2 references.
    assert not offline.inclusion_of(splits.target_train).any()
    np.testing.assert_array_equal(offline.inclusion_of(splits.shadow_test).sum(axis=0), 2)
    # members() and inclusion_of() describe the same sets.
    ref0 = online.members(0)
    np.testing.assert_array_equal(online.inclusion_of(ref0)[0], True)
    assert len(ref0) == 200
    with pytest.raises(UserError):
        reference_plan(splits, k=4, mode="sideways")
    with pytest.raises(UserError):
        reference_plan(splits, k=0)


def test_save_load_round_trip_and_resolve_never_redraws(tmp_path: Path) -> None:
    splits = member_split(120, seed=0)
    plan = reference_plan(splits, k=4, mode="online", seed=7)
    path = tmp_path / "references.json"
    save_plan(plan, path)
    loaded = load_plan(path)
    assert loaded.hash == plan.hash
    np.testing.assert_array_equal(loaded.inclusion, plan.inclusion)
    np.testing.assert_array_equal(loaded.pool, plan.pool)
    # Resolving the same config returns the saved plan; raising K extends it in place.
    assert resolve_plan(plan, path).hash == plan.hash
    bigger = resolve_plan(reference_plan(splits, k=6, mode="online", seed=7), path)
    np.testing.assert_array_equal(bigger.inclusion[:4], plan.inclusion)
    assert load_plan(path).k == 6
    assert resolve_plan(plan, path).hash == plan.hash  # a smaller K reads the prefix
    # Another seed is a different plan: refused, never silently re-drawn.
    with pytest.raises(UserError, match="differs"):
        resolve_plan(reference_plan(splits, k=4, mode="online", seed=8), path)


def test_tampered_plan_is_refused(tmp_path: Path) -> None:
    plan = reference_plan(member_split(40, seed=0), k=2, seed=0)
    path = tmp_path / "references.json"
    save_plan(plan, path)
    payload = json.loads(path.read_text())
    row = payload["inclusion"][0]
    payload["inclusion"][0] = ("0" if row[0] == "1" else "1") + row[1:]
    path.write_text(json.dumps(payload))
    with pytest.raises(UserError, match="hash"):
        load_plan(path)
    path.write_text("{not json")
    with pytest.raises(UserError, match="cannot read"):
        load_plan(path)


def test_population_points_have_an_out_reference() -> None:
    splits = member_split(400, seed=0)
    attacker = np.r_[splits.shadow_train, splits.shadow_test]
    one = reference_plan(splits, k=1, mode="offline", seed=0)
    z = population_sample(one, attacker, size=500, seed=0)
    assert len(z) == 100  # only the half the single reference did not train on
    assert not one.inclusion_of(z).any()
    four = reference_plan(splits, k=4, mode="offline", seed=0)
    z4 = population_sample(four, attacker, size=50, seed=1)
    assert len(np.unique(z4)) == 50 and np.isin(z4, attacker).all()
    np.testing.assert_array_equal(z4, population_sample(four, attacker, size=50, seed=1))
    with pytest.raises(UserError):
        population_sample(four, attacker, size=0, seed=0)
