"""``audit-encoder``: the privacy audit of an encoder checkpoint trained outside this framework.

Reads a dataset the framework knows (``data.*``), the user's member and non-member lists
(``encoder.members`` / ``encoder.nonmembers``: ``split:train``, ``split:test`` or a file of
indices or names) and the checkpoint (``encoder.*``, loaded by ``models/external.py``), and
measures on the embeddings ``h``:

* ``mia``: EncoderMI's similarity score of augmented views (``attacks/encoder.py``), as AUC and
  TPR at 1% / 0.1% FPR with stratified bootstrap intervals (``encoder_similarity``). Without a
  shadow encoder it is threshold-free: no accuracy is reported, because a threshold picked on
  the target's own members would flatter it. With ``encoder.shadow`` (and its own lists) the
  threshold and the similarity-vector classifier are calibrated on the shadow
  (``encoder_similarity`` gains ``acc``; ``encoder_classifier`` is added).
* ``aia`` (datasets with a sensitive attribute): the probes of ``aia.probes`` fitted on the
  members' embeddings and scored on the non-members', with the majority baseline.
* ``utility``: a logistic probe of the task label fitted on the members, scored on the
  non-members.

Everything the user gives is checked before anything is written; results land in
``<run>/audit-encoder/results.json`` (an ``external`` entry, the schema style of ``audit``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from lightning_talos.analysis.names import PAPER_ATTACKS
from lightning_talos.attacks.attribute import attribute_metrics, logistic_probe, run_probes
from lightning_talos.attacks.encoder import encoder_attack, similarity_score, view_similarities
from lightning_talos.attacks.metrics import membership_metrics
from lightning_talos.config.load import to_dict
from lightning_talos.data.batched_aug import BatchedSimCLRAugment
from lightning_talos.data.datamodule import as_float, aug_kwargs
from lightning_talos.data.members import check_disjoint, members_hash, resolve_members
from lightning_talos.data.pool import Pool
from lightning_talos.data.registry import load_pool, resolved_labels
from lightning_talos.errors import UserError
from lightning_talos.models.external import ExternalEncoder, load_external_encoder
from lightning_talos.runs.records import git_commit, versions
from lightning_talos.runs.settings import run_root
from lightning_talos.stages.attack import probe_settings
from lightning_talos.stages.features import device

log = logging.getLogger(__name__)

STAGE = "audit-encoder"
#: Keys of a threshold-free membership entry (no shadow: no calibrated decision).
THRESHOLD_FREE = ("auc", "advantage", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr")
LOW_FPRS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0p1pct_fpr": 0.001}

MIA, AIA = PAPER_ATTACKS  # the entries of the ``external`` result, as ``audit`` names them


@dataclass
class Lists:
    """Pool indices of an encoder's members and non-members (already subsampled)."""

    members: np.ndarray
    nonmembers: np.ndarray

    @property
    def index(self) -> np.ndarray:
        return np.concatenate([self.members, self.nonmembers])

    @property
    def is_member(self) -> np.ndarray:
        return np.r_[np.ones(len(self.members), bool), np.zeros(len(self.nonmembers), bool)]


@dataclass
class ExternalPlan:
    """Everything ``audit-encoder`` needs, checked: nothing is written while building it."""

    cfg: DictConfig
    pool: Pool
    target: ExternalEncoder
    lists: Lists
    hashes: dict[str, str]
    shadow: ExternalEncoder | None = None
    shadow_lists: Lists | None = None

    @property
    def out_dir(self) -> Path:
        return run_root(self.cfg) / STAGE


def _subset(index: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= len(index):
        return index
    return np.sort(np.random.default_rng(seed).choice(index, size=n, replace=False))


def _lists(cfg: DictConfig, pool: Pool, keys: tuple[str, str]) -> tuple[Lists, dict[str, str]]:
    members, nonmembers = (resolve_members(cfg.encoder[k], pool, key=f"encoder.{k}") for k in keys)
    check_disjoint(members, nonmembers, keys=(f"encoder.{keys[0]}", f"encoder.{keys[1]}"))
    n = cfg.encoder.samples
    if n is not None and n < 2:
        raise UserError(f"encoder.samples must be at least 2, got {n}")
    hashes = {k: members_hash(i, pool.name) for k, i in zip(keys, (members, nonmembers))}
    lists = Lists(_subset(members, n, cfg.seed), _subset(nonmembers, n, cfg.seed + 1))
    return lists, hashes


def _encoder(cfg: DictConfig, path: str, key: str) -> ExternalEncoder:
    enc = cfg.encoder
    loaded = load_external_encoder(
        Path(path).expanduser(),
        fmt=str(enc.format),
        arch=str(enc.arch),
        key_prefix=enc.key_prefix,
        stem=str(enc.stem),
        normalize=str(enc.normalize),
        image_size=int(cfg.data.image_size),
    )
    print(f"[{STAGE}] {key}: {loaded.description}")
    return loaded


def prepare_external(cfg: DictConfig) -> ExternalPlan:
    """Check the user's encoder, lists and dataset; load them (no file is written).

    Raises:
        UserError: missing checkpoint, bad lists (unknown samples, overlap, empty), a shadow
            without its lists, too few views, or a checkpoint that does not load.
    """
    enc = cfg.encoder
    if not enc.checkpoint:
        raise UserError("encoder.checkpoint is required: the encoder file to audit")
    if enc.views < 2:
        raise UserError(f"encoder.views must be at least 2, got {enc.views}")
    if enc.shadow and not (enc.shadow_members and enc.shadow_nonmembers):
        raise UserError("encoder.shadow needs encoder.shadow_members and encoder.shadow_nonmembers")
    resolved_labels(cfg.data)
    pool = load_pool(cfg.data, seed=cfg.seed)
    lists, hashes = _lists(cfg, pool, ("members", "nonmembers"))
    shadow_lists = None
    if enc.shadow:
        shadow_lists, shadow_hashes = _lists(cfg, pool, ("shadow_members", "shadow_nonmembers"))
        hashes.update(shadow_hashes)
    target = _encoder(cfg, enc.checkpoint, "encoder")
    shadow = _encoder(cfg, enc.shadow, "shadow") if enc.shadow else None
    return ExternalPlan(cfg, pool, target, lists, hashes, shadow, shadow_lists)


@torch.no_grad()
def embeddings(encoder: ExternalEncoder, pool: Pool, index: np.ndarray, batch: int) -> np.ndarray:
    """Un-augmented embeddings ``h`` ``float64 [N, d]`` of the pool samples ``index``."""
    module = encoder.module.to(device()).eval()
    parts = []
    for start in range(0, len(index), batch):
        chunk = torch.as_tensor(index[start : start + batch])
        parts.append(module(as_float(pool.images[chunk]).to(device())).double().cpu())
    return torch.cat(parts).numpy()


def views(plan: ExternalPlan, encoder: ExternalEncoder, index: np.ndarray) -> np.ndarray:
    """Sorted view similarities ``[N, V(V-1)/2]`` of ``encoder`` on ``index`` (seeded views:
    the target and the shadow see the same draws)."""
    cfg = plan.cfg
    augment = BatchedSimCLRAugment(**aug_kwargs(cfg.data.aug, cfg.data.image_size))
    module = encoder.module.to(device()).eval()

    def embed(x: torch.Tensor) -> torch.Tensor:
        return module(x.to(device()))

    return view_similarities(
        embed, augment, plan.pool.images[torch.as_tensor(index)],
        n_views=int(cfg.encoder.views), batch_size=int(cfg.data.eval_batch_size), seed=cfg.seed,
    )  # fmt: skip


def tpr_interval(
    scores: np.ndarray, is_member: np.ndarray, fpr: float, n_bootstrap: int, seed: int
) -> list[float]:
    """Percentile 95% interval of TPR at FPR <= ``fpr`` over stratified bootstrap resamples.

    Per resample, with ``k = floor(fpr * n_nonmembers)`` non-members allowed above the
    threshold, the best realised operating point counts the members scoring strictly above the
    ``(k+1)``-th highest non-member: the same quantity as
    :func:`~lightning_talos.attacks.metrics.tpr_at_fpr` on the resample's exact ROC.

    Returns:
        ``[lo, hi]`` (the point estimate twice when ``n_bootstrap`` is 0).
    """
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[is_member], scores[~is_member]
    k = int(np.floor(fpr * len(neg) + 1e-9))
    rng = np.random.default_rng(seed)

    def tpr(p: np.ndarray, n: np.ndarray) -> np.ndarray:
        if k >= n.shape[1]:
            return np.ones(len(p))
        cut = -np.sort(-n, axis=1)[:, k]  # the (k+1)-th highest non-member score
        return (p > cut[:, None]).mean(axis=1)

    if n_bootstrap <= 0:
        point = float(tpr(pos[None], neg[None])[0])
        return [point, point]
    values = []
    block = max(1, 2_000_000 // len(scores))
    for start in range(0, n_bootstrap, block):
        b = min(block, n_bootstrap - start)
        p = pos[rng.integers(0, len(pos), size=(b, len(pos)))]
        n = neg[rng.integers(0, len(neg), size=(b, len(neg)))]
        values.append(tpr(p, n))
    lo, hi = np.percentile(np.concatenate(values), [2.5, 97.5])
    return [float(lo), float(hi)]


def with_tpr_intervals(
    entry: dict[str, Any], scores: np.ndarray, is_member: np.ndarray, n_bootstrap: int, seed: int
) -> dict[str, Any]:
    """Add ``ci95.tpr_at_1pct_fpr`` and ``ci95.tpr_at_0p1pct_fpr`` to a membership entry."""
    for key, fpr in LOW_FPRS.items():
        entry["ci95"][key] = tpr_interval(scores, is_member, fpr, n_bootstrap, seed)
    return entry


def threshold_free(scores: np.ndarray, is_member: np.ndarray, n_bootstrap: int, seed: int) -> dict:
    """The membership entry of a score without a calibrated threshold: AUC, advantage and TPR
    at low FPR with their intervals, the ROC summary, the sample counts."""
    full = membership_metrics(
        scores, is_member, np.zeros(len(scores), bool), n_bootstrap=n_bootstrap, seed=seed
    )
    entry = {k: full[k] for k in THRESHOLD_FREE}
    entry["ci95"] = {"auc": full["ci95"]["auc"]}
    entry.update({k: full[k] for k in ("n_members", "n_nonmembers", "roc")})
    entry["threshold_from"] = "none"
    return with_tpr_intervals(entry, scores, is_member, n_bootstrap, seed)


def measure_mia(plan: ExternalPlan) -> dict[str, Any]:
    """``encoder_similarity`` (and, with a shadow, ``encoder_classifier``)."""
    cfg, lists = plan.cfg, plan.lists
    boot, seed = int(cfg.mia.bootstrap), int(cfg.seed)
    target = views(plan, plan.target, lists.index)
    score = similarity_score(target)
    if plan.shadow is None or plan.shadow_lists is None:
        return {"encoder_similarity": threshold_free(score, lists.is_member, boot, seed)}
    shadow = views(plan, plan.shadow, plan.shadow_lists.index)
    found = encoder_attack(
        shadow, plan.shadow_lists.is_member, target, lists.is_member,
        hidden=tuple(cfg.mia.encoder_hidden), epochs=int(cfg.mia.encoder_epochs),
        lr=float(cfg.mia.encoder_lr), seed=seed, n_bootstrap=boot,
    )  # fmt: skip
    out = {"encoder_similarity": found["similarity"], "encoder_classifier": found["classifier"]}
    with_tpr_intervals(out["encoder_similarity"], score, lists.is_member, boot, seed)
    return out


def measure_aia(plan: ExternalPlan, h: np.ndarray) -> dict[str, Any] | None:
    """Attribute probes fitted on the members' embeddings, scored on the non-members'."""
    pool, cfg = plan.pool, plan.cfg
    if pool.attributes is None:
        return None
    n = len(plan.lists.members)
    attr = pool.attributes[plan.lists.index]
    if len(np.unique(attr[:n])) < 2:
        return {"skipped": "the members hold one attribute value: no probe can be fitted"}
    probes = run_probes(
        h[:n], attr[:n], h[n:], attr[n:], pool.num_attribute_classes, **probe_settings(cfg)
    )
    strongest = probes.pop("strongest")
    return {**probes, "majority_baseline": probes[strongest]["majority_baseline"],
            "strongest": strongest}  # fmt: skip


def measure_utility(plan: ExternalPlan, h: np.ndarray) -> dict[str, Any]:
    """Task accuracy of a logistic probe on the members' embeddings, scored on non-members."""
    pool, n = plan.pool, len(plan.lists.members)
    labels = pool.labels[plan.lists.index]
    if len(np.unique(labels[:n])) < 2:
        return {"skipped": "the members hold one task label: no probe can be fitted"}
    pred = logistic_probe(h[:n], labels[:n], h[n:], pool.num_classes, seed=plan.cfg.seed)
    scored = attribute_metrics(
        pred, labels[n:], pool.num_classes, majority_from=labels[:n],
        n_bootstrap=int(plan.cfg.aia.bootstrap), seed=int(plan.cfg.seed),
    )  # fmt: skip
    return {"probe": "logistic", "test_acc": scored["acc"], "balanced_acc": scored["balanced_acc"],
            "majority_baseline": scored["majority_baseline"], "ci95": scored["ci95"]}  # fmt: skip


def _meta(plan: ExternalPlan, wall: float) -> dict[str, Any]:
    cfg = plan.cfg

    def described(e: ExternalEncoder | None, path: str | None) -> dict[str, Any] | None:
        if e is None:
            return None
        return {"checkpoint": str(path), "sha256": e.sha256, "format": e.format,
                "arch": str(cfg.encoder.arch), "dim": e.dim,
                "loaded_as": e.description}  # fmt: skip

    return {
        "dataset": str(cfg.data.name),
        "image_size": int(cfg.data.image_size),
        "encoder": described(plan.target, cfg.encoder.checkpoint),
        "shadow": described(plan.shadow, cfg.encoder.shadow),
        "lists": {k: str(cfg.encoder[k]) for k in plan.hashes},
        "lists_hash": plan.hashes,
        "n_members": len(plan.lists.members),
        "n_nonmembers": len(plan.lists.nonmembers),
        "views": int(cfg.encoder.views),
        "seeds": [int(cfg.seed)],
        "bootstrap": {MIA: int(cfg.mia.bootstrap), AIA: int(cfg.aia.bootstrap)},
        "git_commit": git_commit(),
        "versions": versions(),
        "wall_time_s": {STAGE: round(wall, 2)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def run_external(plan: ExternalPlan) -> dict[str, Any]:
    """Measure the prepared audit and write ``<run>/audit-encoder/results.json``.

    Returns:
        The results: ``{"schema": "external-1", "external": {"mia", "aia", "utility"},
        "meta": ..., "config": ...}``.
    """
    start = time.time()
    h = embeddings(plan.target, plan.pool, plan.lists.index, int(plan.cfg.data.eval_batch_size))
    external = {
        MIA: measure_mia(plan),
        AIA: measure_aia(plan, h),
        "utility": measure_utility(plan, h),
    }
    results = {
        "schema": "external-1",
        "external": external,
        "meta": _meta(plan, time.time() - start),
        "config": to_dict(plan.cfg),
    }
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    tmp = plan.out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(plan.out_dir / "results.json")
    return results
