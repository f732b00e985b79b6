"""The paper's two attack stages on one method's model: membership inference (``compute_mia``)
and attribute inference (``compute_aia``), with what each writes into ``results.json``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from lightning_talos.analysis.claims import encode_correct
from lightning_talos.analysis.plots import plot_roc
from lightning_talos.attacks.attribute import run_probes
from lightning_talos.attacks.clean_accuracy import clean_utility
from lightning_talos.attacks.label_only import (
    augmentation_robustness,
    boundary_distance,
    label_only_attack,
)
from lightning_talos.attacks.membership import METRICS, metric_attack, nn_attack
from lightning_talos.attacks.outputs import ModelOutputs, SplitOutputs
from lightning_talos.data.datamodule import as_float
from lightning_talos.errors import UserError
from lightning_talos.runs.context import RunContext
from lightning_talos.runs.settings import run_root
from lightning_talos.stages.features import ModelSource, device
from lightning_talos.stages.results import AIA_KEYS, MIA_KEYS
from lightning_talos.stages.strong_attacks import STRONG_ATTACKS, strong_attacks
from lightning_talos.stages.wandb_log import log_attack


def accuracy(outputs: SplitOutputs) -> float:
    return float((outputs.logits.argmax(1) == outputs.labels).float().mean())


def utility(outputs: ModelOutputs, clean_labels: np.ndarray | None = None) -> dict[str, Any]:
    """Train (member) and test (non-member) accuracy, their gap, and per-sample test correctness
    (for the paired utility interval of claim 3), from eval-mode outputs; with the pool's clean
    labels also ``clean_train_acc`` and ``clean_test_acc``."""
    train, test = accuracy(outputs.members), accuracy(outputs.nonmembers)
    test_correct = encode_correct(outputs.nonmembers.logits.argmax(1), outputs.nonmembers.labels)
    return {"train_acc": train, "test_acc": test, "gap": train - test, "test_correct": test_correct,
            **clean_utility(outputs, clean_labels)}  # fmt: skip


def _subset(indices: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= len(indices):
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, size=n, replace=False))


def _query_scores(
    source: ModelSource, role: str, score: Callable[..., np.ndarray], n: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Label-only scores of one model on seeded subsets of its members and non-members."""
    ctx = source.ctx
    model = source.classifier(role)
    splits, pool = ctx.splits, ctx.pool
    scores, membership = [], []
    for member, indices in ((1, splits.members(role)), (0, splits.nonmembers(role))):
        chosen = _subset(indices, n, ctx.cfg.seed)
        images = as_float(pool.images[torch.as_tensor(chosen)]).to(device())
        labels = torch.as_tensor(pool.labels[chosen]).to(device())
        with torch.no_grad():
            scores.append(score(model, images, labels))
        membership.append(np.full(len(chosen), member))
    return np.concatenate(scores), np.concatenate(membership)


def _label_only(source: ModelSource, name: str) -> dict[str, Any]:
    ctx = source.ctx
    mia = ctx.cfg.mia
    if name == "label_only":

        def score(model: Any, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
            return boundary_distance(
                model, x, y, num_iterations=mia.hsj_iterations,
                grad_samples=mia.hsj_grad_samples, tolerance=mia.hsj_tolerance,
                abs_tolerance=mia.hsj_abs_tolerance, seed=ctx.cfg.seed,
            )  # fmt: skip

        n = mia.label_only_samples
    else:

        def score(model: Any, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
            return augmentation_robustness(
                model, x, y, n_aug=mia.aug_n, max_shift=mia.aug_max_shift, seed=ctx.cfg.seed
            )

        n = mia.aug_samples
    shadow = _query_scores(source, "shadow", score, n)
    target = _query_scores(source, "target", score, n)
    return label_only_attack(*shadow, *target, n_bootstrap=mia.bootstrap, seed=ctx.cfg.seed)


def compute_mia(ctx: RunContext, source: ModelSource) -> dict[str, Any]:
    """Every configured membership attack against the method's target model, calibrated on its
    shadow model."""
    cfg = ctx.cfg
    target = source.outputs("target")
    shadow = source.outputs("shadow")
    attacks: dict[str, Any] = {}
    for name in map(str, cfg.attacks):
        if name == "nn":
            attacks["nn"] = _nn(cfg, shadow, target)
        elif name == "metric":
            for metric in METRICS:
                attacks[f"metric_{metric}"] = metric_attack(
                    shadow, target, metric, n_bootstrap=cfg.mia.bootstrap, seed=cfg.seed
                )
        elif name not in STRONG_ATTACKS:  # those share caches: computed together below
            attacks[name] = _label_only(source, name)
    attacks.update(strong_attacks(ctx, source))
    return {
        "method": source.method,
        "target": utility(target, ctx.pool.clean_labels),
        "shadow": utility(shadow, ctx.pool.clean_labels),
        "attacks": attacks,
    }


def _nn(cfg: DictConfig, shadow: ModelOutputs, target: ModelOutputs) -> dict[str, Any]:
    """The NN attack: headline numbers are the final epoch's; ``best_val`` is kept beside."""
    result = nn_attack(
        shadow, target, top_k=cfg.mia.nn_top_k, hidden=tuple(cfg.mia.nn_hidden),
        epochs=cfg.mia.nn_epochs, lr=cfg.mia.nn_lr, batch_size=cfg.mia.nn_batch_size,
        seed=cfg.seed, n_bootstrap=cfg.mia.bootstrap,
    )  # fmt: skip
    return {
        **result["final"],
        "selection": "final epoch",
        "best_val": {**result["best_val"], "selection": "best shadow-val epoch"},
        "best_epoch": result["best_epoch"],
    }


def probe_settings(cfg: DictConfig) -> dict[str, Any]:
    """The ``aia`` section as :func:`~lightning_talos.attacks.attribute.run_probes` keywords."""
    mlp = {"hidden": tuple(cfg.aia.mlp_hidden), "lr": cfg.aia.mlp_lr,
           "epochs": cfg.aia.mlp_epochs, "batch_size": cfg.aia.mlp_batch_size}  # fmt: skip
    return {"probes": tuple(map(str, cfg.aia.probes)), "mlp_kwargs": mlp,
            "knn_k": cfg.aia.knn_k, "n_bootstrap": cfg.aia.bootstrap, "seed": cfg.seed}  # fmt: skip


def compute_aia(ctx: RunContext, source: ModelSource) -> dict[str, Any]:
    """Fresh probes on the target's embeddings: trained on members, scored on non-members.

    Raises:
        UserError: for datasets without a sensitive attribute.
    """
    cfg = ctx.cfg
    if not ctx.pool.has_attribute:
        raise UserError(
            f"{cfg.data.name} has no sensitive attribute: attribute inference needs "
            "utkface, celeba or synthetic"
        )
    target = source.outputs("target")
    train, test = target.members, target.nonmembers
    assert train.attributes is not None and test.attributes is not None  # has_attribute
    probes = run_probes(
        train.embeddings.numpy(), train.attributes.numpy(),
        test.embeddings.numpy(), test.attributes.numpy(),
        ctx.pool.num_attribute_classes, **probe_settings(cfg),
    )  # fmt: skip
    strongest = probes.pop("strongest")
    return {
        "method": source.method,
        "num_classes": ctx.pool.num_attribute_classes,
        "majority_baseline": probes[strongest]["majority_baseline"],
        "probes": probes,
        "strongest": strongest,
        "target": utility(target, ctx.pool.clean_labels),
    }


def finish_mia(cfg: DictConfig, out_dir: Path, result: dict[str, Any]) -> None:
    """``roc.png`` beside ``mia.json`` and the W&B run of the stage."""
    method = result["method"]
    png = plot_roc(result["attacks"], out_dir / "roc.png", title=f"MIA on {method}")
    log_attack(cfg, run_root(cfg), out_dir.name, result, image=png)


def finish_aia(cfg: DictConfig, out_dir: Path, result: dict[str, Any]) -> None:
    """The W&B run of the stage."""
    log_attack(cfg, run_root(cfg), out_dir.name, result)


def summarize_mia(result: dict[str, Any]) -> dict[str, Any]:
    """``results.json``'s ``mia`` entry of a method: the headline keys of every attack."""
    return {name: _mia_entry(a) for name, a in result["attacks"].items()}


def summarize_aia(result: dict[str, Any]) -> dict[str, Any]:
    """``results.json``'s ``aia`` entry of a method: every probe, the baseline, the strongest."""
    probes = {
        name: {**{k: p[k] for k in AIA_KEYS}, "ci95": p["ci95"]}
        for name, p in result["probes"].items()
    }
    return {
        **probes,
        "majority_baseline": result["majority_baseline"],
        "strongest": result["strongest"],
    }


def _mia_entry(attack: dict[str, Any]) -> dict[str, Any]:
    entry = {k: attack[k] for k in MIA_KEYS}
    entry["ci95"] = attack["ci95"]
    entry["n_members"] = attack.get("n_members")
    entry["n_nonmembers"] = attack.get("n_nonmembers")
    entry["roc"] = attack.get("roc")
    return entry
