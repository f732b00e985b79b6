"""The attack stages: membership inference (mia) and attribute inference (aia) on one method."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from lightning_talos.attacks.attribute import run_probes
from lightning_talos.attacks.label_only import (
    augmentation_robustness,
    boundary_distance,
    label_only_attack,
)
from lightning_talos.attacks.membership import METRICS, metric_attack, nn_attack
from lightning_talos.attacks.outputs import ModelOutputs, SplitOutputs
from lightning_talos.data.datamodule import as_float
from lightning_talos.errors import UserError
from lightning_talos.pipeline.context import MODEL_STAGE, RunContext
from lightning_talos.pipeline.features import device, load_classifier, model_outputs
from lightning_talos.pipeline.provenance import check_attack_models
from lightning_talos.pipeline.rundir import (
    check_reusable,
    new_manifest,
    read_manifest,
    stage_config,
    write_json,
)
from lightning_talos.pipeline.training import require_done
from lightning_talos.pipeline.wandb_log import log_attack
from lightning_talos.report.plots import plot_roc


def accuracy(outputs: SplitOutputs) -> float:
    return float((outputs.logits.argmax(1) == outputs.labels).float().mean())


def utility(outputs: ModelOutputs) -> dict[str, float]:
    """Train (member) and test (non-member) accuracy and their gap, from eval-mode outputs."""
    train, test = accuracy(outputs.members), accuracy(outputs.nonmembers)
    return {"train_acc": train, "test_acc": test, "gap": train - test}


def attack_inputs(ctx: RunContext, kind: str) -> dict[str, str]:
    """Completion ids of the models an attack stage reads."""
    stage = MODEL_STAGE[ctx.cfg.method]
    roles = ("target", "shadow") if kind == "mia" else ("target",)
    return {f"{stage}-{r}": require_done(ctx, stage, r)["completion_id"] for r in roles}


def run_attack_stage(
    ctx: RunContext, kind: str, compute: Callable[[RunContext], dict[str, Any]]
) -> Path:
    """Run (or reuse) ``<run>/<kind>-<method>/<kind>.json``; returns its path."""
    out_dir = ctx.root / f"{kind}-{ctx.cfg.method}"
    path = out_dir / f"{kind}.json"
    config = stage_config(ctx.cfg, kind)
    inputs = attack_inputs(ctx, kind)
    check_attack_models(ctx, kind)  # settings and readable checkpoints of every model read
    manifest = read_manifest(out_dir)
    if manifest is not None and ctx.cfg.run.resume != "never":
        check_reusable(manifest, config, out_dir)
        if manifest.get("status") == "done" and manifest.get("inputs") == inputs and path.is_file():
            print(f"[{kind}-{ctx.cfg.method}] already done: {path}")
            return path
    started = time.time()
    manifest = new_manifest(kind, None, config, inputs=inputs, split_hash=ctx.splits.hash)
    write_json(out_dir / "manifest.json", manifest)
    result = compute(ctx)
    write_json(path, result)
    manifest.update(
        status="done",
        completion_id=uuid.uuid4().hex,
        wall_time_s=round(time.time() - started, 2),
    )
    write_json(out_dir / "manifest.json", manifest)
    return path


def _subset(indices: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= len(indices):
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, size=n, replace=False))


def _query_scores(
    ctx: RunContext, stage: str, role: str, score: Callable[..., np.ndarray], n: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Label-only scores of one model on seeded subsets of its members and non-members."""
    model = load_classifier(ctx, stage, role)
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


def _label_only(ctx: RunContext, stage: str, name: str) -> dict[str, Any]:
    mia = ctx.cfg.mia
    if name == "label_only":

        def score(model: Any, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
            return boundary_distance(
                model, x, y, num_iterations=mia.hsj_iterations,
                grad_samples=mia.hsj_grad_samples, seed=ctx.cfg.seed,
            )  # fmt: skip

        n = mia.label_only_samples
    else:

        def score(model: Any, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
            return augmentation_robustness(
                model, x, y, n_aug=mia.aug_n, max_shift=mia.aug_max_shift, seed=ctx.cfg.seed
            )

        n = mia.aug_samples
    shadow = _query_scores(ctx, stage, "shadow", score, n)
    target = _query_scores(ctx, stage, "target", score, n)
    return label_only_attack(*shadow, *target, n_bootstrap=mia.bootstrap, seed=ctx.cfg.seed)


def compute_mia(ctx: RunContext) -> dict[str, Any]:
    """Every configured membership attack against the method's target model."""
    cfg = ctx.cfg
    stage = MODEL_STAGE[cfg.method]
    target = model_outputs(ctx, stage, "target")
    shadow = model_outputs(ctx, stage, "shadow")
    attacks: dict[str, Any] = {}
    for name in cfg.attacks:
        if name == "nn":
            attacks["nn"] = _nn(cfg, shadow, target)
        elif name == "metric":
            for metric in METRICS:
                attacks[f"metric_{metric}"] = metric_attack(
                    shadow, target, metric, n_bootstrap=cfg.mia.bootstrap, seed=cfg.seed
                )
        else:
            attacks[name] = _label_only(ctx, stage, name)
    return {
        "method": cfg.method,
        "target": utility(target),
        "shadow": utility(shadow),
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


def compute_aia(ctx: RunContext) -> dict[str, Any]:
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
    target = model_outputs(ctx, MODEL_STAGE[cfg.method], "target")
    train, test = target.members, target.nonmembers
    assert train.attributes is not None and test.attributes is not None  # has_attribute
    probes = run_probes(
        train.embeddings.numpy(), train.attributes.numpy(),
        test.embeddings.numpy(), test.attributes.numpy(),
        ctx.pool.num_attribute_classes,
        probes=tuple(cfg.aia.probes),
        mlp_kwargs={
            "hidden": tuple(cfg.aia.mlp_hidden), "lr": cfg.aia.mlp_lr,
            "epochs": cfg.aia.mlp_epochs, "batch_size": cfg.aia.mlp_batch_size,
        },
        knn_k=cfg.aia.knn_k, n_bootstrap=cfg.aia.bootstrap, seed=cfg.seed,
    )  # fmt: skip
    strongest = probes.pop("strongest")
    return {
        "method": cfg.method,
        "num_classes": ctx.pool.num_attribute_classes,
        "majority_baseline": probes[strongest]["majority_baseline"],
        "probes": probes,
        "strongest": strongest,
        "target": utility(target),
    }


def run_mia(cfg: DictConfig, ctx: RunContext | None = None) -> Path:
    """``lightning-talos mia``: writes ``mia.json`` and ``roc.png``; returns the JSON path."""
    ctx = ctx or RunContext(cfg)
    path = run_attack_stage(ctx, "mia", compute_mia)
    result = _read(path)
    png = plot_roc(result["attacks"], path.with_name("roc.png"), title=f"MIA on {cfg.method}")
    log_attack(cfg, ctx.root, f"mia-{cfg.method}", result, image=png)
    return path


def run_aia(cfg: DictConfig, ctx: RunContext | None = None) -> Path:
    """``lightning-talos aia``: writes ``aia.json``; returns its path."""
    ctx = ctx or RunContext(cfg)
    path = run_attack_stage(ctx, "aia", compute_aia)
    log_attack(cfg, ctx.root, f"aia-{cfg.method}", _read(path))
    return path


def _read(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text())
