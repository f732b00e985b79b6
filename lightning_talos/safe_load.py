"""Loading files a user can point at without executing anything they contain.

A pickle can name any importable callable and have it called while loading, so a crafted
checkpoint, cache or dataset file would run code. Three loaders close that door:

- :func:`load_checkpoint`: ``torch.load(weights_only=True)``, torch's own allow-list of tensors,
  containers and primitives (our Lightning checkpoints hold nothing else).
- :func:`restricted_unpickle`: the CIFAR batch files, admitting only the NumPy array types and the
  ``bytes`` helper those files name.
- :func:`save_arrays` / :func:`load_arrays`: caches as NumPy ``.npz`` archives of plain arrays plus
  a JSON header, read with ``allow_pickle=False``.

Every failure becomes one line: torch's own weights-only message spans a dozen lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from lightning_talos.errors import UserError

#: ``(module, name)`` pairs the CIFAR pickles need: NumPy arrays as numpy 1 and numpy 2 name them,
#: NumPy scalars and dtypes, and the helper Python 3 uses to pickle ``bytes`` at protocol 2.
CIFAR_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [(core, "_reconstruct") for core in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [(core, "scalar") for core in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [(core, "_frombuffer") for core in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
)

#: Key of the JSON header inside an archive written by :func:`save_arrays`.
_META = "__meta__"


class _AllowListUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` refuses every global outside an allow-list."""

    def __init__(self, file: BinaryIO, *, allowed: frozenset[tuple[str, str]], **kwargs: Any):
        super().__init__(file, **kwargs)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def restricted_unpickle(
    file: BinaryIO,
    *,
    allowed: frozenset[tuple[str, str]] = CIFAR_GLOBALS,
    encoding: str = "ASCII",
) -> Any:
    """Unpickle ``file`` admitting only builtin containers/scalars and the ``allowed`` globals.

    Args:
        file: an open binary file.
        allowed: ``(module, name)`` pairs that may be imported (names as written in the pickle,
            before Python 2 names are mapped).
        encoding: how Python 2 ``str`` objects are decoded (``latin1`` for the CIFAR files).

    Returns:
        The unpickled object.

    Raises:
        pickle.UnpicklingError: the pickle names a global outside ``allowed``, or is malformed
            (other errors of a malformed pickle: ``EOFError``, ``ValueError``, ...).
    """
    return _AllowListUnpickler(file, allowed=allowed, encoding=encoding).load()


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    if "Weights only load failed" in text:
        # torch explains weights_only over a dozen lines; keep what it refused.
        refused = re.search(r"Unsupported (global: GLOBAL \S+|operand \S+)", text)
        what = refused.group(1) if refused else "a non-tensor object"
        return f"it holds more than tensors and plain values ({what}); nothing in it was run"
    return " ".join(text.split()) or type(err).__name__


def load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` onto the CPU.

    Args:
        path: a file written by ``torch.save`` (a Lightning ``.ckpt``).
        mmap: memory-map the tensors instead of reading them (cheap when only metadata is needed).

    Returns:
        The checkpoint's top-level dict.

    Raises:
        UserError: one line naming the file when it is missing, truncated, not a dict, or names
            anything outside torch's weights-only allow-list (nothing in it is executed).
    """
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # truncated, foreign or hostile: say which file, do not trace back
        raise checkpoint_error(path, err) from None
    if not isinstance(state, dict):
        raise UserError(f"cannot read checkpoint {path}: not a checkpoint dict")
    return state


def checkpoint_error(path: Path, err: BaseException) -> UserError:
    """The one-line :class:`UserError` for a checkpoint that failed to load with ``err``."""
    return UserError(f"cannot read checkpoint {path}: {_one_line(err)}")


def file_digest(path: Path, *, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes (read in chunks).

    Raises:
        OSError: when the file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def save_arrays(path: Path, arrays: dict[str, np.ndarray | torch.Tensor], meta: Any) -> None:
    """Write arrays and a JSON-serialisable header to an ``.npz`` archive, atomically.

    Args:
        path: destination (its folder is created); a temporary sibling is renamed over it, so a
            kill never leaves a half-written archive under ``path``.
        arrays: plain numeric arrays (tensors are moved to the CPU and converted); names must not
            be ``__meta__``.
        meta: anything ``json.dumps`` accepts (keys, names, sizes).

    Raises:
        ValueError: for an array named ``__meta__`` or an ``object`` array.
    """
    plain = {name: _plain(name, value) for name, value in arrays.items()}
    if _META in plain:
        raise ValueError(f"{_META} is reserved for the header")
    plain[_META] = np.asarray(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        np.savez(f, **plain)
    os.replace(tmp, path)


def _plain(name: str, value: np.ndarray | torch.Tensor) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype == object:
        raise ValueError(f"array {name!r} has dtype object; only numeric arrays are stored")
    return array


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], Any]:
    """Read an archive written by :func:`save_arrays` (never unpickles anything).

    Returns:
        ``(arrays, meta)``.

    Raises:
        ValueError: the file is unreadable, not such an archive, truncated, or holds an object
            array (``np.load(allow_pickle=False)`` refuses those).
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as err:  # BadZipFile, EOFError, an object array refused: not our archive
        raise ValueError(f"{path} is not a readable array archive ({err})") from err
    if _META not in arrays:
        raise ValueError(f"{path} has no {_META} header")
    meta = json.loads(str(arrays.pop(_META)))
    return arrays, meta
