"""``trainer.privacy_audit_every_n_epochs``: a :class:`~lightning_talos.callbacks.PrivacyAudit`
on a training stage's own model, its role's members against its non-members.

Stages with a classifier head are audited on its logits; SimCLR and Talos encoders on their
online linear probe (trained on the members, so it shows what the encoder lets a probe
memorise). The history lands in ``<stage>/privacy_history.json``; the report draws membership
AUC against epochs from it (``report/privacy.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lightning_talos.callbacks import PrivacyAudit
from lightning_talos.callbacks.privacy import HISTORY_FILE
from lightning_talos.data.datamodule import TalosDataModule, as_float


class _Triples:
    """A stage's eval loader as ``(float images, labels[, attributes])`` batches."""

    def __init__(self, loader: torch.utils.data.DataLoader, with_attribute: bool) -> None:
        self.loader, self.with_attribute = loader, with_attribute

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        for batch in self.loader:
            x = as_float(batch.image)
            yield (x, batch.label, batch.attribute) if self.with_attribute else (x, batch.label)


def _logits(module: nn.Module, x: Tensor) -> Tensor:
    if hasattr(module, "head"):
        return module(x)
    return module.probe(module(x))  # SimCLR / Talos: the online probe on h


def _embed(module: nn.Module, x: Tensor) -> Tensor:
    return module.embed(x) if hasattr(module, "embed") else module(x)


def privacy_callback(
    cfg: DictConfig, dm: TalosDataModule, module: nn.Module, stage_dir: Path, passes: int
) -> PrivacyAudit | None:
    """The stage's audit callback, or ``None`` when ``trainer.privacy_audit_every_n_epochs``
    is null or the module has neither a head nor an online probe."""
    every = cfg.trainer.privacy_audit_every_n_epochs
    if not every or not (hasattr(module, "head") or hasattr(module, "probe")):
        return None
    attribute = dm.pool.has_attribute
    splits = dm.splits
    members = _Triples(dm.eval_loader(splits.members(dm.role)), attribute)
    nonmembers = _Triples(dm.eval_loader(splits.nonmembers(dm.role)), attribute)
    return PrivacyAudit(
        members,  # type: ignore[arg-type] (any iterable of batches)
        nonmembers,  # type: ignore[arg-type]
        every_n_epochs=int(every) * passes,
        logits_fn=_logits,
        embed_fn=_embed if attribute else None,
        history_file=stage_dir / HISTORY_FILE,
    )
