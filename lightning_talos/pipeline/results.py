"""``results.json``: the audit's numbers in one documented schema (see README, "Results")."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from lightning_talos.errors import UserError
from lightning_talos.pipeline.context import RunContext
from lightning_talos.pipeline.rundir import git_commit, read_manifest, versions

SCHEMA_VERSION = 1
METHODS = ("supervised", "contrastive", "talos")
MIA_KEYS = ("acc", "balanced_acc", "auc", "advantage", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr")
AIA_KEYS = ("acc", "balanced_acc", "macro_f1")


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _mia_entry(attack: dict[str, Any]) -> dict[str, Any]:
    entry = {k: attack[k] for k in MIA_KEYS}
    entry["ci95"] = attack["ci95"]
    entry["n_members"] = attack.get("n_members")
    entry["n_nonmembers"] = attack.get("n_nonmembers")
    entry["roc"] = attack.get("roc")
    return entry


def method_results(root: Path, method: str) -> dict[str, Any] | None:
    """``utility``, ``mia`` and ``aia`` of one method from its attack outputs (None if absent)."""
    mia = _read(root / f"mia-{method}" / "mia.json")
    aia = _read(root / f"aia-{method}" / "aia.json")
    if mia is None and aia is None:
        return None
    utility = (mia or aia or {}).get("target")
    out: dict[str, Any] = {"utility": utility, "mia": None, "aia": None}
    if mia is not None:
        out["mia"] = {name: _mia_entry(a) for name, a in mia["attacks"].items()}
    if aia is not None:
        probes = {
            name: {**{k: p[k] for k in AIA_KEYS}, "ci95": p["ci95"]}
            for name, p in aia["probes"].items()
        }
        out["aia"] = {
            **probes,
            "majority_baseline": aia["majority_baseline"],
            "strongest": aia["strongest"],
        }
    return out


def build_results(ctx: RunContext, timings: dict[str, float]) -> dict[str, Any]:
    """Collect a finished audit's outputs into the results schema."""
    cfg = ctx.cfg
    results: dict[str, Any] = {"schema": SCHEMA_VERSION}
    for method in METHODS:
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
    return {**mean, "meta": meta, "spread": {k: spread[k] for k in METHODS}, "per_seed": per_seed}


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
    for method in METHODS:
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
