"""The LEACE-defended contrastive model: frozen encoder -> frozen eraser -> trained linear layer.

``embed`` returns the *erased* embedding, so feature extraction, the attribute probes and the
membership attacks see exactly what the defended model exposes; the eraser's two tensors are
buffers, saved in the checkpoint and restored by ``load_from_checkpoint``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from lightning_talos.defences.leace import ConceptEraser
from lightning_talos.errors import UserError
from lightning_talos.modules.classifier import LinearClassifier


class LeaceLinearClassifier(LinearClassifier):
    """:class:`LinearClassifier` whose embedding goes through a fitted :class:`ConceptEraser`.

    The eraser starts as the identity; call :meth:`fit_eraser` on the role's train quarter (or
    :meth:`set_eraser` with one fitted elsewhere, e.g. ``defences.leace.fit_for_role``) before
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

    @torch.no_grad()
    def fit_eraser(self, loader: Iterable[Any], **settings: Any) -> ConceptEraser:
        """Fit and install the eraser on the encoder's embeddings of every batch of ``loader``
        (the role's train quarter, without augmentation: ``dm.eval_loader(members)``).

        Args:
            loader: Batches with ``image`` and ``attribute`` (``Sample``).
            **settings: Keyword settings of :meth:`ConceptEraser.fit` (``num_classes``, ...).

        Raises:
            UserError: If the batches carry no attribute (``-1``).
        """
        was_training = self.training
        self.eval()
        device = self.head.weight.device
        parts = [
            (self.encoder_embed(b.image.to(device)).cpu(), torch.as_tensor(b.attribute))
            for b in loader
        ]
        self.train(was_training)
        embeddings = torch.cat([e for e, _ in parts])
        attribute = torch.cat([a for _, a in parts])
        if bool((attribute < 0).any()):
            raise UserError("LEACE needs a sensitive attribute; this dataset has none")
        eraser = ConceptEraser.fit(embeddings, attribute, **settings)
        self.set_eraser(eraser)
        return eraser

    def encoder_embed(self, images: Tensor) -> Tensor:
        """The encoder's embedding before erasure ``[B, d]`` (what the eraser is fitted on)."""
        return super().embed(images)

    def embed(self, images: Tensor) -> Tensor:
        """Erased embedding ``[B, d]`` of images ``[B, 3, S, S]``."""
        return self.eraser(super().embed(images))
