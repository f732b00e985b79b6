"""Parts the LightningModules share: optimiser wiring, member/non-member accuracy, views."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_talos.data.batched_aug import BatchedSimCLRAugment
from lightning_talos.data.datamodule import as_float
from lightning_talos.optim import build_optimizer, build_scheduler, param_groups

#: dataloader_idx of the validation loaders (see TalosDataModule.val_dataloader).
MEMBERS, NONMEMBERS = 0, 1


def optimizer_and_schedule(
    groups: list[dict[str, Any]], optim: dict[str, Any], *, total_steps: int, epochs: int
) -> tuple[Any, Any]:
    """Optimiser + per-step warmup/cosine schedule spanning ``total_steps`` over ``epochs``.

    Args:
        groups: parameter groups (a group may carry its own ``lr``/``weight_decay``).
        optim: ``name``, ``lr``, ``weight_decay``, ``momentum``, ``schedule``, ``warmup_epochs``.
        total_steps: optimiser steps the schedule spans.
        epochs: epochs those steps make (converts ``warmup_epochs`` into steps).
    """
    optimizer = build_optimizer(
        groups,
        name=optim["name"],
        lr=optim["lr"],
        weight_decay=optim["weight_decay"],
        momentum=optim.get("momentum", 0.9),
    )
    total = max(1, total_steps)
    warmup = min(total, int(total * optim.get("warmup_epochs", 0.0) / max(1, epochs)))
    scheduler = build_scheduler(
        optimizer, schedule=optim["schedule"], total_steps=total, warmup_steps=warmup
    )
    return optimizer, scheduler


def configure_optim(
    module: pl.LightningModule,
    groups: list[dict[str, Any]],
    optim: dict[str, Any],
    *,
    total_steps: int | None = None,
) -> dict[str, Any]:
    """:func:`optimizer_and_schedule` sized from ``trainer.estimated_stepping_batches``.

    Args:
        module: the module being trained (its trainer gives the step count).
        groups: parameter groups.
        optim: optimiser settings.
        total_steps: steps the schedule spans (default: ``trainer.estimated_stepping_batches``).
    """
    optimizer, scheduler = optimizer_and_schedule(
        groups,
        optim,
        total_steps=int(total_steps or module.trainer.estimated_stepping_batches),
        epochs=module.trainer.max_epochs or 1,
    )
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }


def decay_groups(module: nn.Module, weight_decay: float, **extra: Any) -> list[dict[str, Any]]:
    """Parameter groups without decay on biases and norms, with ``extra`` keys on each."""
    return [{**group, **extra} for group in param_groups(module, weight_decay)]


def encoder_groups(module: pl.LightningModule, weight_decay: float) -> list[dict[str, Any]]:
    """Groups of a SimCLR-style module: backbone and projection with decay (not on biases and
    norms), and the online probe in its own group (``probe_lr``, no decay)."""
    groups = decay_groups(module.backbone, weight_decay)
    groups += decay_groups(module.projection, weight_decay)
    probe = {"params": list(module.probe.parameters()), "weight_decay": 0.0}
    groups.append({**probe, "lr": module.hparams.probe_lr})
    return groups


class MemberAccuracy(nn.Module):
    """Accuracy on the members (train quarter) and non-members (test quarter) of a role.

    The gap between the two is the overfitting the paper explains membership inference with.
    torchmetrics syncs the counts across DDP ranks in :meth:`compute`.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.members = MulticlassAccuracy(num_classes, average="micro")
        self.nonmembers = MulticlassAccuracy(num_classes, average="micro")

    def update(self, logits: Tensor, labels: Tensor, dataloader_idx: int) -> None:
        metric = self.members if dataloader_idx == MEMBERS else self.nonmembers
        metric.update(logits.detach(), labels)

    def compute(self, prefix: str = "val") -> dict[str, float]:
        """``{prefix}/member_acc``, ``{prefix}/nonmember_acc`` and ``{prefix}/gap``; resets."""
        out: dict[str, float] = {}
        if self.members.update_called:
            out[f"{prefix}/member_acc"] = float(self.members.compute())
        if self.nonmembers.update_called:
            out[f"{prefix}/nonmember_acc"] = float(self.nonmembers.compute())
        if len(out) == 2:
            out[f"{prefix}/gap"] = out[f"{prefix}/member_acc"] - out[f"{prefix}/nonmember_acc"]
        self.members.reset()
        self.nonmembers.reset()
        return out


def two_views(
    images: Tensor, augment: BatchedSimCLRAugment | None, channels_last: bool
) -> tuple[Tensor, Tensor]:
    """The two SimCLR views of a training batch.

    ``images`` is either ``float [B,2,3,S,S]`` (views made by PIL workers) or raw
    ``uint8 [B,3,S,S]``, augmented here on the batch's device with per-sample parameters.

    Raises:
        ValueError: raw images without a batched augmentation.
    """
    if images.ndim == 5:
        v1, v2 = images[:, 0], images[:, 1]
    elif augment is None:
        raise ValueError("raw images need the batched augmentation (data.aug.mode=batched)")
    else:
        v1, v2 = augment.two_views(images)
    return layout(v1, channels_last), layout(v2, channels_last)


def layout(images: Tensor, channels_last: bool) -> Tensor:
    """Float images in the configured memory layout."""
    images = as_float(images)
    if channels_last:
        return images.contiguous(memory_format=torch.channels_last)
    return images
