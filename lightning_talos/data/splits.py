"""Target/shadow x member/non-member splits: four equal, disjoint, seeded quarters of the pool."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_talos.errors import UserError

QUARTERS = ("target_train", "target_test", "shadow_train", "shadow_test")


@dataclass(frozen=True)
class Splits:
    """Pool indices of the four quarters (``int64`` arrays of equal length) and their hash."""

    target_train: np.ndarray
    target_test: np.ndarray
    shadow_train: np.ndarray
    shadow_test: np.ndarray
    seed: int
    pool_len: int

    @property
    def quarter_size(self) -> int:
        return len(self.target_train)

    def members(self, role: str) -> np.ndarray:
        """The quarter a model of ``role`` is trained on."""
        return getattr(self, f"{role}_train")

    def nonmembers(self, role: str) -> np.ndarray:
        """The held-out quarter of ``role``."""
        return getattr(self, f"{role}_test")

    @property
    def hash(self) -> str:
        digest = hashlib.sha256()
        for name in QUARTERS:
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(getattr(self, name), dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in QUARTERS}


def member_split(pool_len: int, *, seed: int, pool_size: int | None = None) -> Splits:
    """Draw the four quarters of PAPER.md.

    A seeded permutation of the pool is capped at ``pool_size`` and cut into four equal parts;
    the remainder is dropped.

    Raises:
        UserError: when the pool is too small for four non-empty quarters.
    """
    perm = np.random.default_rng(seed).permutation(pool_len)
    used = pool_len if pool_size is None else min(pool_len, pool_size)
    quarter = used // 4
    if quarter == 0:
        raise UserError(f"pool of {used} samples is too small to split into four quarters")
    parts = [np.sort(perm[i * quarter : (i + 1) * quarter]) for i in range(4)]
    return Splits(*parts, seed=seed, pool_len=pool_len)


def save_splits(splits: Splits, path: Path) -> None:
    """Write the indices and their hash as JSON (atomically)."""
    payload = {
        "hash": splits.hash,
        "seed": splits.seed,
        "pool_len": splits.pool_len,
        **{name: getattr(splits, name).tolist() for name in QUARTERS},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def load_splits(path: Path) -> Splits:
    """Read splits written by :func:`save_splits`, checking their hash.

    Raises:
        UserError: when the file is malformed or its hash does not match its indices.
    """
    try:
        payload = json.loads(path.read_text())
        splits = Splits(
            *(np.asarray(payload[name], dtype=np.int64) for name in QUARTERS),
            seed=int(payload["seed"]),
            pool_len=int(payload["pool_len"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"cannot read splits file {path}: {err}") from None
    if splits.hash != payload["hash"]:
        raise UserError(f"splits file {path} does not match its recorded hash")
    return splits


def resolve_splits(computed: Splits, path: Path) -> Splits:
    """Reuse the run's saved splits; refuse when the config now gives different ones.

    Raises:
        UserError: when ``path`` holds splits with another hash (the run was split differently).
    """
    if path.is_file():
        saved = load_splits(path)
        if saved.hash != computed.hash:
            raise UserError(
                f"this run was split with hash {saved.hash} but the config now gives "
                f"{computed.hash} (data, seed or pool size changed); use a new run.name"
            )
        return saved
    save_splits(computed, path)
    return computed
