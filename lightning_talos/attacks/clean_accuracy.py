"""Task accuracy on the clean labels, for datasets that know them (the synthetic set).

With label noise the noisy-label accuracy caps below 1 on held-out data (at 20% symmetric noise
a perfect shape classifier scores about 0.80 on the noisy labels); the clean-label accuracy says
how well the model learnt the task itself, and on members how much noise it memorised.
"""

from __future__ import annotations

import numpy as np

from lightning_talos.attacks.outputs import ModelOutputs, SplitOutputs


def _clean_accuracy(outputs: SplitOutputs, clean_labels: np.ndarray) -> float:
    predicted = outputs.logits.argmax(1).numpy()
    return float((predicted == clean_labels[outputs.indices.numpy()]).mean())


def clean_utility(outputs: ModelOutputs, clean_labels: np.ndarray | None) -> dict[str, float]:
    """``clean_train_acc`` and ``clean_test_acc`` of a model, or ``{}`` without clean labels.

    Args:
        outputs: the model's outputs on its members (train) and non-members (test); their
            ``indices`` are pool indices.
        clean_labels: ``int64 [N]`` clean task labels of the whole pool (``Pool.clean_labels``),
            or ``None`` for datasets that do not know them.

    Returns:
        ``{"clean_train_acc": float, "clean_test_acc": float}`` or ``{}``.
    """
    if clean_labels is None:
        return {}
    return {
        "clean_train_acc": _clean_accuracy(outputs.members, clean_labels),
        "clean_test_acc": _clean_accuracy(outputs.nonmembers, clean_labels),
    }
