"""CelebA in torchvision's layout: a seeded random subset of the aligned images with attributes.

The paper pools all 202,599 images (ignoring the official partition) and draws a seeded random
subset (30k by default). Task label and sensitive attribute are attribute expressions: one binary
attribute (``Male``: 2 classes) or a weighted sum such as ``2*Mouth_Slightly_Open + Smiling``
(4 classes: 0 neither, 1 smiling only, 2 mouth open only, 3 both).

A selected image that is missing or cannot be decoded raises :class:`UserError` naming the first
such file: CelebA is an official, complete release, so a gap means a broken download, and
silently dropping rows would change the subset.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_talos.data.formats.images import decode_files
from lightning_talos.data.pool import Pool
from lightning_talos.errors import UserError

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_FOLDER = "img_align_celeba"
LAYOUT = (
    f"<root>/celeba/{{{IMAGE_FOLDER}/*.jpg, {ATTR_FILE}, {PARTITION_FILE}}} (torchvision layout)"
)

# Names may start with a digit (5_o_Clock_Shadow), so the coefficient needs its "*".
_TERM = re.compile(r"^(?:(\d+)\s*\*\s*)?(\w+)$")

#: Computes class indexes ``[N]`` from a ``{0, 1}`` attribute matrix ``[N, n_attributes]``.
ClassFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class CelebaAttributes:
    """The parsed attribute file.

    Attributes:
        filenames: image file names, in file order.
        names: attribute names, in column order.
        values: ``int8`` matrix ``[n_images, n_attributes]`` with values 0 (file: -1) and 1.
    """

    filenames: list[str]
    names: list[str]
    values: np.ndarray


def parse_attribute_terms(expr: str, names: list[str]) -> dict[int, int]:
    """Parse ``Name`` or a sum of ``c*Name`` terms into ``{column: coefficient}``.

    Args:
        expr: e.g. ``Male``, ``2*Mouth_Slightly_Open+Smiling``, ``2*Young + Smiling``; whitespace is
            ignored, coefficients are positive integers, each attribute appears at most once.
        names: attribute names in column order.

    Returns:
        The coefficient of each attribute column used (two expressions that differ only in term
        order or spacing give equal dicts).

    Raises:
        UserError: malformed expression, zero coefficient, repeated or unknown attribute name.
    """
    terms: dict[int, int] = {}
    for term in expr.split("+"):
        match = _TERM.match(term.strip())
        if match is None:
            raise UserError(
                f"celeba: cannot parse term {term.strip()!r} of attribute expression {expr!r}; "
                "expected Name or c*Name terms joined by +, e.g. 2*Mouth_Slightly_Open+Smiling"
            )
        coefficient = int(match.group(1) or 1)
        name = match.group(2)
        if name not in names:
            raise UserError(
                f"celeba: unknown attribute {name!r} in {expr!r}; valid: {' '.join(names)}"
            )
        column = names.index(name)
        if coefficient == 0 or column in terms:
            raise UserError(
                f"celeba: attribute expression {expr!r} has a zero coefficient or a repeated name"
            )
        terms[column] = coefficient
    return terms


def parse_attribute_expr(expr: str, names: list[str]) -> tuple[ClassFn, int]:
    """Parse ``Name`` or a sum of ``c*Name`` terms into a class function.

    Args:
        expr: see :func:`parse_attribute_terms`.
        names: attribute names in column order.

    Returns:
        ``(fn, num_classes)``: ``fn`` maps a ``{0, 1}`` matrix ``[N, len(names)]`` to ``int64``
        classes ``sum(c * column)``; ``num_classes`` is the largest possible value plus one.

    Raises:
        UserError: malformed expression, zero coefficient, repeated or unknown attribute name.
    """
    terms = parse_attribute_terms(expr, names)
    columns = list(terms)
    weights = np.asarray(list(terms.values()), dtype=np.int64)

    def classes(values: np.ndarray) -> np.ndarray:
        return values[:, columns].astype(np.int64) @ weights

    return classes, int(weights.sum()) + 1


def _celeba_folder(root: Path) -> Path:
    """Accept ``root`` holding ``celeba/`` or ``root`` being the ``celeba`` folder itself."""
    for folder in (root / "celeba", root):
        if (folder / ATTR_FILE).is_file():
            return folder
    raise UserError(f"celeba: {ATTR_FILE} not found under {root}; expected {LAYOUT}")


def source_folders(root: str | Path) -> list[Path]:
    """The folders :func:`load_celeba` reads files from (the list files', then the images').

    Raises:
        UserError: when no ``list_attr_celeba.txt`` is found under ``root``.
    """
    folder = _celeba_folder(Path(root))
    return [folder, folder / IMAGE_FOLDER]


def read_attributes(path: str | Path) -> CelebaAttributes:
    """Read ``list_attr_celeba.txt``: a count line, a names line, then ``file v1 .. vK`` rows.

    Splitting the whole file once and converting the value tokens as fixed-width bytes parses the
    202,599 official rows in about a second (``np.loadtxt`` takes far longer).

    Args:
        path: the attribute file.

    Returns:
        The parsed file, values mapped -1 to 0 and 1 to 1.

    Raises:
        UserError: unreadable file, bad header, rows of the wrong length, values other than -1/1,
            or a row count differing from the header.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"celeba: cannot read {path} ({err})") from err
    lines = data.split(b"\n", 2)
    if len(lines) < 3 or not lines[0].strip().isdigit():
        raise UserError(f"celeba: {path} must start with a count line and an attribute-name line")
    count = int(lines[0])
    names = [name.decode("ascii", "replace") for name in lines[1].split()]
    width = len(names) + 1
    tokens = lines[2].split()
    if not names or len(tokens) != count * width:
        raise UserError(
            f"celeba: {path} has {len(tokens)} tokens after the header, expected {count} rows "
            f"of a file name and {len(names)} values"
        )
    table = np.array(tokens, dtype="S3").reshape(count, width)
    raw = table[:, 1:]
    is_one = raw == b"1"
    if not (is_one | (raw == b"-1")).all():
        raise UserError(f"celeba: {path} holds values other than -1 and 1")
    filenames = [name.decode("utf-8") for name in tokens[::width]]
    return CelebaAttributes(filenames, names, is_one.astype(np.int8))


def read_partition(path: Path, n_rows: int) -> np.ndarray:
    """Read the official partition: one ``<file> <0|1|2>`` line per image (train, val, test).

    Returns:
        ``int64 [n_rows]`` partition codes in attribute-file order (indices into
        :data:`~lightning_talos.data.pool.OFFICIAL_SPLITS`).

    Raises:
        UserError: when the file is missing, has another number of rows, or a malformed line.
    """
    if not path.is_file():
        raise UserError(f"celeba: missing file {path}; expected {LAYOUT}")
    lines = [line.split() for line in path.read_bytes().splitlines() if line.strip()]
    if len(lines) != n_rows:
        raise UserError(f"celeba: {path} has {len(lines)} rows but the attribute file has {n_rows}")
    try:
        codes = np.array([int(parts[-1]) for parts in lines], dtype=np.int64)
    except ValueError:
        codes = np.array([-1])
    if codes.min() < 0 or codes.max() > 2 or any(len(parts) != 2 for parts in lines):
        raise UserError(f"celeba: {path} has a line that is not '<file> <0|1|2>'")
    return codes


def subset_rows(n_rows: int, subset_size: int, seed: int) -> np.ndarray:
    """Draw the seeded subset: ``subset_size`` distinct rows, sorted (all rows if fewer).

    Args:
        n_rows: rows available.
        subset_size: rows wanted.
        seed: seed of ``np.random.default_rng``.

    Returns:
        Sorted ``int64`` row indexes.
    """
    if subset_size >= n_rows:
        return np.arange(n_rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=subset_size, replace=False)).astype(np.int64)


def load_celeba(
    root: str | Path,
    *,
    image_size: int,
    task_label: str = "Male",
    sensitive_attribute: str | None = "2*Mouth_Slightly_Open+Smiling",
    subset_size: int = 30000,
    subset_seed: int = 0,
) -> Pool:
    """Load a seeded random subset of CelebA, decoding only the chosen images.

    Args:
        root: folder holding ``celeba/``, or the ``celeba`` folder itself.
        image_size: side of the stored images (centre-cropped to a square, then resized).
        task_label: attribute expression for the task label.
        sensitive_attribute: attribute expression for the sensitive attribute, or None.
        subset_size: images drawn from the whole dataset (all if fewer exist).
        subset_seed: seed of the draw.

    Returns:
        The pool, rows in attribute-file order.

    Raises:
        UserError: missing root or file, malformed attribute or partition file, bad expression,
            the same expression for task and attribute, non-positive ``subset_size``, or a selected
            image missing or undecodable.
    """
    if subset_size <= 0:
        raise UserError(f"celeba: subset_size must be positive, got {subset_size}")
    folder = _celeba_folder(Path(root))
    table = read_attributes(folder / ATTR_FILE)
    partition = read_partition(folder / PARTITION_FILE, len(table.filenames))
    task_fn, num_classes = parse_attribute_expr(task_label, table.names)
    attribute_fn, num_attribute_classes = None, 0
    if sensitive_attribute is not None:
        same = parse_attribute_terms(sensitive_attribute, table.names) == parse_attribute_terms(
            task_label, table.names
        )
        if same:
            raise UserError(
                f"celeba: task_label and sensitive_attribute are both {task_label!r}; "
                "choose two different attributes"
            )
        attribute_fn, num_attribute_classes = parse_attribute_expr(sensitive_attribute, table.names)

    rows = subset_rows(len(table.filenames), subset_size, subset_seed)
    image_dir = folder / IMAGE_FOLDER
    paths = [image_dir / table.filenames[row] for row in rows]
    missing = next((path for path in paths if not path.is_file()), None)
    if missing is not None:
        raise UserError(f"celeba: missing image {missing}; expected {LAYOUT}")
    images, ok = decode_files(paths, image_size)
    if not ok.all():
        raise UserError(f"celeba: cannot decode image {paths[int(np.argmin(ok))]}")

    values = table.values[rows]
    return Pool(
        name="celeba",
        images=images,
        labels=task_fn(values),
        attributes=None if attribute_fn is None else attribute_fn(values),
        num_classes=num_classes,
        num_attribute_classes=num_attribute_classes,
        official_split=partition[rows],
        file_names=[table.filenames[row] for row in rows],
    )
