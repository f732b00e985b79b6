"""LEACE eraser: linear guardedness on a planted attribute, task kept, fitted on train only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from concept_erasure import LeaceEraser
from sklearn.linear_model import LogisticRegression

from lightning_talos.attacks.outputs import SplitOutputs
from lightning_talos.data.splits import QUARTERS
from lightning_talos.defences.leace import ConceptEraser, fit_for_role
from lightning_talos.errors import UserError

DIM = 16


def planted(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings ``[n, 16]`` with a 3-class attribute (shares 0.5/0.3/0.2) planted in two
    mixed directions and a binary task label in a third, plus unit Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    attr = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), n, replacement=True, generator=g)
    task = torch.randint(0, 2, (n,), generator=g)
    attr_means = torch.zeros(3, DIM)
    attr_means[:, 0] = torch.tensor([-2.0, 0.0, 2.0])
    attr_means[:, 1] = torch.tensor([1.5, -1.5, 1.5])
    task_means = torch.zeros(2, DIM)
    task_means[:, 2] = torch.tensor([-1.5, 1.5])
    rotation = torch.linalg.qr(torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(7)))[0]
    x = (attr_means[attr] + task_means[task] + torch.randn(n, DIM, generator=g)) @ rotation
    return x, attr, task


def probe_accuracy(train_x, train_y, test_x, test_y) -> float:
    clf = LogisticRegression(max_iter=2000).fit(train_x.numpy(), train_y.numpy())
    return float(clf.score(test_x.numpy(), test_y.numpy()))


def test_erased_attribute_at_majority_baseline_and_task_kept() -> None:
    x, attr, task = planted(2000, seed=0)
    xt, attr_t, task_t = planted(2000, seed=1)
    eraser = ConceptEraser.fit(x, attr)
    ex, ext = eraser(x), eraser(xt)
    majority = float((attr_t == torch.mode(attr).values).float().mean())
    raw_attr = probe_accuracy(x, attr, xt, attr_t)
    erased_attr = probe_accuracy(ex, attr, ext, attr_t)
    raw_task = probe_accuracy(x, task, xt, task_t)
    erased_task = probe_accuracy(ex, task, ext, task_t)
    assert raw_attr > majority + 0.3  # the attribute was linearly there
    assert abs(erased_attr - majority) <= 0.02
    assert abs(erased_task - raw_task) <= 0.02


def test_erased_class_means_coincide_on_fit_rows() -> None:
    """LEACE's defining property: zero cross-covariance between erased x and the one-hot
    attribute on the rows it was fitted on (so every class mean equals the overall mean)."""
    x, attr, _ = planted(500, seed=2)
    erased = ConceptEraser.fit(x, attr)(x).double()
    one_hot = F.one_hot(attr).double()
    cross = (erased - erased.mean(0)).T @ (one_hot - one_hot.mean(0)) / len(x)
    raw = (x.double() - x.double().mean(0)).T @ (one_hot - one_hot.mean(0)) / len(x)
    assert raw.abs().max() > 0.3
    assert cross.abs().max() < 1e-5


def test_matches_the_library_eraser() -> None:
    x, attr, _ = planted(300, seed=3)
    one_hot = F.one_hot(attr).double()
    library = LeaceEraser.fit(x.double(), one_hot, svd_tol=1e-6, constrain_cov_trace=False)
    ours = ConceptEraser.fit(x, attr)
    torch.testing.assert_close(ours(x), library(x.double()).float(), atol=1e-4, rtol=1e-4)


def _quarters(seed: int) -> dict[str, SplitOutputs]:
    out = {}
    for i, name in enumerate(QUARTERS):
        x, attr, task = planted(200, seed=seed + i)
        out[name] = SplitOutputs(torch.arange(200), torch.zeros(200, 2), task, x, attr)
    return out


def test_fit_for_role_reads_only_the_train_quarter() -> None:
    quarters = _quarters(10)
    base = fit_for_role(quarters, "target")
    others = dict(quarters)
    for name in ("target_test", "shadow_train", "shadow_test"):
        q = quarters[name]
        others[name] = SplitOutputs(q.indices, q.logits, q.labels, q.embeddings * 5 + 3, None)
    assert torch.equal(fit_for_role(others, "target").weight, base.weight)
    changed = dict(quarters)
    q = quarters["target_train"]
    changed["target_train"] = SplitOutputs(
        q.indices, q.logits, q.labels, q.embeddings, q.attributes.flip(0)
    )
    assert not torch.allclose(fit_for_role(changed, "target").weight, base.weight)
    shadow = fit_for_role(quarters, "shadow")
    own = quarters["shadow_train"]
    assert torch.equal(shadow.weight, ConceptEraser.fit(own.embeddings, own.attributes).weight)


def test_fit_for_role_without_attribute_is_a_user_error() -> None:
    quarters = _quarters(20)
    q = quarters["target_train"]
    quarters["target_train"] = SplitOutputs(q.indices, q.logits, q.labels, q.embeddings, None)
    with pytest.raises(UserError, match="sensitive attribute"):
        fit_for_role(quarters, "target")


def test_save_load_round_trip_weights_only(tmp_path: Path) -> None:
    x, attr, _ = planted(300, seed=4)
    eraser = ConceptEraser.fit(x, attr)
    path = eraser.save(tmp_path / "eraser.pt")
    state = torch.load(path, weights_only=True)
    assert set(state) == {"weight", "bias"}
    loaded = ConceptEraser.load(path)
    assert torch.equal(loaded(x), eraser(x))
    blank = ConceptEraser(DIM)
    blank.load_state_dict(eraser.state_dict())
    assert torch.equal(blank(x), eraser(x))
    (tmp_path / "bad.pt").write_text("not a tensor file")
    with pytest.raises(UserError, match="cannot read the eraser"):
        ConceptEraser.load(tmp_path / "bad.pt")


def test_identity_before_fit_and_bad_inputs() -> None:
    x = torch.randn(10, DIM)
    assert torch.equal(ConceptEraser(DIM)(x), x)
    with pytest.raises(ValueError, match="integer classes"):
        ConceptEraser.fit(x, torch.zeros(10))
    with pytest.raises(ValueError, match=r"attribute must be \[10\]"):
        ConceptEraser.fit(x, torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        ConceptEraser.fit(x, torch.full((10,), 2), num_classes=2)
    with pytest.raises(ValueError, match="unknown method"):
        ConceptEraser.fit(x, torch.zeros(10, dtype=torch.long), method="lasso")
    with pytest.raises(ValueError, match="expected embeddings"):
        ConceptEraser(DIM)(torch.randn(3, DIM + 1))


def test_erasure_under_bf16_autocast_is_the_fp32_erasure() -> None:
    """A bf16-mixed model's embedding is erased in fp32: under autocast a bf16 matmul would
    leave part of the erased direction (the class means would no longer coincide)."""
    x, attr, _ = planted(500, seed=4)
    eraser = ConceptEraser.fit(x, attr)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = eraser(x)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, eraser(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        from_bf16 = eraser(x.bfloat16())
    assert from_bf16.dtype == torch.bfloat16  # returned in the input's dtype
