"""Clean-label accuracy: the synthetic pool's clean labels reach the utility numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_talos.attacks.clean_accuracy import clean_utility
from lightning_talos.attacks.outputs import ModelOutputs, SplitOutputs
from lightning_talos.data.pool import Pool
from lightning_talos.stages.attack import utility


def _split(indices: list[int], predicted: list[int], noisy: list[int]) -> SplitOutputs:
    logits = torch.nn.functional.one_hot(torch.tensor(predicted), 3).float()
    return SplitOutputs(
        indices=torch.tensor(indices),
        logits=logits,
        labels=torch.tensor(noisy),
        embeddings=torch.zeros(len(indices), 2),
    )


def test_clean_and_noisy_accuracy_by_hand() -> None:
    clean = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)
    # Members: pool 0, 2, 4 predicted as their clean labels; noisy label of 2 is flipped.
    members = _split([0, 2, 4], predicted=[0, 2, 1], noisy=[0, 1, 1])
    # Non-members: pool 5, 1, 3 (out of order): predictions right for 5 and 3 only.
    nonmembers = _split([5, 1, 3], predicted=[2, 0, 0], noisy=[2, 0, 1])
    out = utility(ModelOutputs(members, nonmembers), clean)
    assert out["train_acc"] == pytest.approx(2 / 3) and out["clean_train_acc"] == 1.0
    assert out["test_acc"] == pytest.approx(2 / 3)
    assert out["clean_test_acc"] == pytest.approx(2 / 3)
    assert out["gap"] == pytest.approx(0.0)


def test_no_clean_labels_no_keys() -> None:
    outputs = ModelOutputs(_split([0], [1], [1]), _split([1], [0], [1]))
    assert clean_utility(outputs, None) == {}
    assert set(utility(outputs)) == {"train_acc", "test_acc", "gap", "test_correct"}


def test_pool_refuses_clean_labels_of_another_length() -> None:
    with pytest.raises(ValueError, match="clean_labels"):
        Pool(
            name="x",
            images=torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
            labels=np.zeros(2, dtype=np.int64),
            attributes=None,
            num_classes=2,
            clean_labels=np.zeros(3, dtype=np.int64),
        )
