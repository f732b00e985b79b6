"""SimCLR pretraining with an online linear probe on detached features."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_talos.data.batched_aug import BatchedSimCLRAugment
from lightning_talos.losses.ntxent import NTXentLoss
from lightning_talos.models.backbones import build_backbone
from lightning_talos.models.heads import ProjectionHead
from lightning_talos.modules.common import (
    MemberAccuracy,
    configure_optim,
    encoder_groups,
    layout,
    two_views,
)
from lightning_talos.modules.window import WindowMeans, log_window


class SimCLR(pl.LightningModule):
    """SimCLR encoder + projection head trained with NT-Xent (negatives gathered over ranks).

    The online probe, a Linear(d, classes) on ``h.detach()`` in its own parameter group
    (no weight decay, ``probe_lr``), shows representation quality while the encoder trains; its
    gradients never reach the encoder. Validation records its accuracy on the role's members
    and non-members.

    Args:
        backbone: backbone name (see ``models.backbones``).
        stem: ``imagenet`` or ``cifar``.
        num_classes: task classes (for the online probe).
        temperature: NT-Xent temperature.
        optim: optimiser settings (``name``, ``lr``, ``weight_decay``, ``schedule``, ...).
        probe_lr: learning rate of the online probe.
        proj_hidden_dim: projection hidden size (None = embedding size).
        proj_dim: projection output size.
        augment: keyword settings of :class:`BatchedSimCLRAugment`, or None when the loader
            already yields two views.
        channels_last: train in channels-last memory layout.

    The settings have no defaults here: the stage builders pass the typed config sections
    (``config/schema.py`` is the one source of defaults).
    """

    #: Lightning epochs per training epoch (Talos' alternating schedule makes two passes).
    passes_per_epoch = 1
    #: Whether DDP must look for parameters without gradients (Talos' adversary passes).
    has_unused_parameters = False

    def __init__(
        self,
        *,
        backbone: str,
        stem: str,
        num_classes: int,
        temperature: float,
        optim: dict[str, Any],
        probe_lr: float,
        proj_hidden_dim: int | None,
        proj_dim: int,
        augment: dict[str, Any] | None,
        channels_last: bool,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone, self.embed_dim = build_backbone(backbone, stem=stem)
        self.projection = ProjectionHead(
            self.embed_dim, hidden_dim=proj_hidden_dim, out_dim=proj_dim
        )
        self.add_heads()
        self.loss = NTXentLoss(temperature, gather_distributed=True)
        self.probe = nn.Linear(self.embed_dim, num_classes)
        self.augment = BatchedSimCLRAugment(**augment) if augment else None
        self.accuracy = MemberAccuracy(num_classes)
        self.window = WindowMeans()
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)

    def add_heads(self) -> None:
        """Where a subclass adds its own heads (``self.hparams`` holds all its settings).

        They are built after the projection and before the online probe, so that seeded
        initialisations do not depend on which subclass is trained."""

    def forward(self, images: Tensor) -> Tensor:
        """Embedding h of float images ``[B,3,S,S]`` -> ``[B,d]``."""
        return self.backbone(layout(images, self.hparams.channels_last))

    def encode_views(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Embeddings h ``[2B,d]`` and projections z ``[2B,p]`` of the batch's two views."""
        v1, v2 = two_views(batch.image, self.augment, self.hparams.channels_last)
        h = self.backbone(torch.cat([v1, v2]))
        return h, self.projection(h)

    def probe_losses(self, batch: Any, h: Tensor) -> dict[str, Tensor]:
        """``probe_loss`` and ``probe_acc`` of the online probe on detached views ``h``."""
        labels = batch.label.repeat(len(h) // len(batch.label))
        logits = self.probe(h.detach())
        return {
            "probe_loss": F.cross_entropy(logits, labels),
            "probe_acc": (logits.argmax(1) == labels).float().mean(),
        }

    def step_losses(self, batch: Any) -> dict[str, Tensor]:
        """``nce_loss``, ``probe_loss`` and ``probe_acc`` of a training batch (two views each).

        The optimised loss is ``nce_loss + probe_loss``; the probe reads ``h.detach()``, so its
        gradients never reach the encoder.
        """
        h, z = self.encode_views(batch)
        return {"nce_loss": self.loss(*z.chunk(2)), **self.probe_losses(batch, h)}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        losses = self.step_losses(batch)
        self.window.add(**losses)
        log_window(self, self.window, batch_idx, prog_bar=("nce_loss",))
        return losses["nce_loss"] + losses["probe_loss"]

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        logits = self.probe(self(batch.image))
        self.accuracy.update(logits, batch.label, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        metrics = self.accuracy.compute(prefix="val/probe")
        if metrics:
            self.log_dict(metrics)

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.hparams.optim
        groups = encoder_groups(self, optim["weight_decay"])
        return configure_optim(self, groups, optim)
