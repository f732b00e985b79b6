"""Reference models of LiRA and RMIA as ordinary stage runs: roles ``ref-<j>``.

Reference ``j`` of a method is the method's training stages (its model stage and everything
upstream, e.g. SimCLR encoder + linear layer) run for the role ``ref-<j>``: the same recipe and
config as the target, in ``<run>/<stage>-ref-<j>/`` with its own config, manifest, checkpoint
and resume, but trained on ``plan.members(j)``, a half of the reference pool
(:mod:`lightning_talos.attacks.references`). The plan is saved in ``<run>/references.json`` with
its hash and never re-drawn; raising ``mia.references`` appends references and leaves the
trained ones done (each records the hash of its own row of the plan among its inputs).

The registry knows these roles through two hooks (``stages/registry.py``): the ``ref`` role
family (:func:`reference_splits`: what a ``ref-<j>`` model trains on) and the ``more_roles`` of
the membership stage (:func:`reference_roles`: which references the requested attacks read).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig

from lightning_talos.attacks.references import ReferencePlan, reference_plan, resolve_plan
from lightning_talos.data.splits import Splits
from lightning_talos.errors import UserError

if TYPE_CHECKING:
    from lightning_talos.runs.context import RunContext

PREFIX = "ref"
PLAN_FILE = "references.json"
#: Attacks that read reference models, and the one that reads them when they exist.
REFERENCE_ATTACKS = ("lira", "rmia")
ENCODER_ATTACK = "encoder"
#: The ``mia.json`` entries of the encoder attack (LiRA on the similarity needs references).
ENCODER_ENTRIES = ("encoder_similarity", "encoder_classifier", "encoder_lira")
#: LiRA fits a pooled variance per IN/OUT group: with the complementary pairs of the plan,
#: two references leave each shadow candidate (offline) or each candidate (online) one
#: reference per group, so no degree of freedom; three give some examples two.
LIRA_MIN_REFERENCES = 3


def reference_role(j: int) -> str:
    """The role of reference ``j``."""
    return f"{PREFIX}-{j}"


def reference_index(role: str) -> int:
    """``j`` of the role ``ref-<j>``.

    Raises:
        ValueError: for another role.
    """
    prefix, _, j = role.rpartition("-")
    if prefix != PREFIX or not j.isdigit():
        raise ValueError(f"not a reference role: {role!r}")
    return int(j)


def wants_references(cfg: DictConfig) -> bool:
    """True when the requested attacks read reference models (LiRA or RMIA)."""
    return any(str(a) in REFERENCE_ATTACKS for a in cfg.attacks)


def reference_count(cfg: DictConfig) -> int:
    """``mia.references``, checked against what the requested attacks need.

    Raises:
        UserError: fewer than one reference, or fewer than LiRA can fit a variance with.
    """
    k = int(cfg.mia.references)
    if k < 1:
        raise UserError(f"mia.references must be >= 1 for attacks lira/rmia, got {k}")
    if "lira" in map(str, cfg.attacks) and k < LIRA_MIN_REFERENCES:
        raise UserError(
            f"LiRA needs mia.references >= {LIRA_MIN_REFERENCES} (got {k}): with fewer, its "
            "IN/OUT Gaussians have no variance to fit"
        )
    return k


def reference_roles(cfg: DictConfig) -> tuple[str, ...]:
    """The reference roles the requested attacks read (none without lira or rmia).

    Raises:
        UserError: see :func:`reference_count`.
    """
    if not wants_references(cfg):
        return ()
    return tuple(reference_role(j) for j in range(reference_count(cfg)))


def plan_seed(cfg: DictConfig) -> int:
    """``mia.reference_seed``, else ``seed``."""
    seed = cfg.mia.reference_seed
    return int(cfg.seed if seed is None else seed)


def run_plan(ctx: RunContext, k: int | None = None) -> ReferencePlan:
    """The run's plan of ``k`` references (default ``mia.references``), saved in
    ``<run>/references.json`` on first use and reused (extended when ``k`` grew) after.

    Raises:
        UserError: when the saved plan disagrees with the config (mode, seed or splits changed)
            or is unreadable.
    """
    cfg = ctx.cfg
    k = int(cfg.mia.references) if k is None else k
    computed = reference_plan(
        ctx.splits, k=k, mode=str(cfg.mia.reference_mode), seed=plan_seed(cfg)
    )
    return resolve_plan(computed, ctx.root / PLAN_FILE)


@dataclass(frozen=True)
class ReferenceSplits:
    """The run's splits plus one reference's data, as a training stage reads them.

    ``members(ref-<j>)`` is the half of the pool the reference trains on, ``nonmembers`` the
    other half (its validation set); target and shadow pass through to the run's splits.
    ``hash`` names the run's splits and the plan's first ``j + 1`` rows (unchanged when the
    plan grows).
    """

    splits: Splits
    role: str
    train: np.ndarray
    test: np.ndarray
    hash: str

    def members(self, role: str) -> np.ndarray:
        return self.train if role == self.role else self.splits.members(role)

    def nonmembers(self, role: str) -> np.ndarray:
        return self.test if role == self.role else self.splits.nonmembers(role)


def reference_splits(ctx: RunContext, role: str) -> ReferenceSplits:
    """What the model of role ``ref-<j>`` trains (and validates) on (the ``ref`` role family).

    Raises:
        UserError: when the saved plan disagrees with the config.
    """
    j = reference_index(role)
    plan = run_plan(ctx, max(int(ctx.cfg.mia.references), j + 1))
    train = plan.members(j)
    test = np.sort(plan.pool[~plan.inclusion[j]])
    digest = hashlib.sha256(f"{ctx.splits.hash}|{plan.prefix(j + 1).hash}".encode())
    return ReferenceSplits(ctx.splits, role, train, test, digest.hexdigest()[:16])


def train_references(ctx: RunContext, method_name: str, only: int | None = None) -> list[str]:
    """Train (or resume, or skip) ``mia.references`` references of a method: its model stage
    and every stage upstream, for each role ``ref-<j>`` (only ``ref-<only>`` when given: one
    task of a launcher's job array). Returns the folders, in order.

    Raises:
        UserError: an unknown method, fewer than one reference, ``only`` out of range, or a
            disagreeing saved plan.
    """
    from lightning_talos.stages.registry import method, train_stage, upstream_closure
    from lightning_talos.stages.training import run_train_stage

    cfg = ctx.cfg
    chosen = method(method_name)
    k = int(cfg.mia.references)
    if k < 1:
        raise UserError(f"mia.references must be >= 1, got {k}")
    if only is not None and not 0 <= only < k:
        raise UserError(f"--only={only} is not a reference of mia.references={k} (0..{k - 1})")
    run_plan(ctx, k)  # saved (or checked) before anything trains
    folders = []
    for j in range(k) if only is None else [only]:
        for name in upstream_closure(cfg, chosen.model_stage):
            run_train_stage(ctx, train_stage(name), reference_role(j))
            folders.append(ctx.stage_dir(name, reference_role(j)).name)
    return folders


SUMMARY = "train mia.references reference models of method=M (LiRA/RMIA), each a stage run"
HELP = """lightning-talos references method=M [--only=J] [mia.references=K] [mia.reference_mode=...]
  Trains K reference models of method M with the target's recipe (its model stage and every
  stage upstream, e.g. SimCLR encoder + linear layer), each on a seeded half of a pool:
  offline = the shadow quarters (the attacker's data), online = also the target's candidates.
  reads: the dataset, <run>/splits.json, <run>/references.json (written on first use)
  writes: <run.dir>/<run.name>/<stage>-ref-<j>/ per stage and reference (config, manifest,
          checkpoint); raising K later trains only the new references.
  --only=J trains reference J alone (one task of `audit launcher=slurm`'s job array).
  `audit attacks=[...,lira,rmia]` trains them itself."""


def cmd_references(cfg: DictConfig, only: int | None = None) -> None:
    """The ``references`` command (``only``: its ``--only=J``)."""
    from lightning_talos.runs.context import RunContext

    ctx = RunContext(cfg)
    folders = train_references(ctx, str(cfg.method), only)
    print(f"[references] {len(folders)} stage runs done under {ctx.root} (plan: {PLAN_FILE})")
