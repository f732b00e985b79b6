"""UTKFace: a folder of ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`` face crops.

Labels come from the file name. A few public files miss a field (``39_1_20170116174525125...``)
and are skipped with one summarising warning, as are undecodable images. File names are sorted,
so the pool order, and hence every seeded split, never depends on the filesystem.

Attributes, any of which can be the task label or the sensitive attribute:

- ``gender``: 2 classes, 0 male, 1 female (UTKFace's coding).
- ``race``: 5 classes, 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.
- ``age``: 5 buckets, ``[0, 20)``, ``[20, 30)``, ``[30, 45)``, ``[45, 60)``, ``60+`` years.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lightning_talos.data.formats.images import decode_files
from lightning_talos.data.pool import Pool
from lightning_talos.errors import UserError

logger = logging.getLogger(__name__)

GENDER_NAMES = ["male", "female"]
RACE_NAMES = ["White", "Black", "Asian", "Indian", "Others"]
#: Lower bounds (years) of the age buckets; the last bucket is open-ended.
AGE_BUCKET_STARTS = [0, 20, 30, 45, 60]
AGE_BUCKET_NAMES = ["0-19", "20-29", "30-44", "45-59", "60+"]
#: Oldest plausible age; larger values are treated as a malformed name.
MAX_AGE = 120

FILE_PATTERN = "AGE_GENDER_RACE_DATETIME.jpg.chip.jpg"
_SUBFOLDERS = ("UTKFace", "utkface")


@dataclass(frozen=True)
class _Attribute:
    """One attribute: its field in the parsed name and its class names."""

    field: int
    names: list[str]


ATTRIBUTES: dict[str, _Attribute] = {
    "age": _Attribute(0, AGE_BUCKET_NAMES),
    "gender": _Attribute(1, GENDER_NAMES),
    "race": _Attribute(2, RACE_NAMES),
}


def parse_utkface_name(name: str) -> tuple[int, int, int] | None:
    """Parse ``AGE_GENDER_RACE_DATETIME.jpg[.chip.jpg]`` into ``(age, gender, race)``.

    Args:
        name: file name (no folder).

    Returns:
        ``(age, gender, race)`` with gender in 0..1 and race in 0..4, or None when the name is
        malformed: not a ``.jpg``, not exactly four fields, a non-integer field, an empty date
        field, or a value out of range.
    """
    if not name.lower().endswith(".jpg"):
        return None
    fields = name.split(".", 1)[0].split("_")
    if len(fields) != 4 or not fields[3]:
        return None
    if not all(field.isascii() and field.isdigit() for field in fields[:3]):
        return None
    age, gender, race = (int(field) for field in fields[:3])
    if age > MAX_AGE or gender >= len(GENDER_NAMES) or race >= len(RACE_NAMES):
        return None
    return age, gender, race


def age_bucket(ages: np.ndarray) -> np.ndarray:
    """Map ages in years to the bucket index 0..4 (see :data:`AGE_BUCKET_STARTS`).

    Args:
        ages: integer ages.

    Returns:
        ``int64`` bucket indexes, same shape.
    """
    return np.searchsorted(AGE_BUCKET_STARTS, ages, side="right").astype(np.int64) - 1


def _check_attribute(name: str, role: str) -> _Attribute:
    if name not in ATTRIBUTES:
        raise UserError(
            f"utkface: unknown {role} {name!r}; valid attribute names: {', '.join(ATTRIBUTES)}"
        )
    return ATTRIBUTES[name]


def _image_folder(root: Path) -> Path:
    """Return ``root`` or its ``UTKFace/`` / ``utkface/`` subfolder, whichever holds the jpgs."""
    if not root.is_dir():
        raise UserError(f"utkface: folder {root} not found; expected <root>/{FILE_PATTERN} files")
    if any(root.glob("*.jpg")):
        return root
    for sub in _SUBFOLDERS:
        if (root / sub).is_dir():
            return root / sub
    return root


def source_folders(root: str | Path) -> list[Path]:
    """The folder :func:`load_utkface` reads the jpgs from, as a one-element list.

    Raises:
        UserError: when ``root`` is not a folder.
    """
    return [_image_folder(Path(root))]


def _values(parsed: np.ndarray, attribute: _Attribute) -> np.ndarray:
    column = parsed[:, attribute.field]
    return age_bucket(column) if attribute.field == ATTRIBUTES["age"].field else column


def load_utkface(
    root: str | Path,
    *,
    image_size: int,
    task_label: str = "gender",
    sensitive_attribute: str | None = "race",
) -> Pool:
    """Load every well-named, decodable UTKFace image, in sorted file-name order.

    Args:
        root: folder holding the jpgs, or holding a ``UTKFace/`` or ``utkface/`` subfolder.
        image_size: side of the stored images (the files are 200x200).
        task_label: attribute used as the task label (``gender``, ``race`` or ``age``).
        sensitive_attribute: attribute to infer, or None for no attribute.

    Returns:
        The pool; ``skipped`` counts ``malformed_name`` and ``unreadable_image``.

    Raises:
        UserError: missing root, no well-named jpg, unknown attribute name, or the same attribute
            as task and sensitive attribute.
    """
    task = _check_attribute(task_label, "task_label")
    sensitive = None
    if sensitive_attribute is not None:
        sensitive = _check_attribute(sensitive_attribute, "sensitive_attribute")
        if sensitive_attribute == task_label:
            raise UserError(
                f"utkface: task_label and sensitive_attribute are both {task_label!r}; "
                "choose two different attributes"
            )

    folder = _image_folder(Path(root))
    names = sorted(path.name for path in folder.iterdir() if path.name.lower().endswith(".jpg"))
    parsed_or_none = [parse_utkface_name(name) for name in names]
    keep = [name for name, parsed in zip(names, parsed_or_none) if parsed is not None]
    n_malformed = len(names) - len(keep)
    if n_malformed:
        logger.warning(
            "utkface: skipped %d of %d files whose names do not match %s",
            n_malformed,
            len(names),
            FILE_PATTERN,
        )
    if not keep:
        raise UserError(f"utkface: no {FILE_PATTERN} files in {folder}")

    parsed = np.array([p for p in parsed_or_none if p is not None], dtype=np.int64)
    images, ok = decode_files([folder / name for name in keep], image_size)
    n_unreadable = int((~ok).sum())
    if n_unreadable:
        logger.warning("utkface: skipped %d unreadable images in %s", n_unreadable, folder)
        images, parsed = images[torch.from_numpy(ok)], parsed[ok]
        keep = [name for name, good in zip(keep, ok) if good]
    if len(parsed) == 0:
        raise UserError(f"utkface: none of the {len(keep)} images in {folder} could be decoded")

    return Pool(
        name="utkface",
        images=images,
        labels=_values(parsed, task),
        attributes=None if sensitive is None else _values(parsed, sensitive),
        num_classes=len(task.names),
        num_attribute_classes=0 if sensitive is None else len(sensitive.names),
        class_names=list(task.names),
        attribute_names=None if sensitive is None else list(sensitive.names),
        skipped={"malformed_name": n_malformed, "unreadable_image": n_unreadable},
        file_names=keep,
    )
