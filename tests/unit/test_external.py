"""Member lists, the TPR-at-low-FPR interval and the loaders' key handling of ``audit-encoder``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_talos.attacks.metrics import roc_points, tpr_at_fpr
from lightning_talos.data.members import check_disjoint, members_hash, resolve_members
from lightning_talos.data.pool import OFFICIAL_SPLITS, Pool, train_then_test
from lightning_talos.errors import UserError
from lightning_talos.stages.external import threshold_free, tpr_interval


def named_pool(n: int = 10, n_train: int = 6) -> Pool:
    return Pool(
        name="faces",
        images=torch.zeros(n, 3, 4, 4, dtype=torch.uint8),
        labels=np.zeros(n, dtype=np.int64),
        attributes=None,
        num_classes=1,
        official_split=train_then_test(n_train, n),
        file_names=[f"img_{i:02d}.jpg" for i in range(n)],
    )


def test_official_split_and_names_resolve_to_pool_indices(tmp_path: Path) -> None:
    pool = named_pool()
    assert resolve_members("split:train", pool, key="k").tolist() == [0, 1, 2, 3, 4, 5]
    assert resolve_members("split:test", pool, key="k").tolist() == [6, 7, 8, 9]
    listed = tmp_path / "names.txt"
    # a path to the image names the same sample; comments and blank lines are skipped
    listed.write_text("# members\n/data/faces/img_07.jpg\n\nimg_02.jpg  # kept\n")
    assert resolve_members(str(listed), pool, key="k").tolist() == [7, 2]
    indices = tmp_path / "idx.txt"
    indices.write_text("9\n0\n")
    assert resolve_members(str(indices), pool, key="k").tolist() == [9, 0]


def test_names_the_pool_lacks_are_listed(tmp_path: Path) -> None:
    listed = tmp_path / "names.txt"
    listed.write_text("img_01.jpg\nimg_99.jpg\nother.png\n")
    with pytest.raises(UserError, match="2 names that the faces pool does not have: img_99"):
        resolve_members(str(listed), named_pool(), key="encoder.members")


def test_val_split_of_a_pool_without_one_is_refused() -> None:
    with pytest.raises(UserError, match="official 'val' split is empty"):
        resolve_members("split:val", named_pool(), key="encoder.members")
    assert OFFICIAL_SPLITS == ("train", "val", "test")


def test_overlap_is_named_and_hash_ignores_order() -> None:
    with pytest.raises(UserError, match="share 2 samples .*3, 5"):
        check_disjoint(np.array([1, 3, 5]), np.array([5, 3, 8]), keys=("a", "b"))
    check_disjoint(np.array([1, 2]), np.array([3]), keys=("a", "b"))
    assert members_hash(np.array([3, 1, 2]), "x") == members_hash(np.array([1, 2, 3]), "x")
    assert members_hash(np.array([1, 2, 3]), "x") != members_hash(np.array([1, 2, 4]), "x")
    assert members_hash(np.array([1, 2, 3]), "x") != members_hash(np.array([1, 2, 3]), "y")


@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.1, 0.25, 1.0])
def test_tpr_interval_without_resampling_is_the_roc_reading(fpr: float) -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=300), 1)  # many ties
    is_member = rng.random(300) < 0.4
    scores[is_member] += 0.5
    ref_fpr, ref_tpr = roc_points(scores, is_member)
    expected = tpr_at_fpr(ref_fpr, ref_tpr, fpr)
    assert tpr_interval(scores, is_member, fpr, 0, 0) == [expected, expected]
    lo, hi = tpr_interval(scores, is_member, fpr, 400, 1)
    assert 0.0 <= lo <= hi <= 1.0


def test_threshold_free_entry_has_no_decision_and_brackets_the_point() -> None:
    rng = np.random.default_rng(1)
    is_member = np.r_[np.ones(80, bool), np.zeros(120, bool)]
    scores = rng.normal(size=200) + 0.8 * is_member
    entry = threshold_free(scores, is_member, 300, 0)
    assert "acc" not in entry and entry["threshold_from"] == "none"
    for key in ("auc", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr"):
        lo, hi = entry["ci95"][key]
        assert lo <= entry[key] + 1e-12 and entry[key] <= hi + 0.05
    assert entry["auc"] > 0.6
