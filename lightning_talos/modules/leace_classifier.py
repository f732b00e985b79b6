"""The LEACE-defended contrastive model: frozen encoder -> frozen eraser -> trained linear layer.

``embed`` returns the *erased* embedding, so feature extraction, the attribute probes and the
membership attacks see exactly what the defended model exposes; the eraser's two tensors are
buffers, saved in the checkpoint and restored by ``load_from_checkpoint``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_talos.defences.leace import ConceptEraser
from lightning_talos.modules.classifier import LinearClassifier


class LeaceLinearClassifier(LinearClassifier):
    """:class:`LinearClassifier` whose embedding goes through a fitted :class:`ConceptEraser`.

    The eraser starts as the identity; call :meth:`set_eraser` (fitted on this encoder's
    embeddings of the role's train quarter, see ``defences.leace.fit_for_role``) before
    training the linear layer.

    Args:
        backbone, stem, num_classes, optim, channels_last: As :class:`LinearClassifier`.
    """

    def __init__(
        self,
        *,
        backbone: str,
        stem: str,
        num_classes: int,
        optim: dict[str, Any],
        channels_last: bool = False,
    ) -> None:
        super().__init__(
            backbone=backbone,
            stem=stem,
            num_classes=num_classes,
            optim=optim,
            channels_last=channels_last,
        )
        self.eraser = ConceptEraser(self.embed_dim)

    def set_eraser(self, eraser: ConceptEraser) -> None:
        """Copy a fitted eraser's tensors (its dimension must be the encoder's).

        Raises:
            ValueError: If the dimensions differ.
        """
        if eraser.dim != self.embed_dim:
            raise ValueError(f"eraser is {eraser.dim}-d, the encoder {self.embed_dim}-d")
        self.eraser.load_state_dict(eraser.state_dict())

    def encoder_embed(self, images: Tensor) -> Tensor:
        """The encoder's embedding before erasure ``[B, d]`` (what the eraser is fitted on)."""
        return super().embed(images)

    def embed(self, images: Tensor) -> Tensor:
        """Erased embedding ``[B, d]`` of images ``[B, 3, S, S]``."""
        return self.eraser(super().embed(images))
