"""Talos: SimCLR with a gradient-reversal adversary that hides a sensitive attribute."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from lightning_talos.models.grl import grad_reverse
from lightning_talos.models.heads import AdversaryHead
from lightning_talos.modules.common import MEMBERS, configure_optim, encoder_groups, layout
from lightning_talos.modules.simclr import SimCLR
from lightning_talos.modules.window import log_window


def dann_lambda(lambda_max: float, progress: float) -> float:
    """The DANN ramp ``lambda * (2 / (1 + exp(-10 p)) - 1)`` over training progress p in [0,1]."""
    return lambda_max * (2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0)


class Talos(SimCLR):
    """SimCLR encoder trained to minimise NT-Xent while an adversary D reads the attribute.

    Loss of the encoder: ``NT-Xent(z1, z2) + CE(D(GRL_lambda(r)), attribute)``, where r is the
    embedding h or the projection z (``location``) of the augmented views or of the original
    image (``views``). The gradient-reversal layer makes the encoder *maximise* D's loss while D
    minimises it. Backbone, projection, NT-Xent and the online probe are SimCLR's.

    Schedules (manual optimisation), all decided here:
        ``simultaneous``: every step first takes ``adversary_steps`` updates of D on detached r,
        then one step of encoder and D together through the GRL.
        ``alternating`` (the released code): passes over the data alternate between one that
        steps only the encoder (D frozen) and one that steps only D on representations
        computed without a graph. Each training epoch is two Lightning epochs
        (:attr:`passes_per_epoch`); the encoder's learning-rate schedule spans its own passes.
        The released code's discriminator was sized for the embedding even at
        ``location=projection`` and put a ReLU on its logits; here D is sized from r and its
        logits are linear.

    Under DDP the adversary pass leaves the encoder without gradients
    (:attr:`has_unused_parameters`; the stage runner picks the DDP strategy from it).

    Args:
        num_attribute_classes: classes of the sensitive attribute.
        lambda_: GRL strength (its maximum under the DANN ramp).
        location: ``embedding`` or ``projection``.
        views: ``augmented`` or ``original``.
        schedule: ``simultaneous`` or ``alternating``.
        adversary_steps: extra D updates per encoder update (simultaneous schedule).
        lambda_schedule: ``constant`` or ``dann``.
        adversary_lr: Adam learning rate of D.
        adversary_weight_decay: Adam weight decay of D.
        adversary_hidden: hidden sizes of D.
        **simclr: the settings of :class:`~lightning_talos.modules.simclr.SimCLR`.
    """

    has_unused_parameters = True

    def __init__(
        self,
        *,
        num_attribute_classes: int,
        lambda_: float,
        location: str,
        views: str,
        schedule: str,
        adversary_steps: int,
        lambda_schedule: str,
        adversary_lr: float,
        adversary_weight_decay: float,
        adversary_hidden: tuple[int, ...],
        **simclr: Any,
    ) -> None:
        # SimCLR's save_hyperparameters records these settings too; its add_heads() builds D.
        super().__init__(**simclr)
        self.automatic_optimization = False
        self.adversary_acc = MulticlassAccuracy(num_attribute_classes, average="micro")
        self.passes_per_epoch = 2 if schedule == "alternating" else 1

    def add_heads(self) -> None:
        """The adversary D, sized from the representation it reads."""
        hp = self.hparams
        r_dim = self.embed_dim if hp.location == "embedding" else hp.proj_dim
        self.adversary = AdversaryHead(r_dim, hp.num_attribute_classes, hidden=hp.adversary_hidden)

    @property
    def is_adversary_pass(self) -> bool:
        """True in the passes of the alternating schedule that train D alone."""
        return self.passes_per_epoch == 2 and self.current_epoch % 2 == 1

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
        h, z = self.encode_views(batch)
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

    def _encoder_update(self, batch: Any, lam: float) -> tuple[Tensor, Tensor, Tensor]:
        """D's extra steps (simultaneous), then encoder (+ D) through the GRL."""
        opt_enc, opt_adv = self.optimizers()
        nce, r, h = self._encode(batch)
        attrs = self._targets(batch, r)
        simultaneous = self.hparams.schedule == "simultaneous"
        if simultaneous:
            for _ in range(self.hparams.adversary_steps):
                self._adversary_update(r, attrs)
        self.adversary.requires_grad_(simultaneous)
        logits = self.adversary(grad_reverse(r, lam))
        adv_loss = F.cross_entropy(logits, attrs)
        probe_loss = self.probe_losses(batch, h)["probe_loss"]
        opt_enc.zero_grad()
        opt_adv.zero_grad()
        self.manual_backward(nce + adv_loss + probe_loss)
        opt_enc.step()
        if simultaneous:
            opt_adv.step()
        self.adversary.requires_grad_(True)
        self.lr_schedulers().step()
        return nce, r, logits

    def training_step(self, batch: Any, batch_idx: int) -> None:
        lam = self.current_lambda(batch_idx)
        if self.is_adversary_pass:
            with torch.no_grad():
                nce, r, _ = self._encode(batch)
            logits = self._adversary_update(r, self._targets(batch, r))
        else:
            nce, r, logits = self._encoder_update(batch, lam)
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

    def configure_optimizers(self) -> tuple[list[Any], list[Any]]:  # type: ignore[override]
        optim = self.hparams.optim
        groups = encoder_groups(self, optim["weight_decay"])
        # The encoder steps once per batch of its own passes only.
        steps = max(1, int(self.trainer.estimated_stepping_batches) // self.passes_per_epoch)
        encoder = configure_optim(self, groups, optim, total_steps=steps)
        adversary = torch.optim.Adam(
            self.adversary.parameters(),
            lr=self.hparams.adversary_lr,
            weight_decay=self.hparams.adversary_weight_decay,
        )
        return [encoder["optimizer"], adversary], [encoder["lr_scheduler"]]
