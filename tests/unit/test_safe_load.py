"""Files a user points at never execute code: each loader is fed a payload pickle.

The payload's ``__reduce__`` asks the unpickler to call ``exec`` on code that writes a marker
file, so "the marker does not exist" proves nothing in the file ran.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from lightning_talos.data import registry
from lightning_talos.data.formats.cifar import load_cifar
from lightning_talos.data.listing import listing_digest
from lightning_talos.errors import UserError
from lightning_talos.safe_load import (
    load_arrays,
    load_checkpoint,
    restricted_unpickle,
    save_arrays,
)
from tests.fixtures.layouts import write_celeba, write_cifar, write_utkface


class Payload:
    """Unpickling this object runs ``open(marker, "w")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def write_payload_pickle(path: Path, marker: Path, **fields: object) -> None:
    with path.open("wb") as f:
        pickle.dump({**fields, "data": Payload(marker)}, f)


def test_payload_pickle_really_runs_under_plain_pickle(tmp_path: Path) -> None:
    # Guards the other tests: a payload that cannot run would make them pass vacuously.
    marker = tmp_path / "marker"
    write_payload_pickle(tmp_path / "p.pkl", marker)
    with (tmp_path / "p.pkl").open("rb") as f:
        pickle.load(f)
    assert marker.read_text() == "ran"


# ---------------------------------------------------------------- CIFAR batches


def test_restricted_unpickle_reads_numpy_arrays_of_any_protocol() -> None:
    entry = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3], "b": b"x"}
    for protocol in (2, 4, 5):
        out = restricted_unpickle(io.BytesIO(pickle.dumps(entry, protocol=protocol)))
        assert np.array_equal(out["data"], entry["data"]) and out["data"].dtype == np.uint8
        assert out["labels"] == [1, 2, 3] and out["b"] == b"x"


def test_restricted_unpickle_refuses_other_globals(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with pytest.raises(pickle.UnpicklingError, match="builtins.exec"):
        restricted_unpickle(io.BytesIO(pickle.dumps(Payload(marker))))
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        restricted_unpickle(io.BytesIO(b"cos\nsystem\n(S'true'\ntR."))  # protocol 0 GLOBAL
    assert not marker.exists()


def test_cifar_payload_batch_does_not_run_without_checksums(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    marker = tmp_path / "marker"
    write_payload_pickle(batch, marker, labels=[0])
    with pytest.raises(UserError, match="data_batch_1") as err:
        load_cifar(tmp_path, variant="cifar10", image_size=32, verify_checksums=False)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_cifar_loads_through_the_restricted_unpickler(tmp_path: Path) -> None:
    files = write_cifar(tmp_path, "cifar100")
    pool = load_cifar(tmp_path, variant="cifar100", image_size=32, verify_checksums=False)
    assert np.array_equal(pool.images.numpy(), files.images)
    assert np.array_equal(pool.labels, files.labels)


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("writer", ["torch_save", "plain_pickle"])
def test_load_checkpoint_refuses_payload_in_one_line(tmp_path: Path, writer: str) -> None:
    path, marker = tmp_path / "evil.ckpt", tmp_path / "marker"
    if writer == "torch_save":
        torch.save({"state_dict": Payload(marker)}, path)
    else:
        write_payload_pickle(path, marker)
    for mmap in (False, True):
        with pytest.raises(UserError, match="cannot read checkpoint .*evil.ckpt") as err:
            load_checkpoint(path, mmap=mmap)
        assert "\n" not in str(err.value) and len(str(err.value)) < 300
    assert not marker.exists()


def test_load_checkpoint_reads_tensors_and_plain_values(tmp_path: Path) -> None:
    state = {"state_dict": {"w": torch.arange(3.0)}, "hyper_parameters": {"crop": (0.2, 1.0)}}
    torch.save(state, tmp_path / "ok.ckpt")
    loaded = load_checkpoint(tmp_path / "ok.ckpt")
    assert torch.equal(loaded["state_dict"]["w"], state["state_dict"]["w"])
    assert loaded["hyper_parameters"] == {"crop": (0.2, 1.0)}
    with pytest.raises(UserError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.ckpt")


# ---------------------------------------------------------------- array archives


def test_arrays_round_trip_and_payload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.npz"
    arrays = {"a/x": torch.arange(6).reshape(2, 3), "b": np.ones(2, np.float32)}
    save_arrays(path, arrays, {"key": "v", "n": [1, None]})
    loaded, meta = load_arrays(path)
    assert meta == {"key": "v", "n": [1, None]}
    assert np.array_equal(loaded["a/x"], arrays["a/x"].numpy()) and loaded["b"].dtype == np.float32
    assert not list(tmp_path.glob("*.tmp"))

    marker = tmp_path / "marker"
    write_payload_pickle(path, marker)
    with pytest.raises(ValueError, match="not a readable array archive"):
        load_arrays(path)
    np.savez(path, obj=np.array([Payload(marker)], dtype=object))  # an object array inside
    with pytest.raises(ValueError):
        load_arrays(path)
    assert not marker.exists()


# ---------------------------------------------------------------- pool cache


def _utk_cfg(root: Path, cache: Path):
    return OmegaConf.create(
        {
            "name": "utkface",
            "root": str(root),
            "image_size": 16,
            "task_label": None,
            "sensitive_attribute": None,
            "download": False,
            "cache_dir": str(cache),
            "celeba_subset": None,
        }
    )


def test_pool_cache_payload_is_rebuilt_not_run(tmp_path: Path) -> None:
    files = write_utkface(tmp_path / "utk")
    data = _utk_cfg(files.root, tmp_path / "cache")
    first = registry.load_pool(data, seed=0)
    cache = registry._cache_path(data, 0)
    assert cache is not None and cache.is_file()
    marker = tmp_path / "marker"
    write_payload_pickle(cache, marker)
    again = registry.load_pool(data, seed=0)
    assert not marker.exists()
    assert torch.equal(again.images, first.images) and np.array_equal(again.labels, first.labels)
    assert load_arrays(cache)[1]["name"] == "utkface"  # rewritten as a clean archive


# ---------------------------------------------------------------- decoded-image cache keys


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = registry._from_files

    def counting(data, seed):
        calls.append(1)
        return original(data, seed)

    monkeypatch.setattr(registry, "_from_files", counting)
    return calls


def test_utkface_cache_notices_removed_added_and_changed_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_utkface(tmp_path / "utk")
    data = _utk_cfg(files.root, tmp_path / "cache")
    calls = _count_decodes(monkeypatch)
    n = len(registry.load_pool(data, seed=0))
    assert len(registry.load_pool(data, seed=0)) == n and len(calls) == 1  # served from cache

    (files.root / files.valid_names[0]).unlink()
    assert len(registry.load_pool(data, seed=0)) == n - 1 and len(calls) == 2

    write_utkface(files.root, [files.valid_names[0], "30_1_3_20170101000000000.jpg.chip.jpg"])
    assert len(registry.load_pool(data, seed=0)) == n + 1 and len(calls) == 3

    (files.root / files.valid_names[1]).write_bytes(b"corrupt")  # same name, new bytes
    pool = registry.load_pool(data, seed=0)
    assert len(calls) == 4 and pool.skipped["unreadable_image"] == 1 and len(pool) == n


def test_celeba_cache_notices_deleted_and_corrupted_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_celeba(tmp_path, n=6)
    data = _utk_cfg(files.root, tmp_path / "cache")
    data.name, data.celeba_subset = "celeba", 6
    calls = _count_decodes(monkeypatch)
    registry.load_pool(data, seed=0)
    registry.load_pool(data, seed=0)
    assert len(calls) == 1
    image = files.root / "celeba" / "img_align_celeba" / files.filenames[2]
    good = image.read_bytes()
    stat = image.stat()
    image.write_bytes(b"x" * len(good))  # same size: the modification time gives it away
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # beyond clock granularity
    with pytest.raises(UserError, match="cannot decode image"):
        registry.load_pool(data, seed=0)
    image.unlink()
    with pytest.raises(UserError, match="missing image"):
        registry.load_pool(data, seed=0)
    assert len(calls) == 3


def test_listing_digest_depends_on_names_sizes_and_times_only(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"12")
    before = listing_digest([tmp_path])
    assert listing_digest([tmp_path]) == before
    (tmp_path / "sub").mkdir()  # folders are not files the loaders read
    assert listing_digest([tmp_path]) == before
    (tmp_path / "a.jpg").write_bytes(b"123")
    assert listing_digest([tmp_path]) != before
