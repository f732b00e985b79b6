"""The two classifiers the attacks audit: the linear stage on a frozen encoder, and the
supervised baseline trained end to end. Both expose ``embed`` (the embedding h) and ``forward``
(logits), which is all feature extraction and the label-only attacks need.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_talos.models.backbones import build_backbone
from lightning_talos.modules.common import MemberAccuracy, configure_optim, decay_groups, layout
from lightning_talos.modules.window import WindowMeans, log_window


class _Classifier(pl.LightningModule):
    """Backbone + Linear(d, classes), member/non-member accuracy in validation."""

    encoder: nn.Module
    head: nn.Linear

    def _build(self, backbone: str, stem: str, num_classes: int, channels_last: bool) -> None:
        self.encoder, self.embed_dim = build_backbone(backbone, stem=stem)
        self.head = nn.Linear(self.embed_dim, num_classes)
        self.accuracy = MemberAccuracy(num_classes)
        self.window = WindowMeans()
        if channels_last:
            self.encoder.to(memory_format=torch.channels_last)

    def embed(self, images: Tensor) -> Tensor:
        """Embedding h ``[B,d]`` of images ``[B,3,S,S]`` (uint8 or float in [0,1])."""
        return self.encoder(layout(images, self.hparams.channels_last))

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``[B,classes]``."""
        return self.head(self.embed(images))

    def _train_loss(self, logits: Tensor, labels: Tensor, batch_idx: int) -> Tensor:
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(1) == labels).float().mean()
        self.window.add(loss=loss, acc=acc)
        log_window(self, self.window, batch_idx, prog_bar=("loss",))
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.accuracy.update(self(batch.image), batch.label, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        metrics = self.accuracy.compute(prefix="val")
        if metrics:
            self.log_dict(metrics)


class LinearClassifier(_Classifier):
    """The paper's "contrastive model": a frozen encoder + a trained Linear(d, classes).

    The encoder has ``requires_grad_(False)``, stays in eval mode (BatchNorm statistics do not
    move) and runs under ``no_grad`` (no graph kept). Its weights are part of this module's
    checkpoint, so the contrastive model is self-contained.
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
        super().__init__()
        self.save_hyperparameters()
        self._build(backbone, stem, num_classes, channels_last)
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def load_encoder(self, state_dict: dict[str, Tensor]) -> None:
        """Copy pretrained encoder weights (strict: every key must match)."""
        self.encoder.load_state_dict(state_dict)

    def train(self, mode: bool = True) -> LinearClassifier:
        super().train(mode)
        self.encoder.eval()  # frozen: BatchNorm keeps its pretrained statistics
        return self

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        with torch.no_grad():
            h = self.embed(batch.image)
        return self._train_loss(self.head(h), batch.label, batch_idx)

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.hparams.optim
        return configure_optim(self, decay_groups(self.head, optim["weight_decay"]), optim)


class SupervisedClassifier(_Classifier):
    """The supervised baseline: the same backbone + Linear(d, classes), trained end to end."""

    def __init__(
        self,
        *,
        backbone: str,
        stem: str,
        num_classes: int,
        optim: dict[str, Any],
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._build(backbone, stem, num_classes, channels_last)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._train_loss(self(batch.image), batch.label, batch_idx)

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.hparams.optim
        groups = decay_groups(self.encoder, optim["weight_decay"])
        groups += decay_groups(self.head, optim["weight_decay"])
        return configure_optim(self, groups, optim)
