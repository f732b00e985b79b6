"""W&B logging of attack results and reports (results never depend on it: JSON holds them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lightning_talos.config.load import to_dict
from lightning_talos.pipeline.trainer import wandb_mode

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


def log_attack(
    cfg: DictConfig, root: Path, name: str, result: dict[str, Any], image: Path | None = None
) -> None:
    """One W&B run per attack stage in the run's group: metrics, a Table, the ROC image."""
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return
    import wandb

    run = wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.run.name,
        name=name,
        job_type=name.split("-")[0],
        dir=str(root),
        mode=mode,
        config=to_dict(cfg),
        tags=[cfg.data.name, cfg.model.backbone, name, *cfg.logger.tags],
        reinit="create_new",
    )
    try:
        run.log(flatten(result))
        columns, rows = attack_table(result)
        payload: dict[str, Any] = {"attacks": wandb.Table(columns=columns, data=rows)}
        if image is not None and image.is_file():
            payload["roc"] = wandb.Image(str(image))
        run.log(payload)
    finally:
        run.finish()
