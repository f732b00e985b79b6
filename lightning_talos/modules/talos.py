"""Talos: SimCLR with a gradient-reversal adversary that hides a sensitive attribute."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_talos.data.batched_aug import BatchedSimCLRAugment
from lightning_talos.losses.ntxent import NTXentLoss
from lightning_talos.models.backbones import build_backbone
from lightning_talos.models.grl import grad_reverse
from lightning_talos.models.heads import AdversaryHead, ProjectionHead
from lightning_talos.modules.common import (
    MEMBERS,
    MemberAccuracy,
    configure_optim,
    encoder_groups,
    layout,
    two_views,
)
from lightning_talos.modules.window import WindowMeans, log_window


def dann_lambda(lambda_max: float, progress: float) -> float:
    """The DANN ramp ``lambda * (2 / (1 + exp(-10 p)) - 1)`` over training progress p in [0,1]."""
    return lambda_max * (2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0)


class Talos(pl.LightningModule):
    """SimCLR encoder trained to minimise NT-Xent while an adversary D reads the attribute.

    Loss of the encoder: ``NT-Xent(z1, z2) + CE(D(GRL_lambda(r)), attribute)``, where r is the
    embedding h or the projection z (``location``) of the augmented views or of the original
    image (``views``). The gradient-reversal layer makes the encoder *maximise* D's loss while D
    minimises it.

    Schedules (manual optimisation):
        ``simultaneous``: every step first takes ``adversary_steps`` updates of D on detached r,
        then one step of encoder and D together through the GRL.
        ``alternating`` (the released code): Lightning epochs alternate between a pass that
        steps only the encoder (D frozen) and a pass that steps only D on representations
        computed without a graph, so the trainer runs ``2 x`` the Talos epochs. The released
        code's discriminator was sized for the embedding even at ``location=projection`` and
        put a ReLU on its logits; here D is sized from r and its logits are linear.

    Under DDP the adversary pass leaves the encoder without gradients: run with
    ``ddp_find_unused_parameters_true`` (the stage runner does).

    Args:
        backbone, stem, num_classes, temperature, optim, probe_lr, proj_hidden_dim, proj_dim,
        augment, channels_last: as :class:`~lightning_talos.modules.simclr.SimCLR`.
        num_attribute_classes: classes of the sensitive attribute.
        lambda_: GRL strength (its maximum under the DANN ramp).
        location: ``embedding`` or ``projection``.
        views: ``augmented`` or ``original``.
        schedule: ``simultaneous`` or ``alternating``.
        adversary_steps: extra D updates per encoder update (simultaneous schedule).
        lambda_schedule: ``constant`` or ``dann``.
        adversary_lr: Adam learning rate of D.
        adversary_hidden: hidden sizes of D.
    """

    def __init__(
        self,
        *,
        backbone: str,
        stem: str,
        num_classes: int,
        num_attribute_classes: int,
        temperature: float,
        optim: dict[str, Any],
        lambda_: float = 1.0,
        location: str = "embedding",
        views: str = "augmented",
        schedule: str = "simultaneous",
        adversary_steps: int = 5,
        lambda_schedule: str = "dann",
        adversary_lr: float = 1e-3,
        adversary_hidden: tuple[int, ...] = (64, 64),
        probe_lr: float = 1e-3,
        proj_hidden_dim: int | None = None,
        proj_dim: int = 256,
        augment: dict[str, Any] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.backbone, self.embed_dim = build_backbone(backbone, stem=stem)
        self.projection = ProjectionHead(
            self.embed_dim, hidden_dim=proj_hidden_dim, out_dim=proj_dim
        )
        r_dim = self.embed_dim if location == "embedding" else proj_dim
        self.adversary = AdversaryHead(r_dim, num_attribute_classes, hidden=adversary_hidden)
        self.loss = NTXentLoss(temperature, gather_distributed=True)
        self.probe = nn.Linear(self.embed_dim, num_classes)
        self.augment = BatchedSimCLRAugment(**augment) if augment else None
        self.accuracy = MemberAccuracy(num_classes)
        self.adversary_acc = MulticlassAccuracy(num_attribute_classes, average="micro")
        self.window = WindowMeans()
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> Tensor:
        """Embedding h of images ``[B,3,S,S]`` -> ``[B,d]``."""
        return self.backbone(layout(images, self.hparams.channels_last))

    def current_lambda(self, batch_idx: int) -> float:
        """GRL strength at this point of training (progress counted in batches, not optimiser
        steps: under manual optimisation every D update also counts as a global step)."""
        if self.hparams.lambda_schedule == "constant":
            return self.hparams.lambda_
        per_epoch = max(1, int(self.trainer.num_training_batches))
        total = per_epoch * max(1, self.trainer.max_epochs or 1)
        return dann_lambda(
            self.hparams.lambda_, (self.current_epoch * per_epoch + batch_idx) / total
        )

    def _encode(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """NT-Xent loss, the representation r the adversary reads, and h of the views."""
        v1, v2 = two_views(batch.image, self.augment, self.hparams.channels_last)
        h = self.backbone(torch.cat([v1, v2]))
        z = self.projection(h)
        nce = self.loss(*z.chunk(2))
        if self.hparams.views == "original":
            original = layout(self._original(batch.image), self.hparams.channels_last)
            h_r = self.backbone(original)
            r = h_r if self.hparams.location == "embedding" else self.projection(h_r)
        else:
            r = h if self.hparams.location == "embedding" else z
        return nce, r, h

    @staticmethod
    def _original(images: Tensor) -> Tensor:
        return images[:, 2] if images.ndim == 5 else images

    def _targets(self, batch: Any, r: Tensor) -> Tensor:
        return batch.attribute.repeat(len(r) // len(batch.attribute))

    def _adversary_update(self, r: Tensor, attrs: Tensor) -> Tensor:
        """One step of D alone on detached representations."""
        _, opt_adv = self.optimizers()
        logits = self.adversary(r.detach())
        loss = F.cross_entropy(logits, attrs)
        opt_adv.zero_grad()
        self.manual_backward(loss)
        opt_adv.step()
        return logits

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_enc, opt_adv = self.optimizers()
        lam = self.current_lambda(batch_idx)
        adversary_pass = self.hparams.schedule == "alternating" and self.current_epoch % 2 == 1
        if adversary_pass:
            with torch.no_grad():
                nce, r, h = self._encode(batch)
            logits = self._adversary_update(r, self._targets(batch, r))
        else:
            nce, r, h = self._encode(batch)
            attrs = self._targets(batch, r)
            simultaneous = self.hparams.schedule == "simultaneous"
            if simultaneous:
                for _ in range(self.hparams.adversary_steps):
                    self._adversary_update(r, attrs)
            self.adversary.requires_grad_(simultaneous)
            logits = self.adversary(grad_reverse(r, lam))
            adv_loss = F.cross_entropy(logits, attrs)
            labels = batch.label.repeat(2)
            probe_loss = F.cross_entropy(self.probe(h.detach()), labels)
            opt_enc.zero_grad()
            opt_adv.zero_grad()
            self.manual_backward(nce + adv_loss + probe_loss)
            opt_enc.step()
            if simultaneous:
                opt_adv.step()
            self.adversary.requires_grad_(True)
            self.lr_schedulers().step()
        adv_acc = (logits.argmax(1) == self._targets(batch, r)).float().mean()
        self.window.add(nce_loss=nce, adv_acc=adv_acc, **{"lambda": lam})
        log_window(self, self.window, batch_idx, prog_bar=("nce_loss", "adv_acc"))

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        h = self(batch.image)
        self.accuracy.update(self.probe(h), batch.label, dataloader_idx)
        if dataloader_idx == MEMBERS:
            r = h if self.hparams.location == "embedding" else self.projection(h)
            self.adversary_acc.update(self.adversary(r), batch.attribute)

    def on_validation_epoch_end(self) -> None:
        metrics = self.accuracy.compute(prefix="val/probe")
        if self.adversary_acc.update_called:
            metrics["val/adv_member_acc"] = float(self.adversary_acc.compute())
            self.adversary_acc.reset()
        if metrics:
            self.log_dict(metrics)

    def configure_optimizers(self) -> tuple[list[Any], list[Any]]:
        optim = self.hparams.optim
        groups = encoder_groups(self, optim["weight_decay"])
        # The encoder steps once per batch, and only in every other epoch when alternating.
        steps = int(self.trainer.estimated_stepping_batches)
        if self.hparams.schedule == "alternating":
            steps = max(1, steps // 2)
        encoder = configure_optim(self, groups, optim, total_steps=steps)
        adversary = torch.optim.Adam(self.adversary.parameters(), lr=self.hparams.adversary_lr)
        return [encoder["optimizer"], adversary], [encoder["lr_scheduler"]]
