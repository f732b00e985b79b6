"""Member and non-member lists a user gives for a model this framework did not train.

A list is either ``split:<name>`` (the dataset's official partition, see
:attr:`~lightning_talos.data.pool.Pool.official_split`) or a text file with one sample per
line: pool indices (``0 .. N-1``, the order of ``lightning-talos data``: official train, then
test) or file names (datasets read from image files). Blank lines and ``#`` comments are
skipped. Lists are checked (known samples, no repeats, not empty, members and non-members
disjoint) and hashed, so results record exactly which samples they were measured on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from lightning_talos.data.pool import OFFICIAL_SPLITS, Pool
from lightning_talos.errors import UserError

SPLIT_PREFIX = "split:"


def _first(items: list[str] | np.ndarray, n: int = 3) -> str:
    shown = ", ".join(str(i) for i in list(items)[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _official(name: str, pool: Pool, key: str) -> np.ndarray:
    if name not in OFFICIAL_SPLITS:
        raise UserError(f"{key}: unknown split '{name}'; valid: {', '.join(OFFICIAL_SPLITS)}")
    if pool.official_split is None:
        raise UserError(
            f"{key}: {pool.name} has no official split; give a file of sample indices or names"
        )
    index = np.flatnonzero(pool.official_split == OFFICIAL_SPLITS.index(name))
    if len(index) == 0:
        raise UserError(f"{key}: {pool.name}'s official '{name}' split is empty in this pool")
    return index.astype(np.int64)


def _read_lines(path: Path, key: str) -> list[str]:
    if not path.is_file():
        raise UserError(f"{key}: no file {path} (give a file of sample indices or names)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{key}: cannot read {path}: {err}") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [line for line in lines if line]


def _from_indices(lines: list[str], pool: Pool, key: str) -> np.ndarray:
    index = np.array([int(line) for line in lines], dtype=np.int64)
    outside = index[(index < 0) | (index >= len(pool))]
    if len(outside):
        raise UserError(
            f"{key}: {len(outside)} indices outside the {pool.name} pool (0..{len(pool) - 1}): "
            f"{_first(outside)}"
        )
    return index


def _from_names(lines: list[str], pool: Pool, key: str) -> np.ndarray:
    if pool.file_names is None:
        raise UserError(f"{key}: {pool.name} samples have no file names; list pool indices instead")
    position = {name: i for i, name in enumerate(pool.file_names)}
    names = [Path(line).name for line in lines]  # a path to the image names the same sample
    unknown = [name for name in names if name not in position]
    if unknown:
        raise UserError(
            f"{key}: {len(unknown)} names that the {pool.name} pool does not have: "
            f"{_first(unknown)}"
        )
    return np.array([position[name] for name in names], dtype=np.int64)


def resolve_members(spec: str | None, pool: Pool, *, key: str) -> np.ndarray:
    """Pool indices of one user list.

    Args:
        spec: ``split:train|val|test`` or the path of a text file of indices or file names.
        pool: the dataset the list refers to.
        key: the config key that gave ``spec`` (named in errors).

    Returns:
        ``int64 [n]`` distinct pool indices, in the order given.

    Raises:
        UserError: missing spec or file, unknown split or sample, a repeat, or an empty list.
    """
    if not spec:
        raise UserError(f"{key} is required: split:train|split:test or a file of samples")
    if spec.startswith(SPLIT_PREFIX):
        return _official(spec[len(SPLIT_PREFIX) :], pool, key)
    lines = _read_lines(Path(spec).expanduser(), key)
    if not lines:
        raise UserError(f"{key}: {spec} lists no samples")
    numeric = all(line.lstrip("-").isdigit() for line in lines)
    index = (_from_indices if numeric else _from_names)(lines, pool, key)
    values, counts = np.unique(index, return_counts=True)
    if (counts > 1).any():
        raise UserError(f"{key}: {spec} lists samples twice: {_first(values[counts > 1])}")
    return index


def check_disjoint(a: np.ndarray, b: np.ndarray, *, keys: tuple[str, str]) -> None:
    """Refuse two lists that share samples (a sample cannot be a member and a non-member).

    Raises:
        UserError: naming both keys, how many samples they share and the first few.
    """
    shared = np.intersect1d(a, b)
    if len(shared):
        raise UserError(
            f"{keys[0]} and {keys[1]} share {len(shared)} samples (pool indices "
            f"{_first(shared)}); members and non-members must be disjoint"
        )


def members_hash(index: np.ndarray, dataset: str) -> str:
    """Short SHA-256 of a list (its dataset and sorted indices): 16 hex digits."""
    digest = hashlib.sha256(dataset.encode())
    digest.update(np.sort(np.asarray(index, dtype=np.int64)).tobytes())
    return digest.hexdigest()[:16]
