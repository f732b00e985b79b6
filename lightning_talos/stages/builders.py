"""How each training stage's LightningModule is built from the config, and how a trained
product is loaded back. The stage registry (``stages/registry.py``) points at these functions.

Each builder takes the run context, the role, and the folders of the stages it reads
(``upstream``: stage name -> folder), so it never needs to know another stage's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from lightning_talos.config.load import to_dict
from lightning_talos.data.datamodule import aug_kwargs
from lightning_talos.errors import UserError
from lightning_talos.modules.classifier import LinearClassifier, SupervisedClassifier
from lightning_talos.modules.simclr import SimCLR
from lightning_talos.modules.talos import Talos
from lightning_talos.runs.context import RunContext
from lightning_talos.safe_load import load_checkpoint


def model_settings(ctx: RunContext) -> dict[str, Any]:
    """Backbone settings every module takes (``model`` section + the pool's classes)."""
    m = ctx.cfg.model
    return {
        "backbone": str(m.backbone),
        "stem": str(m.stem),
        "num_classes": ctx.pool.num_classes,
        "channels_last": m.channels_last,
    }


def simclr_settings(ctx: RunContext) -> dict[str, Any]:
    """:class:`SimCLR` keyword settings from ``model``, ``simclr`` and ``data.aug``."""
    cfg = ctx.cfg
    batched = str(cfg.data.aug.mode) == "batched"
    return {
        **model_settings(ctx),
        "temperature": cfg.simclr.temperature,
        "optim": to_dict(cfg.simclr.optim),
        "probe_lr": cfg.simclr.probe_lr,
        "proj_hidden_dim": cfg.model.proj_hidden_dim,
        "proj_dim": cfg.model.proj_dim,
        "augment": aug_kwargs(cfg.data.aug, cfg.data.image_size) if batched else None,
    }


def talos_settings(ctx: RunContext) -> dict[str, Any]:
    """:class:`Talos`' own keyword settings from ``talos``.

    Raises:
        UserError: for datasets without a sensitive attribute.
    """
    if not ctx.pool.has_attribute:
        raise UserError(f"{ctx.cfg.data.name} has no sensitive attribute: Talos needs one")
    t = to_dict(ctx.cfg.talos)
    return {
        "num_attribute_classes": ctx.pool.num_attribute_classes,
        "lambda_": t["lambda"],
        "location": t["location"],
        "views": t["views"],
        "schedule": t["schedule"],
        "adversary_steps": t["adversary_steps"],
        "lambda_schedule": t["lambda_schedule"],
        "adversary_lr": t["adversary_lr"],
        "adversary_weight_decay": t["adversary_weight_decay"],
        "adversary_hidden": tuple(t["adversary_hidden"]),
    }


def build_simclr(ctx: RunContext, role: str, upstream: Mapping[str, Path]) -> pl.LightningModule:
    """SimCLR, optionally initialised from ``simclr.init_checkpoint``."""
    module = SimCLR(**simclr_settings(ctx))
    _init_from_checkpoint(ctx, module)
    return module


def build_talos(ctx: RunContext, role: str, upstream: Mapping[str, Path]) -> pl.LightningModule:
    """Talos, fine-tuned from this role's SimCLR stage when it reads one (``upstream``)."""
    module = Talos(**simclr_settings(ctx), **talos_settings(ctx))
    for folder in upstream.values():  # talos.init_from_pretrain
        module.load_state_dict(simclr_weights(folder), strict=False)
    if not upstream:
        _init_from_checkpoint(ctx, module)
    return module


def build_linear(ctx: RunContext, role: str, upstream: Mapping[str, Path]) -> pl.LightningModule:
    """The linear layer on the frozen encoder of the one upstream encoder stage."""
    module = LinearClassifier(**model_settings(ctx), optim=to_dict(ctx.cfg.linear.optim))
    (encoder,) = upstream.values()
    module.load_encoder(encoder_weights(encoder))
    return module


def build_supervised(
    ctx: RunContext, role: str, upstream: Mapping[str, Path]
) -> pl.LightningModule:
    """The supervised baseline (same backbone + linear head, trained end to end)."""
    return SupervisedClassifier(**model_settings(ctx), optim=to_dict(ctx.cfg.supervised.optim))


def _init_from_checkpoint(ctx: RunContext, module: SimCLR) -> None:
    if ctx.cfg.simclr.init_checkpoint:
        module.backbone.load_state_dict(encoder_weights(Path(ctx.cfg.simclr.init_checkpoint)))


def _state_dict(source: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    path = source / "checkpoints" / "last.ckpt" if source.is_dir() else source
    state = load_checkpoint(path)  # weights_only: a crafted file cannot run code
    if not isinstance(state.get("state_dict"), dict):
        raise UserError(f"cannot read checkpoint {path}: it holds no state_dict")
    return path, state["state_dict"]


def simclr_weights(source: Path) -> dict[str, torch.Tensor]:
    """Backbone, projection head and online probe of a SimCLR checkpoint."""
    _, state = _state_dict(source)
    parts = ("backbone.", "projection.", "probe.")
    return {k: v for k, v in state.items() if k.startswith(parts)}


def encoder_weights(source: Path) -> dict[str, torch.Tensor]:
    """Backbone weights from a stage folder's ``last.ckpt`` or from a checkpoint file.

    Raises:
        UserError: when the checkpoint is missing or holds no backbone.
    """
    path, state = _state_dict(source)
    weights = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    if not weights:
        raise UserError(f"{path} holds no SimCLR/Talos backbone weights")
    return weights


def load_linear(path: Path) -> nn.Module:
    """A trained linear stage (frozen encoder + head) from its checkpoint."""
    return LinearClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)


def load_supervised(path: Path) -> nn.Module:
    """A trained supervised baseline from its checkpoint."""
    return SupervisedClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
