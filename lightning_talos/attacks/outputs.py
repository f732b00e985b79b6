"""What the attacks read: one model's outputs on its member and non-member quarters."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SplitOutputs:
    """A model's eval-mode outputs (no augmentation) on one quarter.

    Attributes:
        indices: ``int64 [N]`` pool indices of the samples.
        logits: ``float32 [N, C]`` classification logits.
        labels: ``int64 [N]`` true task labels.
        embeddings: ``float32 [N, d]`` the embedding h the classification layer reads.
        attributes: ``int64 [N]`` sensitive attribute, or ``None``.
    """

    indices: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    embeddings: torch.Tensor
    attributes: torch.Tensor | None = None

    @property
    def posteriors(self) -> torch.Tensor:
        """Softmax of the logits, ``float32 [N, C]``."""
        return torch.softmax(self.logits.float(), dim=1)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ModelOutputs:
    """Outputs of one trained model (a target or a shadow).

    ``members`` is the quarter the model was trained on, ``nonmembers`` the held-out quarter
    of the same role.
    """

    members: SplitOutputs
    nonmembers: SplitOutputs

    @property
    def num_classes(self) -> int:
        return int(self.members.logits.shape[1])
