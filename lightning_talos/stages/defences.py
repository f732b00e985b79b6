"""The two defences audited beside Talos (issue 14), as training stages of the registry.

* **LEACE** (``defences/leace.py``): the role's SimCLR encoder, frozen; a LEACE eraser fitted on
  the role's *train quarter* and its sensitive attribute (the defender knows its own training
  data's attribute, as Talos does); then the linear layer, trained on erased embeddings. The
  shadow is built the same way on the shadow quarters. The eraser is part of the checkpoint.
* **DP-SGD** (``modules/dp_classifier.py``): the supervised baseline on a GroupNorm backbone,
  trained with per-sample clipping and Gaussian noise calibrated to ``dp.epsilon`` at
  ``dp.delta`` (null: ``min(1 / (2 n), 1e-5)``) over the stage's epochs; the runner trains it on
  Poisson batches (``wrap_datamodule``) in full precision (the stage's ``precision``).

Each ``*_record`` gives what ``results.json`` records of a trained defence (``defence`` in the
method's entry).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from lightning_talos.config.load import to_dict
from lightning_talos.data.datamodule import TalosDataModule
from lightning_talos.defences.leace import ConceptEraser
from lightning_talos.errors import UserError
from lightning_talos.modules.dp_classifier import DPSupervisedClassifier
from lightning_talos.modules.leace_classifier import LeaceLinearClassifier
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.builders import encoder_weights, model_settings
from lightning_talos.stages.registry import dp_epsilons
from lightning_talos.stages.results import DP_SGD

#: ``defence`` of a LEACE model's record in ``results.json``.
ERASURE = "concept_erasure"


def build_leace(ctx: RunContext, role: str, upstream: Mapping[str, Path]) -> pl.LightningModule:
    """Frozen encoder of the one upstream stage -> eraser fitted on ``role``'s train quarter
    (unaugmented) -> a fresh linear layer (``linear`` settings).

    Raises:
        UserError: when the dataset has no sensitive attribute.
    """
    if not ctx.pool.has_attribute:
        raise UserError(f"{ctx.cfg.data.name} has no sensitive attribute: LEACE needs one")
    module = LeaceLinearClassifier(**model_settings(ctx), optim=to_dict(ctx.cfg.linear.optim))
    (encoder,) = upstream.values()
    module.load_encoder(encoder_weights(encoder))
    dm = TalosDataModule(ctx.cfg.data, ctx.pool, ctx.splits, role=role, use="eval")
    module.fit_eraser(
        dm.eval_loader(ctx.splits.members(role)),
        num_classes=ctx.pool.num_attribute_classes,
        method=str(ctx.cfg.leace.method),
        shrinkage=bool(ctx.cfg.leace.shrinkage),
    )
    module.set_eraser(without_rounding_residue(module.eraser))
    return module


def without_rounding_residue(eraser: ConceptEraser, *, rel_tol: float = 1e-6) -> ConceptEraser:
    """The eraser with the float residue of its correction set to exact zeros.

    In exact arithmetic the correction ``I - P`` has zero rows for dimensions that are constant
    on the fitted data (dead ReLU units): they carry no attribute. Computed in floating point,
    those rows hold ~1e-19 multiples of the erased direction, so such a dimension becomes a tiny
    copy of the attribute signal; a probe that standardises its features (the logistic probe
    does) scales it back up and reads the attribute (tiny synthetic run: 0.89 against a 0.55
    baseline). Entries of ``weight - I`` and ``bias`` below ``rel_tol`` times their largest
    magnitude (float32 output noise is ~6e-8 relative) become exact zeros.
    """
    eye = torch.eye(eraser.dim, device=eraser.weight.device)
    moved = eraser.weight - eye
    moved = torch.where(moved.abs() < rel_tol * moved.abs().max(), 0.0, moved)
    bias = eraser.bias
    bias = torch.where(bias.abs() < rel_tol * bias.abs().max(), 0.0, bias)
    return ConceptEraser.from_state({"weight": eye + moved, "bias": bias})


def load_leace(path: Path) -> nn.Module:
    """A trained LEACE stage (encoder, eraser, head) from its checkpoint."""
    return LeaceLinearClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)


def leace_record(module: LeaceLinearClassifier) -> dict[str, Any]:
    """The erasure's settings: where it acts and how much of the embedding it moves.

    ``rank_erased`` is ``d - rank(P)`` of the projection ``P`` (at most ``attribute classes - 1``
    for LEACE).
    """
    weight = module.eraser.weight.detach().double().cpu()
    moved = torch.eye(weight.shape[0], dtype=weight.dtype) - weight
    return {
        "defence": ERASURE,
        "location": "embedding",
        "dim": module.eraser.dim,
        "rank_erased": int(torch.linalg.matrix_rank(moved, atol=1e-6)),
    }


def build_dp_supervised(
    ctx: RunContext, role: str, upstream: Mapping[str, Path], epsilon: float | None = None
) -> pl.LightningModule:
    """The DP-SGD supervised baseline for ``role``: noise calibrated to ``epsilon`` (default:
    the one ``dp.epsilon``) over the stage's epochs, or ``dp.noise_multiplier`` when set (0:
    clipping only), at ``data.batch_size`` expected batch size over the role's train quarter.

    Raises:
        UserError: when ``dp.epsilon`` lists several values and no ``epsilon`` is given, or
            when the budget cannot be met.
    """
    cfg = ctx.cfg
    noise = cfg.dp.noise_multiplier
    if noise is not None and (epsilon is not None or len(dp_epsilons(cfg)) > 1):
        raise UserError("dp.noise_multiplier sets the noise of one model: give one dp.epsilon")
    if epsilon is None and noise is None:
        values = dp_epsilons(cfg)
        if len(values) > 1:
            raise UserError(
                f"dp.epsilon={values} lists several targets: train one with method=<name>_eps<E>"
            )
        (epsilon,) = values
    if epsilon is not None and math.isinf(epsilon):  # dp.epsilon=inf: clipping only
        epsilon, noise = None, 0.0
    own = cfg.dp.max_epochs  # the stage's epochs (its epochs_section is dp)
    try:
        return DPSupervisedClassifier(
            **model_settings(ctx),
            optim=to_dict(cfg.dp.optim),
            train_size=ctx.splits.quarter_size,
            batch_size=min(int(cfg.dp.batch_size or cfg.data.batch_size), ctx.splits.quarter_size),
            epochs=int(cfg.trainer.max_epochs if own is None else own),
            epsilon=None if epsilon is None else float(epsilon),
            delta=cfg.dp.delta,
            max_grad_norm=float(cfg.dp.max_grad_norm),
            accountant=str(cfg.dp.accountant),
            noise_multiplier=None if noise is None else float(noise),
            augmult=int(cfg.dp.augmult),
            augmult_shift=int(cfg.dp.augmult_shift),
        )
    except ValueError as err:  # an unreachable budget or a bad setting: one line
        raise UserError(f"dp: {err}") from None


def load_dp_supervised(path: Path) -> nn.Module:
    """A trained DP-SGD baseline from its checkpoint (hooks detached: a plain classifier)."""
    return DPSupervisedClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)


def dp_record(module: DPSupervisedClassifier) -> dict[str, Any]:
    """What the training spent: the accountant's ``epsilon`` at ``delta``, the noise
    multiplier, the clipping norm, the sampling rate and the steps (see
    :meth:`DPSupervisedClassifier.privacy_spent`)."""
    return {"defence": DP_SGD, **module.privacy_spent()}
