"""``results.json``: the audit's numbers in one documented schema (see README, "Results")."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from lightning_talos.errors import UserError
from lightning_talos.pipeline.attack import AIA_KEYS, MIA_KEYS
from lightning_talos.pipeline.context import RunContext
from lightning_talos.pipeline.rundir import git_commit, read_manifest, versions
from lightning_talos.pipeline.stages import REGISTRY, method_names

SCHEMA_VERSION = 1


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def method_results(root: Path, method: str) -> dict[str, Any] | None:
    """``utility`` and one entry per attack stage of one method (None if nothing ran).

    ``utility`` is the target model's train and test accuracy, as the first attack stage that
    read it recorded it.
    """
    outputs = {
        stage.name: _read(root / f"{stage.name}-{method}" / stage.output)
        for stage in REGISTRY.attack.values()
    }
    if all(v is None for v in outputs.values()):
        return None
    utility = next((o["target"] for o in outputs.values() if o and "target" in o), None)
    out: dict[str, Any] = {"utility": utility}
    for stage in REGISTRY.attack.values():
        result = outputs[stage.name]
        out[stage.name] = None if result is None else stage.summarize(result)
    return out


def build_results(ctx: RunContext, timings: dict[str, float]) -> dict[str, Any]:
    """Collect a finished audit's outputs into the results schema."""
    cfg = ctx.cfg
    results: dict[str, Any] = {"schema": SCHEMA_VERSION}
    for method in method_names():
        results[method] = method_results(ctx.root, method)
    results["meta"] = {
        "dataset": cfg.data.name,
        "backbone": cfg.model.backbone,
        "stem": cfg.model.stem,
        "image_size": cfg.data.image_size,
        "seeds": [cfg.seed],
        "split_hash": ctx.splits.hash,
        "quarter_size": ctx.splits.quarter_size,
        "talos_lambda": cfg.talos["lambda"],
        "git_commit": git_commit(),
        "versions": versions(),
        "wall_time_s": _stage_times(ctx.root, timings),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return results


def _stage_times(root: Path, timings: dict[str, float]) -> dict[str, float]:
    """Wall time per stage: this audit's, else the time recorded when it ran."""
    out = dict(timings)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        manifest = read_manifest(folder)
        if manifest and folder.name not in out and "wall_time_s" in manifest:
            out[folder.name] = manifest["wall_time_s"]
    return out


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every numeric leaf, with the standard deviation under ``spread``."""
    if not per_seed:
        raise UserError("no per-seed results to aggregate")
    mean = _combine(per_seed, np.mean)
    spread = _combine(per_seed, lambda v: np.std(v, ddof=1) if len(v) > 1 else 0.0)
    meta = dict(per_seed[0]["meta"])
    meta["seeds"] = [s for r in per_seed for s in r["meta"]["seeds"]]
    meta["split_hash"] = [r["meta"]["split_hash"] for r in per_seed]
    spread = {k: spread[k] for k in method_names() if k in spread}
    return {**mean, "meta": meta, "spread": spread, "per_seed": per_seed}


def _combine(items: list[Any], fn: Any) -> Any:
    first = items[0]
    if isinstance(first, dict):
        keys = [k for k in first if k not in ("meta", "per_seed", "spread", "roc")]
        return {k: _combine([i.get(k) for i in items], fn) for k in keys}
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return first
    if isinstance(first, (int, float)):
        return float(fn(np.asarray(items, dtype=float)))
    if isinstance(first, list) and first and isinstance(first[0], (int, float)):
        return [float(fn(np.asarray(col, dtype=float))) for col in zip(*items)]
    return first


def validate_results(results: dict[str, Any]) -> list[str]:
    """Problems with a results dict against the documented schema (empty list = valid)."""
    problems: list[str] = []
    if results.get("schema") != SCHEMA_VERSION:
        problems.append(f"schema must be {SCHEMA_VERSION}")
    for key in ("dataset", "backbone", "seeds", "split_hash", "git_commit", "versions",
                "wall_time_s"):  # fmt: skip
        if key not in results.get("meta", {}):
            problems.append(f"meta.{key} missing")
    for method in method_names():
        entry = results.get(method)
        if entry is None:
            continue
        for key in ("train_acc", "test_acc", "gap"):
            if not isinstance((entry.get("utility") or {}).get(key), float):
                problems.append(f"{method}.utility.{key} missing")
        for name, attack in (entry.get("mia") or {}).items():
            problems += [f"{method}.mia.{name}.{k} missing" for k in MIA_KEYS if k not in attack]
            if "ci95" not in attack:
                problems.append(f"{method}.mia.{name}.ci95 missing")
        aia = entry.get("aia")
        if aia is not None:
            if "majority_baseline" not in aia:
                problems.append(f"{method}.aia.majority_baseline missing")
            for name in ("mlp", "logistic", "knn"):
                if name in aia:
                    problems += [f"{method}.aia.{name}.{k} missing" for k in AIA_KEYS
                                 if k not in aia[name]]  # fmt: skip
    return problems
