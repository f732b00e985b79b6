"""The data plan of the reference models used by LiRA and RMIA: who trains on what.

A reference model trains on a random half of a *pool* of pool indices:

* ``offline`` (default): the pool is the attacker's own data, the two shadow quarters, so no
  reference ever sees a target candidate;
* ``online``: the pool also holds the target candidates (target-train and target-test), so
  each candidate is IN (trained on) for about half of the references and OUT for the others.

The plan is an inclusion matrix ``bool [K, n]`` over the pool (``True`` = reference ``k`` trains
on pool entry ``i``). It is drawn in complementary pairs: reference ``2j`` takes a seeded random
half of the pool and reference ``2j + 1`` the other half. Hence every pool entry is IN for
exactly ``K / 2`` references (``K`` even; within one of it for odd ``K``), every reference trains
on ``floor(n / 2)`` or ``ceil(n / 2)`` samples, and pair ``j`` depends only on ``(seed, j)``:
raising ``K`` later appends references and never changes the earlier ones, so only the new
ones need training. Like the splits, the plan is saved with a hash and never re-drawn.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_talos.data.splits import Splits
from lightning_talos.errors import UserError

MODES = ("offline", "online")


def inclusion_matrix(n_candidates: int, k: int, seed: int) -> np.ndarray:
    """Seeded inclusion matrix of ``k`` references over ``n_candidates`` pool entries.

    Reference ``2j`` is IN on a random half (``floor(n / 2)`` entries, drawn from
    ``default_rng([seed, j])``) and reference ``2j + 1`` on the complement; an odd last
    reference gets a half of its own. The first ``k`` rows do not depend on ``k``.

    Args:
        n_candidates: Number of pool entries ``n`` (columns), at least 2.
        k: Number of references (rows), at least 1.
        seed: Seed of the plan.

    Returns:
        ``bool [k, n]``: ``True`` where reference ``r`` trains on entry ``i``.

    Raises:
        ValueError: If ``k < 1`` or ``n_candidates < 2``.
    """
    if k < 1 or n_candidates < 2:
        raise ValueError(f"need k >= 1 references and >= 2 candidates, got {k} and {n_candidates}")
    rows = np.zeros((k, n_candidates), dtype=bool)
    for pair in range((k + 1) // 2):
        half = np.random.default_rng([seed, pair]).permutation(n_candidates)[: n_candidates // 2]
        rows[2 * pair, half] = True
        if 2 * pair + 1 < k:
            rows[2 * pair + 1] = ~rows[2 * pair]
    return rows


@dataclass(frozen=True)
class ReferencePlan:
    """Which pool entries each reference model trains on.

    Attributes:
        mode: ``offline`` or ``online``.
        seed: Seed of the inclusion matrix.
        splits_hash: Hash of the splits the pool was taken from.
        pool: ``int64 [n]`` pool indices (dataset indices) of the columns, in this order:
            online ``target_train, target_test, shadow_train, shadow_test``, offline
            ``shadow_train, shadow_test``.
        inclusion: ``bool [K, n]`` from :func:`inclusion_matrix`.
    """

    mode: str
    seed: int
    splits_hash: str
    pool: np.ndarray
    inclusion: np.ndarray

    @property
    def k(self) -> int:
        """Number of references."""
        return int(self.inclusion.shape[0])

    def members(self, reference: int) -> np.ndarray:
        """Sorted pool (dataset) indices reference ``reference`` trains on, ``int64 [~n/2]``."""
        return np.sort(self.pool[self.inclusion[reference]])

    def inclusion_of(self, indices: np.ndarray) -> np.ndarray:
        """Inclusion columns of given dataset indices, ``bool [K, len(indices)]``.

        An index outside the pool (e.g. a target candidate in offline mode) is OUT for every
        reference.
        """
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(self.pool)
        pos = np.searchsorted(self.pool, indices, sorter=order).clip(max=len(self.pool) - 1)
        col = order[pos]
        found = self.pool[col] == indices
        return self.inclusion[:, col] & found[None, :]

    @property
    def hash(self) -> str:
        """Stable hash of mode, seed, splits hash, pool and inclusion bits."""
        digest = hashlib.sha256()
        digest.update(f"{self.mode}|{self.seed}|{self.splits_hash}|{self.k}".encode())
        digest.update(np.ascontiguousarray(self.pool, dtype=np.int64).tobytes())
        digest.update(np.packbits(self.inclusion, axis=1).tobytes())
        return digest.hexdigest()[:16]

    def prefix(self, k: int) -> ReferencePlan:
        """The plan of the first ``k`` references (the same as drawing with ``k``)."""
        return ReferencePlan(self.mode, self.seed, self.splits_hash, self.pool, self.inclusion[:k])


def reference_pool(splits: Splits, mode: str) -> np.ndarray:
    """Pool indices the references draw their halves from, ``int64 [n]``.

    Raises:
        UserError: If ``mode`` is not ``offline`` or ``online``.
    """
    if mode not in MODES:
        raise UserError(f"mia.reference_mode must be one of {MODES}, got {mode!r}")
    quarters = ["shadow_train", "shadow_test"]
    if mode == "online":
        quarters = ["target_train", "target_test", *quarters]
    return np.concatenate([getattr(splits, q) for q in quarters]).astype(np.int64)


def reference_plan(
    splits: Splits, *, k: int, mode: str = "offline", seed: int = 0
) -> ReferencePlan:
    """Draw the plan of ``k`` references over the pool of ``mode`` (see the module docstring).

    Args:
        splits: The run's target/shadow quarters.
        k: Number of references (``mia.references``), at least 1.
        mode: ``offline`` (pool = shadow quarters) or ``online`` (pool = all four quarters).
        seed: Seed of the inclusion matrix.

    Returns:
        The plan.

    Raises:
        UserError: If ``mode`` is unknown, ``k < 1`` or the pool has fewer than 2 entries.
    """
    pool = reference_pool(splits, mode)
    if k < 1:
        raise UserError(f"mia.references must be >= 1, got {k}")
    if len(pool) < 2:
        raise UserError(f"the reference pool has {len(pool)} samples; it needs at least 2")
    return ReferencePlan(mode, seed, splits.hash, pool, inclusion_matrix(len(pool), k, seed))


def population_sample(
    plan: ReferencePlan, candidates: np.ndarray, *, size: int, seed: int
) -> np.ndarray:
    """Seeded sample of RMIA's population points ``z`` among the attacker's data.

    Only points that at least one reference did not train on qualify (offline RMIA needs an OUT
    reference per ``z``; with ``K >= 2`` every pool entry has one, with ``K = 1`` half do).

    Args:
        plan: The reference plan.
        candidates: ``int64 [M0]`` dataset indices the attacker may use, disjoint from the
            attacked model's training set (e.g. both shadow quarters when attacking the target,
            shadow-test when attacking the shadow).
        size: Number of points wanted (``mia.rmia_population``); fewer are returned when fewer
            qualify.
        seed: Seed of the draw.

    Returns:
        Sorted ``int64 [min(size, qualifying)]`` dataset indices.

    Raises:
        UserError: If ``size < 1`` or no candidate qualifies.
    """
    if size < 1:
        raise UserError(f"mia.rmia_population must be >= 1, got {size}")
    candidates = np.asarray(candidates, dtype=np.int64)
    usable = candidates[~plan.inclusion_of(candidates).all(axis=0)]
    if len(usable) == 0:
        raise UserError("no population point is OUT for some reference; add references")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(usable, size=min(size, len(usable)), replace=False))


def save_plan(plan: ReferencePlan, path: Path) -> None:
    """Write the plan and its hash as JSON (atomically); rows as ``'0'/'1'`` strings."""
    payload = {
        "hash": plan.hash,
        "mode": plan.mode,
        "seed": plan.seed,
        "splits_hash": plan.splits_hash,
        "pool": plan.pool.tolist(),
        "inclusion": ["".join("1" if b else "0" for b in row) for row in plan.inclusion],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def load_plan(path: Path) -> ReferencePlan:
    """Read a plan written by :func:`save_plan`, checking its hash.

    Raises:
        UserError: If the file is malformed or its hash does not match its contents.
    """
    try:
        payload = json.loads(path.read_text())
        pool = np.asarray(payload["pool"], dtype=np.int64)
        rows = payload["inclusion"]
        if not rows or any(len(r) != len(pool) or set(r) - {"0", "1"} for r in rows):
            raise ValueError("inclusion rows must be 0/1 strings as long as the pool")
        inclusion = np.array([[c == "1" for c in r] for r in rows], dtype=bool)
        plan = ReferencePlan(
            str(payload["mode"]), int(payload["seed"]), str(payload["splits_hash"]), pool, inclusion
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"cannot read reference plan {path}: {err}") from None
    if plan.hash != payload["hash"]:
        raise UserError(f"reference plan {path} does not match its recorded hash")
    return plan


def resolve_plan(computed: ReferencePlan, path: Path) -> ReferencePlan:
    """Reuse the run's saved plan; extend it when ``K`` grew; refuse any other difference.

    The first references of a plan do not depend on ``K``, so a saved plan and a computed
    one agree on their common prefix unless mode, seed, splits or pool changed. When the
    computed plan is longer, the file is rewritten with it (the saved references keep their
    data); when it is shorter, its prefix of the saved plan is returned and the file is kept.

    Args:
        computed: The plan the current config gives.
        path: Where the run keeps its plan.

    Returns:
        The plan to use (``computed.k`` references).

    Raises:
        UserError: If the saved plan is unreadable, tampered, or disagrees with ``computed``
            on the shared references (the run was planned differently).
    """
    if not path.is_file():
        save_plan(computed, path)
        return computed
    saved = load_plan(path)
    common = min(saved.k, computed.k)
    if saved.prefix(common).hash != computed.prefix(common).hash:
        raise UserError(
            f"this run's reference plan {path} (hash {saved.hash}) differs from the one the "
            "config now gives (mode, seed, splits or pool changed); use a new run.name"
        )
    if computed.k > saved.k:
        save_plan(computed, path)
        return computed
    return saved.prefix(computed.k)
