"""``lightning-talos data``: one JSON object per dataset, read through the users' code path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_talos import cli
from lightning_talos.data.registry import LAYOUTS
from lightning_talos.data.splits import QUARTERS
from tests.fixtures.layouts import (
    CELEBA_ATTRIBUTE_NAMES,
    UTKFACE_MALFORMED_NAMES,
    UTKFACE_VALID_NAMES,
    write_celeba,
    write_cifar,
    write_stl10,
    write_utkface,
)

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "dataset",
    "pool_size",
    "num_classes",
    "num_attribute_classes",
    "splits",
    "split_hash",
    "skipped",
}


def _data(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    """Run ``data`` in-process; it must succeed and print exactly one JSON object."""
    code = cli.main(["data", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    info = json.loads(lines[0])
    assert isinstance(info, dict)
    assert set(info) >= KEYS
    assert set(info["splits"]) == set(QUARTERS)
    assert len(set(info["splits"].values())) == 1  # four equal quarters
    assert 4 * info["splits"]["target_train"] <= info["pool_size"]
    assert isinstance(info["split_hash"], str) and len(info["split_hash"]) == 16
    return info


def _error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``data`` in-process; it must exit 2 with one ``error:`` line and print nothing."""
    code = cli.main(["data", *args])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


def test_synthetic_without_root(capsys: pytest.CaptureFixture[str]) -> None:
    info = _data(["data.synthetic.quarter_size=8", "data.image_size=16"], capsys)
    assert info["dataset"] == "synthetic"
    assert info["pool_size"] == 32
    assert info["official_split"] is None  # generated: no official split
    assert info["num_classes"] == 8
    assert info["num_attribute_classes"] == 2
    assert info["splits"] == dict.fromkeys(QUARTERS, 8)
    assert info["skipped"] == {}
    assert info["task_label"] == "shape" and info["sensitive_attribute"] == "stripes"
    assert info["image_shape"] == [3, 16, 16]
    again = _data(["data.synthetic.quarter_size=8", "data.image_size=16"], capsys)
    assert again["split_hash"] == info["split_hash"]
    other = _data(["data.synthetic.quarter_size=8", "data.image_size=16", "seed=1"], capsys)
    assert other["split_hash"] != info["split_hash"]


def test_synthetic_pool_size_caps_splits(capsys: pytest.CaptureFixture[str]) -> None:
    info = _data(
        ["data.synthetic.quarter_size=8", "data.image_size=16", "data.pool_size=10"], capsys
    )
    assert info["pool_size"] == 32
    assert info["splits"] == dict.fromkeys(QUARTERS, 2)


@pytest.mark.parametrize(("variant", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_cifar(tmp_path: Path, variant: str, classes: int, capsys) -> None:
    files = write_cifar(tmp_path, variant, n_train=10, n_test=7)
    args = [f"data.name={variant}", f"data.root={files.root}", "data.image_size=32"]
    info = _data([*args, "data.verify_checksums=false"], capsys)
    assert info["dataset"] == variant
    assert info["pool_size"] == 17
    assert info["official_split"] == {"train": 10, "val": 0, "test": 7}
    assert info["num_classes"] == classes
    assert info["num_attribute_classes"] == 0
    assert info["sensitive_attribute"] is None
    assert info["splits"] == dict.fromkeys(QUARTERS, 4)  # 17 // 4, remainder dropped
    assert info["skipped"] == {}
    assert sum(info["label_counts"]) == 17


def test_cifar_checksums_on_by_default_fail_clearly(tmp_path: Path, capsys) -> None:
    write_cifar(tmp_path, "cifar10")
    line = _error(["data.name=cifar10", f"data.root={tmp_path}"], capsys)
    assert "md5" in line or "checksum" in line
    assert "data.verify_checksums=false" in line


def test_stl10(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = write_stl10(tmp_path, n_train=5, n_test=4)
    args = ["data.name=stl10", f"data.root={files.root}", "data.verify_checksums=false"]
    info = _data([*args, "data.image_size=32"], capsys)
    assert info["dataset"] == "stl10"
    assert info["pool_size"] == 9
    assert info["official_split"] == {"train": 5, "val": 0, "test": 4}
    assert info["num_classes"] == 10
    assert info["num_attribute_classes"] == 0
    assert info["splits"] == dict.fromkeys(QUARTERS, 2)
    assert info["image_shape"] == [3, 32, 32]


def test_utkface_counts_malformed_names(tmp_path: Path, capsys) -> None:
    files = write_utkface(tmp_path / "UTKFace")
    args = ["data.name=utkface", f"data.root={files.root}", "data.image_size=16"]
    info = _data(args, capsys)
    assert info["dataset"] == "utkface"
    assert info["pool_size"] == len(UTKFACE_VALID_NAMES)
    assert info["num_classes"] == 2  # gender
    assert info["num_attribute_classes"] == 5  # race
    assert info["task_label"] == "gender" and info["sensitive_attribute"] == "race"
    assert info["skipped"].get("malformed_name") == len(UTKFACE_MALFORMED_NAMES)
    assert info["splits"] == dict.fromkeys(QUARTERS, 2)
    # the second call hits the pool cache under the (monkeypatched) home and says the same
    cached = _data(args, capsys)
    assert cached == info
    assert list((Path.home() / ".cache" / "lightning_talos").glob("utkface-*.npz"))


def test_celeba_subset_and_composite_attribute(tmp_path: Path, capsys) -> None:
    files = write_celeba(tmp_path, n=12)
    base = ["data.name=celeba", f"data.root={files.root}", "data.image_size=16"]
    info = _data([*base, "data.celeba_subset=8"], capsys)
    assert info["dataset"] == "celeba"
    assert info["pool_size"] == 8
    assert info["num_classes"] == 2
    assert info["task_label"] == "Male"
    assert info["sensitive_attribute"] == "2*Mouth_Slightly_Open+Smiling"
    assert info["num_attribute_classes"] == 4
    assert info["splits"] == dict.fromkeys(QUARTERS, 2)
    custom = _data(
        [*base, "data.celeba_subset=8", "data.task_label=Smiling", "data.sensitive_attribute=Male"],
        capsys,
    )
    assert custom["task_label"] == "Smiling" and custom["num_attribute_classes"] == 2


def test_celeba_unknown_attribute_lists_valid_names(tmp_path: Path, capsys) -> None:
    files = write_celeba(tmp_path, n=4)
    line = _error(
        [
            "data.name=celeba",
            f"data.root={files.root}",
            "data.celeba_subset=4",
            "data.sensitive_attribute=Not_An_Attribute",
        ],
        capsys,
    )
    assert "Not_An_Attribute" in line
    for name in CELEBA_ATTRIBUTE_NAMES:
        assert name in line


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "utkface", "celeba"])
def test_missing_root_names_expected_layout(tmp_path: Path, name: str, capsys) -> None:
    absent = _error([f"data.name={name}", f"data.root={tmp_path / 'absent'}"], capsys)
    assert LAYOUTS[name] in absent
    unset = _error([f"data.name={name}", "data.root=null"], capsys)
    assert "data.root" in unset and LAYOUTS[name] in unset


@pytest.mark.parametrize("name", ["cifar10", "stl10", "celeba"])
def test_wrong_root_fails_in_one_line(tmp_path: Path, name: str, capsys) -> None:
    line = _error(
        [f"data.name={name}", f"data.root={tmp_path}", "data.verify_checksums=false"], capsys
    )
    assert name in line.lower() or "expected" in line


def test_attribute_on_dataset_without_one_refused(tmp_path: Path, capsys) -> None:
    write_cifar(tmp_path, "cifar10")
    line = _error(
        ["data.name=cifar10", f"data.root={tmp_path}", "data.sensitive_attribute=race"], capsys
    )
    assert "cifar10" in line


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "ignore"
    return env


def test_console_script_prints_json(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "lightning-talos"
    if not script.is_file():
        pytest.skip("console script not installed next to this interpreter")
    proc = subprocess.run(
        [str(script), "data", "data.synthetic.quarter_size=4", "data.image_size=8"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["dataset"] == "synthetic" and info["pool_size"] == 16


def test_python_dash_m_reports_errors_with_status_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_talos", "data", "data.nmae=1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**_env(), "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: ") and "data.nmae" in proc.stderr
