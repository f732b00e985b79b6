"""LiRA, RMIA and the encoder attacks inside the membership stage, on one method's models.

``compute_mia`` hands the names ``lira``, ``rmia`` and ``encoder`` of ``attacks=[...]`` to
:func:`strong_attacks`, which returns their ``mia.json`` entries:

* ``lira`` and ``rmia`` (every method): the target's and the references' logits on a fixed set
  of augmented queries (``mia.lira_flip``, ``mia.lira_shifts``) of every candidate, calibrated
  on the shadow model as the other attacks are;
* ``encoder_similarity`` and ``encoder_classifier`` (methods whose classifier sits on a
  contrastively trained encoder): EncoderMI's attacks on the encoder's embeddings ``h`` of
  ``mia.encoder_views`` augmented views, calibrated on the shadow encoder; with references
  also ``encoder_lira``, LiRA on the views' mean similarity.

Candidates are the two target quarters (attacked) and the two shadow quarters (calibration).
Every model's query logits and view similarities are cached in ``<run>/features/``, keyed by
its completion id and the query settings, so raising ``mia.references`` only queries the new
references. The target, shadow and every reference see identical augmented views (one seed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from lightning_talos.attacks.encoder import (
    encoder_attack,
    encoder_lira_attack,
    similarity_score,
    view_similarities,
)
from lightning_talos.attacks.lira import Signals, lira_attack, logit_confidence, query_logits
from lightning_talos.attacks.references import ReferencePlan, population_sample
from lightning_talos.attacks.rmia import rmia_attack, true_class_probability, tune_offline_a
from lightning_talos.data.batched_aug import BatchedSimCLRAugment
from lightning_talos.data.datamodule import as_float, aug_kwargs
from lightning_talos.errors import UserError
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.features import ModelSource, device
from lightning_talos.stages.references import (
    ENCODER_ATTACK,
    ENCODER_ENTRIES,
    LIRA_MIN_REFERENCES,
    REFERENCE_ATTACKS,
    reference_roles,
    run_plan,
)
from lightning_talos.stages.registry import train_stage, upstream_closure

#: The names ``compute_mia`` leaves to this module.
STRONG_ATTACKS = (*REFERENCE_ATTACKS, ENCODER_ATTACK)
#: Images per forward chunk when querying a model.
_CHUNK = 2048


@dataclass(frozen=True)
class Candidates:
    """The examples attacked: ``index`` ``int64 [N]`` = target candidates (first ``n_target``:
    target-train then target-test) then shadow candidates (shadow-train, shadow-test);
    ``member`` ``bool [N]`` = a member of its own model."""

    index: np.ndarray
    member: np.ndarray
    n_target: int

    @property
    def target(self) -> slice:
        return slice(0, self.n_target)

    @property
    def shadow(self) -> slice:
        return slice(self.n_target, len(self.index))


def candidates(ctx: RunContext, samples: int | None = None) -> Candidates:
    """Every quarter's samples, or a seeded subset of ``samples`` per quarter."""
    splits, rng_seed = ctx.splits, ctx.cfg.seed
    parts, member = [], []
    for q, (role, is_member) in enumerate(
        [("target", True), ("target", False), ("shadow", True), ("shadow", False)]
    ):
        indices = splits.members(role) if is_member else splits.nonmembers(role)
        if samples is not None and samples < len(indices):
            rng = np.random.default_rng([rng_seed, q])
            indices = np.sort(rng.choice(indices, size=samples, replace=False))
        parts.append(np.asarray(indices, dtype=np.int64))
        member.append(np.full(len(indices), is_member))
    n_target = len(parts[0]) + len(parts[1])
    return Candidates(np.concatenate(parts), np.concatenate(member), n_target)


def has_contrastive_encoder(cfg: DictConfig, model_stage: str) -> bool:
    """True when a stage upstream of the classifier trains on contrastive (two-view) data."""
    upstream = upstream_closure(cfg, model_stage)[:-1]
    return any(train_stage(name).data(cfg).get("use") == "two_views" for name in upstream)


def strong_attacks(ctx: RunContext, source: ModelSource) -> dict[str, Any]:
    """The ``mia.json`` entries of the requested ``lira``, ``rmia`` and ``encoder`` attacks.

    Raises:
        UserError: too few references for an attack, or a saved plan that disagrees.
    """
    cfg = ctx.cfg
    names = [str(a) for a in cfg.attacks]
    roles = reference_roles(cfg)
    plan = run_plan(ctx) if roles else None
    out: dict[str, Any] = {}
    if plan is not None and any(n in REFERENCE_ATTACKS for n in names):
        cands = candidates(ctx)
        logits = {r: query_cache(source, r, cands.index) for r in ("target", "shadow", *roles)}
        labels = ctx.pool.labels[cands.index]
        if "lira" in names:
            out["lira"] = lira_entry(cfg, plan, cands, logits, labels, roles)
        if "rmia" in names:
            out["rmia"] = rmia_entry(ctx, plan, cands, logits, labels, roles)
    if ENCODER_ATTACK in names and has_contrastive_encoder(cfg, source.stage):
        out.update(encoder_entries(ctx, source, plan, roles))
    return out


# ------------------------------------------------------------------------------- LiRA, RMIA
def lira_entry(
    cfg: DictConfig,
    plan: ReferencePlan,
    cands: Candidates,
    logits: dict[str, torch.Tensor],
    labels: np.ndarray,
    roles: tuple[str, ...],
) -> dict[str, Any]:
    """LiRA on the target's candidates, its threshold calibrated on the shadow's."""
    phi = {r: logit_confidence(v, labels) for r, v in logits.items()}
    refs = np.stack([phi[r] for r in roles])
    incl = plan.inclusion_of(cands.index)
    target, shadow = (
        Signals(phi[role][part], refs[:, part], incl[:, part], cands.member[part])
        for role, part in (("target", cands.target), ("shadow", cands.shadow))
    )
    try:
        return lira_attack(
            target, shadow=shadow, online=str(cfg.mia.reference_mode) == "online",
            global_variance_below=cfg.mia.lira_global_variance_below,
            n_bootstrap=cfg.mia.bootstrap, seed=cfg.seed,
        )  # fmt: skip
    except ValueError as err:
        raise UserError(f"LiRA with {len(roles)} references: {err}") from None


def rmia_entry(
    ctx: RunContext,
    plan: ReferencePlan,
    cands: Candidates,
    logits: dict[str, torch.Tensor],
    labels: np.ndarray,
    roles: tuple[str, ...],
) -> dict[str, Any]:
    """RMIA on the target's candidates against population points from the attacker's data.

    The target's population comes from the shadow quarters, the shadow's from shadow-test
    (non-members of the shadow). Offline, the shadow calibrates the threshold only when every
    shadow candidate has a reference that did not train on it (from two references on).
    """
    cfg, splits = ctx.cfg, ctx.splits
    mia = cfg.mia
    prob = {
        r: true_class_probability(v, labels, temperature=mia.rmia_temperature)
        for r, v in logits.items()
    }
    refs = np.stack([prob[r] for r in roles])
    incl = plan.inclusion_of(cands.index)
    position = {int(i): p for p, i in enumerate(cands.index)}

    def signals(role: str, part: Any, with_truth: bool = True) -> Signals:
        member = cands.member[part] if with_truth else None
        return Signals(prob[role][part], refs[:, part], incl[:, part], member)

    def population(role: str, pool: np.ndarray) -> Signals:
        z = population_sample(plan, pool, size=mia.rmia_population, seed=cfg.seed)
        return signals(role, np.array([position[int(i)] for i in z]), with_truth=False)

    online = str(mia.reference_mode) == "online"
    attacker = np.concatenate([splits.shadow_train, splits.shadow_test])
    shadow_ok = online or bool((~incl[:, cands.shadow]).any(axis=0).all())
    target_population = population("target", attacker)
    a, tuning = _offline_a(cfg, signals("shadow", cands.shadow), target_population, online)
    out = rmia_attack(
        signals("target", cands.target), target_population,
        shadow=signals("shadow", cands.shadow) if shadow_ok else None,
        shadow_population=population("shadow", splits.shadow_test) if shadow_ok else None,
        online=online, a=a, gamma=mia.rmia_gamma,
        n_bootstrap=mia.bootstrap, seed=cfg.seed,
    )  # fmt: skip
    if online:
        out["a"] = None  # the online marginal averages IN and OUT references: no a
    if tuning is not None:
        out["a_tuning"] = tuning
    return out


def _offline_a(
    cfg: DictConfig, candidates: Signals, population: Signals, online: bool
) -> tuple[float, dict[str, Any] | None]:
    """``mia.rmia_a``, or with ``auto`` the ``a`` tuned on the references alone (their
    signals on the attacker's candidates and population; see
    :func:`~lightning_talos.attacks.rmia.tune_offline_a`) and the tuning record.

    Raises:
        UserError: when ``auto`` cannot be tuned with these references.
    """
    a = cfg.mia.rmia_a
    if a != "auto":
        return float(a), None
    if online:
        return 1.0, None  # unused online
    try:
        tuning = tune_offline_a(candidates, population, gamma=cfg.mia.rmia_gamma)
    except ValueError as err:
        raise UserError(f"mia.rmia_a=auto: {err}; set mia.rmia_a to a number in [0, 1]") from None
    return tuning["a"], tuning


def query_cache(source: ModelSource, role: str, index: np.ndarray) -> torch.Tensor:
    """Logits ``[N, Q, C]`` of the ``role`` model on the queries of ``index`` (cached)."""
    ctx, mia = source.ctx, source.ctx.cfg.mia
    settings = {"flip": bool(mia.lira_flip), "shifts": [int(s) for s in mia.lira_shifts]}
    key = _key(source, role, index, settings)
    path = ctx.root / "features" / f"queries-{source.stage}-{role}.pt"
    cached = _read(path)
    if cached is not None and cached["key"] == key:
        return cached["value"]
    model = source.classifier(role)

    def predict(x: torch.Tensor) -> torch.Tensor:
        return model.head(model.embed(x))

    parts = []
    for start in range(0, len(index), _CHUNK):
        chunk = torch.as_tensor(index[start : start + _CHUNK])
        images = as_float(ctx.pool.images[chunk]).to(device())
        parts.append(
            query_logits(predict, images, batch_size=ctx.cfg.data.eval_batch_size, **settings)
        )
    value = torch.cat(parts)
    _write(path, key, value)
    return value


# ------------------------------------------------------------------------------- encoder
def encoder_entries(
    ctx: RunContext, source: ModelSource, plan: ReferencePlan | None, roles: tuple[str, ...]
) -> dict[str, Any]:
    """``encoder_similarity``, ``encoder_classifier`` and, with at least as many references as
    LiRA needs, ``encoder_lira``."""
    cfg, mia = ctx.cfg, ctx.cfg.mia
    cands = candidates(ctx, mia.encoder_samples)
    feats = {r: views_cache(source, r, cands.index) for r in ("target", "shadow", *roles)}
    t, s = cands.target, cands.shadow
    found = encoder_attack(
        feats["shadow"][s], cands.member[s], feats["target"][t], cands.member[t],
        hidden=tuple(mia.encoder_hidden), epochs=mia.encoder_epochs, lr=mia.encoder_lr,
        seed=cfg.seed, n_bootstrap=mia.bootstrap,
    )  # fmt: skip
    similarity, classifier, lira = ENCODER_ENTRIES
    out = {similarity: found["similarity"], classifier: found["classifier"]}
    if plan is not None and len(roles) >= LIRA_MIN_REFERENCES:  # (rmia runs from one)
        score = {r: similarity_score(f) for r, f in feats.items()}
        refs = np.stack([score[r] for r in roles])
        incl = plan.inclusion_of(cands.index)
        target, shadow = (
            Signals(score[role][part], refs[:, part], incl[:, part], cands.member[part])
            for role, part in (("target", t), ("shadow", s))
        )
        try:
            out[lira] = encoder_lira_attack(
                target, shadow=shadow, online=str(mia.reference_mode) == "online",
                global_variance_below=mia.lira_global_variance_below,
                n_bootstrap=mia.bootstrap, seed=cfg.seed,
            )  # fmt: skip
        except ValueError as err:
            raise UserError(f"encoder LiRA with {len(roles)} references: {err}") from None
    return out


def views_cache(source: ModelSource, role: str, index: np.ndarray) -> np.ndarray:
    """Sorted view similarities ``[N, V(V-1)/2]`` of the ``role`` encoder on ``index``
    (cached). Views are drawn on the CPU from ``seed``: every model sees the same ones."""
    ctx, cfg = source.ctx, source.ctx.cfg
    aug = aug_kwargs(cfg.data.aug, cfg.data.image_size)
    settings = {"views": int(cfg.mia.encoder_views), "seed": int(cfg.seed), "aug": repr(aug)}
    key = _key(source, role, index, settings)
    path = ctx.root / "features" / f"views-{source.stage}-{role}.pt"
    cached = _read(path)
    if cached is not None and cached["key"] == key:
        return cached["value"].numpy()
    model = source.classifier(role)
    augment = BatchedSimCLRAugment(**aug)

    def embed(x: torch.Tensor) -> torch.Tensor:
        return model.embed(x.to(device()))

    value = view_similarities(
        embed, augment, ctx.pool.images[torch.as_tensor(index)],
        n_views=settings["views"], batch_size=cfg.data.eval_batch_size, seed=settings["seed"],
    )  # fmt: skip
    _write(path, key, torch.from_numpy(np.ascontiguousarray(value)))  # tensors: weights_only
    return value


# ------------------------------------------------------------------------------- cache
def _key(source: ModelSource, role: str, index: np.ndarray, settings: dict) -> dict[str, Any]:
    return {
        "completion_id": source.manifest(role)["completion_id"],
        "split_hash": source.ctx.splits.hash,
        "precision": source.precision(role),
        "index": index.tolist(),
        **settings,
    }


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        # weights_only: the cache holds tensors and plain values; a crafted file cannot run code
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign cache is recomputed, never trusted
        return None


def _write(path: Path, key: dict[str, Any], value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"key": key, "value": value}, tmp)
    os.replace(tmp, path)
