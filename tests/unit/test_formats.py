"""Each on-disk format written by the fixture writers and read back through its loader."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_talos.data.formats.celeba import load_celeba, parse_attribute_expr, read_attributes
from lightning_talos.data.formats.cifar import load_cifar
from lightning_talos.data.formats.images import resize_batch_uint8, resize_uint8
from lightning_talos.data.formats.stl10 import load_stl10
from lightning_talos.data.formats.utkface import load_utkface, parse_utkface_name
from lightning_talos.errors import UserError
from tests.fixtures.layouts import (
    CELEBA_ATTRIBUTE_NAMES,
    write_celeba,
    write_cifar,
    write_stl10,
    write_utkface,
)

# ---------------------------------------------------------------- images


def test_resize_uint8_crops_non_square_to_centre() -> None:
    img = np.zeros((6, 4, 3), dtype=np.uint8)  # H=6, W=4: rows 1..4 are the centre square
    img[1:5] = 200
    out = resize_uint8(img, 4)
    assert out.shape == (3, 4, 4) and out.dtype == torch.uint8
    assert (out == 200).all()


def test_resize_batch_is_a_copy_at_the_same_size_and_resizes_otherwise() -> None:
    batch = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    same = resize_batch_uint8(batch, 8)
    assert torch.equal(same, torch.from_numpy(batch).permute(0, 3, 1, 2))
    flat = np.full((2, 3, 10, 12), 77, dtype=np.uint8)
    small = resize_batch_uint8(flat, 5, channels_last=False, chunk_size=1)
    assert small.shape == (2, 3, 5, 5) and (small == 77).all()


# ---------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_reads_pooled_train_then_test(tmp_path: Path, variant: str) -> None:
    files = write_cifar(tmp_path, variant, n_train=7, n_test=3)
    pool = load_cifar(tmp_path, variant=variant, image_size=32, verify_checksums=False)
    assert pool.images.shape == (10, 3, 32, 32) and pool.images.dtype == torch.uint8
    assert pool.labels.dtype == np.int64 and (pool.labels == files.labels).all()
    assert pool.num_classes == files.num_classes and pool.attributes is None
    assert np.array_equal(pool.images.numpy(), files.images)
    # the official split: train first (code 0), then test (code 2)
    assert pool.official_split is not None
    assert pool.official_split.tolist() == [0] * 7 + [2] * 3


def test_cifar_pixel_order_is_channel_row_column(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(tmp_path, "cifar10", n_train=5, n_test=1)
    row = np.zeros(3072, dtype=np.uint8)
    row[1024 + 2 * 32 + 5] = 255  # green plane, row 2, column 5
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({"data": row[None], "labels": [4]}, f)
    pool = load_cifar(tmp_path, variant="cifar10", image_size=32, verify_checksums=False)
    last = pool.images[-1]
    assert last[1, 2, 5] == 255 and int(last.sum()) == 255 and pool.labels[-1] == 4


def test_cifar_resizes_to_96(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10", n_train=5, n_test=1)
    pool = load_cifar(tmp_path, variant="cifar10", image_size=96, verify_checksums=False)
    assert pool.images.shape == (6, 3, 96, 96)


def test_cifar_checksum_mismatch_is_a_user_error(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10", n_train=5, n_test=1)
    with pytest.raises(UserError, match="verify_checksums=false"):
        load_cifar(tmp_path, variant="cifar10", image_size=32)


def test_cifar_missing_root_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cifar-100-python/.*train.*meta"):
        load_cifar(tmp_path / "nowhere", variant="cifar100", image_size=32)


def test_cifar_missing_or_corrupt_file_is_a_user_error(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10", n_train=5, n_test=1)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(UserError, match="data_batch_3"):
        load_cifar(tmp_path, variant="cifar10", image_size=32, verify_checksums=False)
    (folder / "data_batch_3").unlink()
    with pytest.raises(UserError, match="missing file .*data_batch_3"):
        load_cifar(tmp_path, variant="cifar10", image_size=32, verify_checksums=False)


# ---------------------------------------------------------------- STL-10


def test_stl10_labelled_pools_train_and_test(tmp_path: Path) -> None:
    files = write_stl10(tmp_path, n_train=3, n_test=2, n_unlabeled=1)
    pool = load_stl10(tmp_path, image_size=96, verify_checksums=False)
    assert pool.images.shape == (5, 3, 96, 96) and pool.num_classes == 10
    assert (pool.labels == files.labels).all() and pool.labels.dtype == np.int64
    assert np.array_equal(pool.images.numpy(), files.images)
    assert pool.class_names is not None and pool.class_names[0] == "airplane"


def test_stl10_column_major_planes_are_transposed(tmp_path: Path) -> None:
    write_stl10(tmp_path, n_train=1, n_test=1, n_unlabeled=1)
    stored = np.zeros((1, 3, 96, 96), dtype=np.uint8)
    stored[0, 2, 10, 3] = 255  # on disk: blue plane, column 10, row 3
    stored.tofile(tmp_path / "stl10_binary" / "train_X.bin")
    pool = load_stl10(tmp_path, image_size=96, verify_checksums=False)
    assert pool.images[0, 2, 3, 10] == 255 and int(pool.images[0].sum()) == 255


def test_stl10_unlabeled_part_and_resize(tmp_path: Path) -> None:
    files = write_stl10(tmp_path, n_train=1, n_test=1, n_unlabeled=3)
    pool = load_stl10(tmp_path, image_size=32, verify_checksums=False, part="unlabeled")
    assert pool.images.shape == (3, 3, 32, 32) and pool.num_classes == 0
    assert (pool.labels == -1).all()
    full = load_stl10(tmp_path, image_size=96, verify_checksums=False, part="unlabeled")
    assert np.array_equal(full.images.numpy(), files.unlabeled_images)


def test_stl10_checksum_and_size_errors(tmp_path: Path) -> None:
    write_stl10(tmp_path, n_train=2, n_test=1, n_unlabeled=1)
    with pytest.raises(UserError, match="verify_checksums=false"):
        load_stl10(tmp_path, image_size=96)
    (tmp_path / "stl10_binary" / "test_y.bin").write_bytes(b"\x01\x02")
    with pytest.raises(UserError, match="2 labels for 1 images"):
        load_stl10(tmp_path, image_size=96, verify_checksums=False)
    (tmp_path / "stl10_binary" / "test_X.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="not a positive multiple"):
        load_stl10(tmp_path, image_size=96, verify_checksums=False)


def test_stl10_missing_root_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="stl10_binary/.*train_X.bin"):
        load_stl10(tmp_path, image_size=96)


# ---------------------------------------------------------------- UTKFace


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("25_1_3_20170116174525125.jpg.chip.jpg", (25, 1, 3)),
        ("1_0_0_20161219140623097.jpg", (1, 0, 0)),
        ("25_0_.jpg.chip.jpg", None),
        ("39_1_20170116174525125.jpg.chip.jpg", None),
        ("abc_0_1_2017.jpg.chip.jpg", None),
        ("25_2_1_2017.jpg.chip.jpg", None),
        ("25_0_5_2017.jpg.chip.jpg", None),
        ("25_0_-1_2017.jpg.chip.jpg", None),
        ("25_0_1_2017.png", None),
    ],
)
def test_parse_utkface_name(name: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_utkface_name(name) == expected


def test_utkface_skips_malformed_and_sorts(tmp_path: Path, caplog) -> None:
    files = write_utkface(tmp_path)
    with caplog.at_level(logging.WARNING):
        pool = load_utkface(tmp_path, image_size=16)
    assert pool.skipped == {"malformed_name": 3, "unreadable_image": 0}
    assert sum("skipped 3 of 11" in r.getMessage() for r in caplog.records) == 1
    parsed = [parse_utkface_name(name) for name in files.valid_names]
    assert pool.labels.tolist() == [p[1] for p in parsed]  # gender
    assert pool.attributes is not None
    assert pool.attributes.tolist() == [p[2] for p in parsed]  # race
    assert (pool.num_classes, pool.num_attribute_classes) == (2, 5)
    assert pool.images.shape == (8, 3, 16, 16)
    # The flat colours come back in sorted-name order (JPEG: within a few levels).
    centre = pool.images[:, :, 8, 8].numpy().astype(int)
    assert np.abs(centre - files.colors.astype(int)).max() <= 4
    # the names the samples were read from; UTKFace has no official split
    assert pool.file_names == files.valid_names and pool.official_split is None


def test_utkface_age_buckets_subfolder_and_no_attribute(tmp_path: Path) -> None:
    files = write_utkface(tmp_path / "UTKFace")
    pool = load_utkface(tmp_path, image_size=8, task_label="age", sensitive_attribute=None)
    ages = [parse_utkface_name(name)[0] for name in files.valid_names]
    expected = [0 if a < 20 else 1 if a < 30 else 2 if a < 45 else 3 if a < 60 else 4 for a in ages]
    assert pool.labels.tolist() == expected and pool.num_classes == 5
    assert pool.attributes is None and pool.num_attribute_classes == 0


def test_utkface_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    write_utkface(tmp_path, unreadable=["30_0_1_20170101000000000.jpg.chip.jpg"])
    pool = load_utkface(tmp_path, image_size=8)
    assert pool.skipped["unreadable_image"] == 1 and len(pool) == 8


def test_utkface_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="AGE_GENDER_RACE_DATETIME"):
        load_utkface(tmp_path / "missing", image_size=8)
    with pytest.raises(UserError, match="AGE_GENDER_RACE_DATETIME"):
        load_utkface(tmp_path, image_size=8)  # empty folder
    write_utkface(tmp_path, names=["1_0_0_2017.jpg.chip.jpg"])
    with pytest.raises(UserError, match="age, gender, race"):
        load_utkface(tmp_path, image_size=8, sensitive_attribute="ethnicity")
    with pytest.raises(UserError, match="both 'race'"):
        load_utkface(tmp_path, image_size=8, task_label="race", sensitive_attribute="race")


# ---------------------------------------------------------------- CelebA


def test_parse_attribute_expr_closed_form() -> None:
    names = ["A", "Smiling", "Mouth_Slightly_Open", "5_o_Clock_Shadow"]
    values = np.array([[0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]])
    fn, k = parse_attribute_expr(" 2 * Mouth_Slightly_Open+ Smiling ", names)
    assert k == 4 and fn(values).tolist() == [0, 1, 2, 3]
    fn, k = parse_attribute_expr("5_o_Clock_Shadow", names)
    assert k == 2 and fn(values).tolist() == [1, 0, 0, 1]
    fn, k = parse_attribute_expr("A+2*Smiling+4*5_o_Clock_Shadow", names)
    assert k == 8 and fn(values).tolist() == [4, 2, 1, 7]


@pytest.mark.parametrize("expr", ["Male", "2*Nope+Smiling", "Smiling+Smiling", "0*Smiling", "2*"])
def test_parse_attribute_expr_rejects_bad_input(expr: str) -> None:
    with pytest.raises(UserError) as info:
        parse_attribute_expr(expr, ["Smiling", "Young"])
    assert "\n" not in str(info.value)
    if "Male" in expr or "Nope" in expr:
        assert "valid: Smiling Young" in str(info.value)


def test_celeba_reads_attributes_and_composites(tmp_path: Path) -> None:
    files = write_celeba(tmp_path, n=12)
    table = read_attributes(tmp_path / "celeba" / "list_attr_celeba.txt")
    assert table.names == CELEBA_ATTRIBUTE_NAMES and table.filenames == files.filenames
    assert np.array_equal(table.values, (files.values == 1).astype(np.int8))

    pool = load_celeba(tmp_path / "celeba", image_size=16, sensitive_attribute="2*Young + Smiling")
    assert len(pool) == 12 and pool.images.shape == (12, 3, 16, 16)
    col = {name: files.values[:, i] == 1 for i, name in enumerate(files.names)}
    assert pool.labels.tolist() == col["Male"].astype(int).tolist()
    assert pool.attributes is not None
    expected = 2 * col["Young"].astype(int) + col["Smiling"].astype(int)
    assert pool.attributes.tolist() == expected.tolist()
    assert (pool.num_classes, pool.num_attribute_classes) == (2, 4)
    centre = pool.images[:, :, 8, 8].numpy().astype(int)
    assert np.abs(centre - files.colors.astype(int)).max() <= 4
    # file names and the official partition (the fixture writes i % 3 for row i)
    assert pool.file_names == files.filenames
    assert pool.official_split is not None
    assert pool.official_split.tolist() == [i % 3 for i in range(12)]


def test_celeba_subset_is_seeded_sorted_and_decodes_only_chosen_rows(tmp_path: Path) -> None:
    files = write_celeba(tmp_path, n=12)
    first = load_celeba(tmp_path, image_size=8, subset_size=5, subset_seed=1)
    again = load_celeba(tmp_path, image_size=8, subset_size=5, subset_seed=1)
    other = load_celeba(tmp_path, image_size=8, subset_size=5, subset_seed=2)
    assert torch.equal(first.images, again.images)
    assert not torch.equal(first.images, other.images)
    # Recover each chosen row from its flat colour: distinct, in ascending row order.
    red = first.images[:, 0, 4, 4].numpy().astype(int)
    rows = [int(np.abs(files.colors[:, 0].astype(int) - r).argmin()) for r in red]
    assert rows == sorted(set(rows)) and len(rows) == 5


def test_celeba_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="celeba/.*img_align_celeba"):
        load_celeba(tmp_path, image_size=8)
    write_celeba(tmp_path, n=4)
    with pytest.raises(UserError, match="Wearing_Necktie Young"):
        load_celeba(tmp_path, image_size=8, task_label="Beard")
    with pytest.raises(UserError, match="both"):
        load_celeba(
            tmp_path,
            image_size=8,
            task_label="Smiling+2*Young",
            sensitive_attribute="2*Young+Smiling",
        )
    (tmp_path / "celeba" / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(UserError, match="000003.jpg"):
        load_celeba(tmp_path, image_size=8)
    (tmp_path / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(UserError, match="list_eval_partition.txt"):
        load_celeba(tmp_path, image_size=8)


def test_celeba_rejects_corrupt_attribute_values(tmp_path: Path) -> None:
    write_celeba(tmp_path, n=3)
    path = tmp_path / "celeba" / "list_attr_celeba.txt"
    path.write_text(path.read_text().replace(" 1", " 2", 1))
    with pytest.raises(UserError, match="other than -1 and 1"):
        read_attributes(path)
