"""Dataset registry: config -> :class:`Pool`, with dataset defaults, downloads and a disk cache."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from lightning_talos.data.listing import listing_digest
from lightning_talos.data.pool import OFFICIAL_SPLITS, Pool
from lightning_talos.errors import UserError
from lightning_talos.safe_load import load_arrays, save_arrays

log = logging.getLogger(__name__)

#: (default task label, default sensitive attribute) per dataset.
DEFAULT_LABELS: dict[str, tuple[str, str | None]] = {
    "synthetic": ("shape", "stripes"),
    "cifar10": ("class", None),
    "cifar100": ("class", None),
    "stl10": ("class", None),
    "utkface": ("gender", "race"),
    "celeba": ("Male", "2*Mouth_Slightly_Open+Smiling"),
}

#: What a user must point ``data.root`` at, per dataset.
LAYOUTS: dict[str, str] = {
    "cifar10": "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
    "cifar100": "<root>/cifar-100-python/{train,test,meta}",
    "stl10": "<root>/stl10_binary/{train,test,unlabeled}_X.bin, {train,test}_y.bin",
    "utkface": "<root>/AGE_GENDER_RACE_DATETIME.jpg.chip.jpg (or <root>/UTKFace/...)",
    "celeba": "<root>/celeba/{img_align_celeba/*.jpg,list_attr_celeba.txt,list_eval_partition.txt}",
}


def resolved_labels(data: DictConfig) -> tuple[str, str | None]:
    """The task label and sensitive attribute a config selects (null = dataset default)."""
    task_default, attr_default = DEFAULT_LABELS[data.name]
    task = data.task_label or task_default
    attribute = data.sensitive_attribute or attr_default
    fixed_task = data.name in ("cifar10", "cifar100", "stl10", "synthetic")
    if fixed_task and data.task_label not in (None, task_default):
        raise UserError(f"{data.name} has one task label, '{task_default}'")
    if attr_default is None and data.sensitive_attribute is not None:
        raise UserError(
            f"{data.name} has no sensitive attribute (MIA only); "
            "use utkface, celeba or synthetic for attribute inference"
        )
    if data.name == "synthetic" and attribute != attr_default:
        raise UserError(f"synthetic has one sensitive attribute, '{attr_default}'")
    return task, attribute


def _root(data: DictConfig) -> Path:
    if not data.root:
        raise UserError(
            f"data.root is required for {data.name}; expected layout: {LAYOUTS[data.name]}"
        )
    root = Path(data.root).expanduser()
    if not root.is_dir():
        raise UserError(
            f"data.root '{root}' is not a directory; expected layout: {LAYOUTS[data.name]}"
        )
    return root


def _synthetic(data: DictConfig, seed: int) -> Pool:
    from lightning_talos.data.formats.synthetic import make_synthetic

    n = 4 * data.synthetic.quarter_size
    return make_synthetic(
        n=n,
        image_size=data.image_size,
        seed=seed,
        label_noise=data.synthetic.label_noise,
        pixel_noise=data.synthetic.pixel_noise,
    )


def _from_files(data: DictConfig, seed: int) -> Pool:
    root = _root(data)
    task, attribute = resolved_labels(data)
    if data.name in ("cifar10", "cifar100"):
        from lightning_talos.data.formats.cifar import load_cifar

        return load_cifar(
            root,
            variant=data.name,
            image_size=data.image_size,
            verify_checksums=data.verify_checksums,
        )
    if data.name == "stl10":
        from lightning_talos.data.formats.stl10 import load_stl10

        return load_stl10(
            root,
            image_size=data.image_size,
            verify_checksums=data.verify_checksums,
            part=data.stl10_part,
        )
    if data.name == "utkface":
        from lightning_talos.data.formats.utkface import load_utkface

        return load_utkface(
            root, image_size=data.image_size, task_label=task, sensitive_attribute=attribute
        )
    from lightning_talos.data.formats.celeba import load_celeba

    return load_celeba(
        root,
        image_size=data.image_size,
        task_label=task,
        sensitive_attribute=attribute,
        subset_size=data.celeba_subset,
        subset_seed=seed,
    )


def _cache_path(data: DictConfig, seed: int) -> Path | None:
    """Decoding JPEGs is slow (CelebA, UTKFace): cache the resized pool, keyed by its inputs.

    The key holds a digest of the source folders' listings (names, sizes, times), so an image
    added, removed or rewritten since the cache was written gives a new key and a rebuild.
    """
    if data.name not in ("utkface", "celeba"):
        return None
    root = _root(data).resolve()
    task, attribute = resolved_labels(data)
    key = [data.name, str(root), _listing(data.name, root), data.image_size, task, attribute, seed]
    key.append("v2")  # v2 caches hold the file names and official split
    if data.name == "celeba":
        key.append(data.celeba_subset)
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    base = Path(data.cache_dir or Path.home() / ".cache" / "lightning_talos").expanduser()
    return base / f"{data.name}-{digest}.npz"


def _listing(name: str, root: Path) -> str:
    if name == "utkface":
        from lightning_talos.data.formats.utkface import source_folders
    else:
        from lightning_talos.data.formats.celeba import source_folders
    return listing_digest(source_folders(root))


def load_pool(data: DictConfig, *, seed: int) -> Pool:
    """Load (or generate) the pooled dataset a config selects.

    Args:
        data: the ``data`` config section.
        seed: seed of the synthetic generator and of the CelebA subset.

    Raises:
        UserError: missing root, wrong layout, unknown attribute, corrupt files.
    """
    if data.name == "synthetic":
        return _synthetic(data, seed)
    resolved_labels(data)
    if data.download:
        download(data)
    cache = _cache_path(data, seed)
    if cache is not None and cache.is_file():
        try:
            return _read_cache(cache)
        except Exception as err:  # a truncated or foreign cache is rebuilt, never trusted
            log.warning("ignoring unreadable cache %s (%s)", cache, err)
    pool = _from_files(data, seed)
    if cache is not None:
        _write_cache(pool, cache)
    return pool


def _write_cache(pool: Pool, path: Path) -> None:
    arrays = {"images": pool.images, "labels": pool.labels}
    if pool.attributes is not None:
        arrays["attributes"] = pool.attributes
    if pool.official_split is not None:
        arrays["official_split"] = pool.official_split
    meta = {
        "name": pool.name,
        "num_classes": pool.num_classes,
        "num_attribute_classes": pool.num_attribute_classes,
        "class_names": pool.class_names,
        "attribute_names": pool.attribute_names,
        "skipped": pool.skipped,
        "file_names": pool.file_names,
    }
    save_arrays(path, arrays, meta)


def _read_cache(path: Path) -> Pool:
    """The pool stored by :func:`_write_cache` (plain arrays and JSON: nothing is unpickled)."""
    arrays, meta = load_arrays(path)
    return Pool(
        images=torch.from_numpy(arrays["images"]),
        labels=arrays["labels"],
        attributes=arrays.get("attributes"),
        official_split=arrays.get("official_split"),
        **meta,
    )


def download(data: DictConfig) -> None:
    """Download a dataset with torchvision (only when ``data.download=true``; rank 0 only).

    Raises:
        UserError: for datasets that cannot be downloaded automatically.
    """
    root = Path(data.root or "data").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    downloaders: dict[str, Callable[[], object]] = {}
    if data.name in ("cifar10", "cifar100"):
        from lightning_talos.data.formats.cifar import download_cifar

        downloaders[data.name] = lambda: download_cifar(root, data.name)
    elif data.name == "stl10":
        from lightning_talos.data.formats.stl10 import download_stl10

        downloaders[data.name] = lambda: download_stl10(root)
    if data.name not in downloaders:
        raise UserError(
            f"{data.name} cannot be downloaded automatically; place it as {LAYOUTS[data.name]}"
        )
    downloaders[data.name]()


def describe(pool: Pool) -> dict[str, object]:
    """Summary numbers of a pool (for ``lightning-talos data`` and manifests)."""
    return {
        "pool_size": len(pool),
        "num_classes": pool.num_classes,
        "num_attribute_classes": pool.num_attribute_classes,
        "image_shape": list(pool.images.shape[1:]),
        "label_counts": np.bincount(
            pool.labels[pool.labels >= 0], minlength=pool.num_classes
        ).tolist(),
        "skipped": dict(pool.skipped),
        # what encoder.members=split:NAME selects (audit-encoder); null without an official split
        "official_split": None
        if pool.official_split is None
        else {
            name: int((pool.official_split == code).sum())
            for code, name in enumerate(OFFICIAL_SPLITS)
        },
    }
