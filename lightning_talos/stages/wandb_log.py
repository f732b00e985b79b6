"""W&B logging of attack results and reports (results never depend on it: JSON holds them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lightning_talos.analysis.frontier import frontier_rows
from lightning_talos.analysis.names import PAPER_ATTACKS
from lightning_talos.config.load import to_dict
from lightning_talos.stages.registry import entry_methods, method_labels
from lightning_talos.stages.trainer import wandb_mode

MIA, AIA = PAPER_ATTACKS

HEADLINE = ("acc", "balanced_acc", "auc", "advantage", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr")


def flatten(payload: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as ``a/b/c`` keys (lists and strings are skipped)."""
    out: dict[str, float] = {}
    if isinstance(payload, dict):
        for key, value in payload.items():
            out.update(flatten(value, f"{prefix}{key}/"))
    elif isinstance(payload, (int, float)) and not isinstance(payload, bool):
        out[prefix.rstrip("/")] = float(payload)
    return out


def attack_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Rows of a W&B Table: one per attack (MIA) or probe (AIA)."""
    entries = result.get("attacks") or result.get("probes") or {}
    columns = ["name", *HEADLINE, "macro_f1", "majority_baseline"]
    rows = [[name, *(entry.get(c) for c in columns[1:])] for name, entry in entries.items()]
    return columns, rows


def _init(cfg: DictConfig, root: Path, name: str) -> Any:
    import wandb

    return wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.run.name,
        name=name,
        job_type=name.split("-")[0],
        dir=str(root),
        mode=wandb_mode(cfg),
        config=to_dict(cfg),
        tags=[cfg.data.name, cfg.model.backbone, name, *cfg.logger.tags],
        reinit="create_new",
    )


def log_report(cfg: DictConfig, root: Path, results: dict[str, Any]) -> None:
    """The paper-style table as a W&B Table in the run's group."""
    if wandb_mode(cfg) == "disabled":
        return
    import wandb

    columns = ["model", "test_acc", "gap", "best_mia", "best_mia_acc", "best_mia_auc",
               "aia_acc", "aia_baseline"]  # fmt: skip
    rows = []
    methods = [k for k, v in results.items() if isinstance(v, dict) and "utility" in v]
    for method in methods:
        entry = results.get(method) or {}
        mia = entry.get(MIA) or {}
        best = max(mia, key=lambda k: mia[k]["acc"]) if mia else None
        aia = entry.get(AIA) or {}
        probe = aia.get(aia.get("strongest", ""), {}) if aia else {}
        utility = entry.get("utility") or {}
        rows.append([method, utility.get("test_acc"), utility.get("gap"), best,
                     mia[best]["acc"] if best else None, mia[best]["auc"] if best else None,
                     probe.get("acc"), aia.get("majority_baseline")])  # fmt: skip
    run = _init(cfg, root, "report")
    try:
        run.log({"results": wandb.Table(columns=columns, data=rows)})
        run.log({"frontier": wandb.Table(*frontier_table(results))})
        for image in ("roc.png", "aia.png", "frontier.png"):
            if (root / image).is_file():
                run.log({image[:-4]: wandb.Image(str(root / image))})
    finally:
        run.finish()


FRONTIER_COLUMNS = ("label", "task_acc", "aia_excess", "aia_probe", "mia_adv", "mia_attack",
                    "epsilon", "delta", "max_grad_norm", "noise_multiplier")  # fmt: skip


def frontier_table(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The privacy-utility frontier (``analysis/frontier.py``) as W&B Table columns and rows,
    interval ends as ``<key>_lo`` / ``<key>_hi``."""

    columns = [*FRONTIER_COLUMNS]
    intervals = ("task_ci", "aia_ci", "mia_ci")
    columns += [f"{k}_{end}" for k in intervals for end in ("lo", "hi")]
    rows = []
    points = frontier_rows(results, methods=entry_methods(results), labels=method_labels())
    for row in points:
        ends = [row[k][i] if row[k] is not None else None for k in intervals for i in (0, 1)]
        rows.append([*(row[c] for c in FRONTIER_COLUMNS), *ends])
    return columns, rows


def log_attack(
    cfg: DictConfig, root: Path, name: str, result: dict[str, Any], image: Path | None = None
) -> None:
    """One W&B run per attack stage in the run's group: metrics, a Table, the ROC image."""
    if wandb_mode(cfg) == "disabled":
        return
    import wandb

    run = _init(cfg, root, name)
    try:
        run.log(flatten(result))
        columns, rows = attack_table(result)
        payload: dict[str, Any] = {"attacks": wandb.Table(columns=columns, data=rows)}
        if image is not None and image.is_file():
            payload["roc"] = wandb.Image(str(image))
        run.log(payload)
    finally:
        run.finish()
