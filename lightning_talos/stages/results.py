"""``results.json``: the audit's numbers in one documented schema (see README, "Results")."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lightning_talos.analysis.claims import claim_problems, decode_correct, judge_claims
from lightning_talos.errors import UserError
from lightning_talos.precision import precision_record
from lightning_talos.runs.records import git_commit, machine_info, versions
from lightning_talos.stages.registry import PAPER_ATTACKS, REGISTRY, entry_methods, method_names

if TYPE_CHECKING:  # the context pulls in the data stack; the report needs only the schema
    from lightning_talos.runs.context import RunContext

#: 2: ``claims`` (verdicts) and ``utility.test_correct`` (per-sample correctness) added.
SCHEMA_VERSION = 2
MIA_KEYS = ("acc", "balanced_acc", "auc", "advantage", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr")
AIA_KEYS = ("acc", "balanced_acc", "macro_f1")
MIA, AIA = PAPER_ATTACKS
META_KEYS = ("dataset", "backbone", "seeds", "split_hash", "git_commit", "versions", "wall_time_s")


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
    defence = _defence(root, method)
    if defence is not None:
        out["defence"] = defence
    return out


def _defence(root: Path, method: str) -> dict[str, Any] | None:
    """What the method's target model recorded of its defence (``TrainStage.record``)."""
    chosen = REGISTRY.methods.get(method)
    metrics = _read(root / f"{chosen.model_stage}-target" / "metrics.json") if chosen else None
    return (metrics or {}).get("defence")


def build_results(ctx: RunContext, timings: dict[str, float]) -> dict[str, Any]:
    """Collect a finished audit's outputs into the results schema."""
    cfg = ctx.cfg
    results: dict[str, Any] = {"schema": SCHEMA_VERSION}
    for method in method_names():
        results[method] = method_results(ctx.root, method)
    results["meta"] = {
        "dataset": str(cfg.data.name),
        "backbone": str(cfg.model.backbone),
        "stem": str(cfg.model.stem),
        "image_size": cfg.data.image_size,
        "seeds": [cfg.seed],
        "split_hash": ctx.splits.hash,
        "quarter_size": ctx.splits.quarter_size,
        "talos_lambda": cfg.talos["lambda"],
        # resamples behind the attacks' intervals (0: none; a one-seed verdict then cannot rest
        # on them)
        "bootstrap": {MIA: cfg.mia.bootstrap, AIA: cfg.aia.bootstrap},
        # what the claims are judged on, declared in the config before anything ran
        "claims_basis": {
            "membership_attacks": [str(a) for a in cfg.claims.membership_attacks],
            "attribute_probes": [str(p) for p in cfg.claims.attribute_probes],
        },
        **precision_record(cfg.trainer),
        "git_commit": git_commit(),
        "versions": versions(),
        "machine": machine_info(),
        "wall_time_s": _stage_times(ctx, timings),
        "profile": _stage_profiles(ctx),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    results["claims"] = judge_claims(results)
    return results


def _stage_times(ctx: RunContext, timings: dict[str, float]) -> dict[str, float]:
    """Wall time per stage: this audit's, else the time recorded when it ran."""
    out = dict(timings)
    for path in sorted(p for p in ctx.root.iterdir() if p.is_dir()):
        manifest = ctx.folder_named(path.name).manifest
        if manifest and path.name not in out and "wall_time_s" in manifest:
            out[path.name] = manifest["wall_time_s"]
    return out


def _stage_profiles(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """Each stage's host and step profile, as recorded when it ran (see ``profiling``)."""
    out = {}
    for path in sorted(p for p in ctx.root.iterdir() if p.is_dir()):
        manifest = ctx.folder_named(path.name).manifest
        if manifest and "profile" in manifest:
            out[path.name] = manifest["profile"]
    return out


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every numeric leaf, the standard deviation under ``spread``, the
    per-seed results under ``per_seed`` and verdicts judged on the spread between seeds.

    Per-sample fields (``test_correct``) and per-seed verdicts are not averaged: they stay in
    ``per_seed``, where :func:`~lightning_talos.analysis.claims.judge_claims` reads each seed's
    numbers.

    Raises:
        UserError: If ``per_seed`` is empty.
    """
    if not per_seed:
        raise UserError("no per-seed results to aggregate")
    mean = _combine(per_seed, np.mean)
    spread = _combine(per_seed, lambda v: np.std(v, ddof=1) if len(v) > 1 else 0.0)
    meta = dict(per_seed[0]["meta"])
    meta["seeds"] = [s for r in per_seed for s in r["meta"]["seeds"]]
    meta["split_hash"] = [r["meta"]["split_hash"] for r in per_seed]
    results = {
        **mean,
        "meta": meta,
        "spread": {k: v for k, v in spread.items() if k in method_names()},
    }
    results["per_seed"] = per_seed
    results["claims"] = judge_claims(results)
    return results


#: Keys never averaged over seeds: per-seed structure, per-sample data and verdicts.
_NOT_AVERAGED = ("meta", "per_seed", "spread", "roc", "test_correct", "claims")


def _combine(items: list[Any], fn: Any) -> Any:
    first = items[0]
    if isinstance(first, dict):
        keys = [k for k in first if k not in _NOT_AVERAGED]
        return {k: _combine([i.get(k) for i in items], fn) for k in keys}
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return first
    if isinstance(first, (int, float)):
        return float(fn(np.asarray(items, dtype=float)))
    if isinstance(first, list) and first and isinstance(first[0], (int, float)):
        return [float(fn(np.asarray(col, dtype=float))) for col in zip(*items)]
    return first


def validate_results(results: Any) -> list[str]:
    """Problems with a results dict against the documented schema (empty list = valid).

    Checks every field the report, ``compare`` and the verdicts read, with its type, so that a
    hand-edited file is refused with the field's name instead of failing half-way through.
    """
    if not isinstance(results, dict):
        return ["the top level must be a JSON object"]
    problems: list[str] = []
    if results.get("schema") != SCHEMA_VERSION:
        problems.append(
            f"schema must be {SCHEMA_VERSION}, got {results.get('schema')!r} (re-run "
            "`lightning-talos audit` to rebuild results.json)"
        )
    problems += _meta_problems(results.get("meta"))
    for method in entry_methods(results):
        if results.get(method) is not None:
            problems += _method_problems(results[method], method)
    problems += claim_problems(results.get("claims"))
    per_seed = results.get("per_seed")
    if per_seed is not None:
        if not isinstance(per_seed, list) or not per_seed:
            problems.append("per_seed must be a non-empty list")
        else:
            for i, run in enumerate(per_seed):
                problems += [f"per_seed[{i}].{p}" for p in validate_results(run)]
    return problems


def _number(value: Any) -> bool:
    """A finite int or float (JSON's NaN and Infinity are refused)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value)


def _meta_problems(meta: Any) -> list[str]:
    if not isinstance(meta, dict):
        return ["meta missing"]
    problems = [f"meta.{key} missing" for key in META_KEYS if key not in meta]
    seeds = meta.get("seeds")
    if "seeds" in meta and not (isinstance(seeds, list) and all(isinstance(s, int) for s in seeds)):
        problems.append("meta.seeds must be a list of integers")
    quarter = meta.get("quarter_size")
    if quarter is not None and (not isinstance(quarter, int) or quarter < 1):
        problems.append("meta.quarter_size must be a positive integer")
    return problems


def _method_problems(entry: Any, method: str) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{method} must be an object or null"]
    problems = _utility_problems(entry.get("utility"), f"{method}.utility")
    mia = entry.get(MIA)
    if mia is not None:
        if not isinstance(mia, dict):
            problems.append(f"{method}.mia must be an object or null")
        else:
            for name, attack in mia.items():
                problems += _attack_problems(attack, f"{method}.mia.{name}")
    aia = entry.get(AIA)
    if aia is not None:
        problems += _aia_problems(aia, f"{method}.aia")
    return problems + _defence_problems(entry.get("defence"), f"{method}.defence")


#: ``defence`` of a DP-SGD model's record, and the numbers that record must hold.
DP_SGD = "dp_sgd"
DP_KEYS = ("epsilon", "delta", "max_grad_norm", "noise_multiplier", "sample_rate")


def _defence_problems(defence: Any, where: str) -> list[str]:
    if defence is None:
        return []
    if not isinstance(defence, dict) or not isinstance(defence.get("defence"), str):
        return [f"{where} must be an object naming its defence"]
    if defence["defence"] != DP_SGD:
        return []
    # epsilon is null (infinite) exactly when no noise was added: clipping alone
    unbounded = defence.get("epsilon") is None and defence.get("noise_multiplier") == 0
    keys = [k for k in DP_KEYS if not (k == "epsilon" and unbounded)]
    return [f"{where}.{k} must be a number" for k in keys if not _number(defence.get(k))]


def _utility_problems(utility: Any, where: str) -> list[str]:
    if not isinstance(utility, dict):
        return [f"{where} missing"]
    problems = [
        f"{where}.{key} must be a number"
        for key in ("train_acc", "test_acc", "gap")
        if not _number(utility.get(key))
    ]
    correct = utility.get("test_correct")
    if correct is not None:
        try:
            decode_correct(correct)
        except (AttributeError, UnicodeEncodeError, ValueError):
            problems.append(f"{where}.test_correct must be a string of 0 and 1")
    return problems


def _attack_problems(attack: Any, where: str) -> list[str]:
    if not isinstance(attack, dict):
        return [f"{where} must be an object"]
    problems = [f"{where}.{k} must be a number" for k in MIA_KEYS if not _number(attack.get(k))]
    ci = attack.get("ci95")
    for key in ("acc", "auc"):
        if not isinstance(ci, dict) or not _pair(ci.get(key)):
            problems.append(f"{where}.ci95.{key} must be [lo, hi]")
    n = attack.get("n_nonmembers")  # a float after averaging over seeds
    if n is not None and not (_number(n) and n >= 1 and float(n).is_integer()):
        problems.append(f"{where}.n_nonmembers must be a positive whole number")
    roc = attack.get("roc")
    if roc is not None and not (
        isinstance(roc, dict)
        and isinstance(roc.get("fpr"), list)
        and isinstance(roc.get("tpr"), list)
        and len(roc["fpr"]) == len(roc["tpr"])
        and all(_number(v) for v in roc["fpr"] + roc["tpr"])
    ):
        problems.append(f"{where}.roc must hold equal lists fpr and tpr")
    return problems


def _aia_problems(aia: Any, where: str) -> list[str]:
    if not isinstance(aia, dict):
        return [f"{where} must be an object or null"]
    problems = []
    if not _number(aia.get("majority_baseline")):
        problems.append(f"{where}.majority_baseline must be a number")
    probes = [name for name, probe in aia.items() if isinstance(probe, dict)]
    for name in probes:
        problems += [
            f"{where}.{name}.{k} must be a number"
            for k in AIA_KEYS
            if not _number(aia[name].get(k))
        ]
        if not _pair(_ci(aia[name])):
            problems.append(f"{where}.{name}.ci95.acc must be [lo, hi]")
    if aia.get("strongest") not in probes:
        problems.append(f"{where}.strongest must name one of the probes")
    for name, value in aia.items():
        if name not in ("majority_baseline", "strongest") and not isinstance(value, dict):
            problems.append(f"{where}.{name} must be an object")
    return problems


def _ci(entry: dict[str, Any]) -> Any:
    ci = entry.get("ci95")
    return ci.get("acc") if isinstance(ci, dict) else None


def check_results(results: Any, source: Path | str) -> dict[str, Any]:
    """``results`` when it matches the schema.

    Raises:
        UserError: naming the first bad field (and how many more there are) on one line.
    """
    problems = validate_results(results)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{source} is not a valid results file: {problems[0]}{more}")
    return results
