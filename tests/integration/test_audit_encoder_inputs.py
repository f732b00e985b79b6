"""Every bad input of ``audit-encoder`` is one ``error:`` line, exit 2, and nothing written."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision

from lightning_talos.cli import main

DATA = ["data.image_size=16", "data.synthetic.quarter_size=64"]  # a pool of 256 samples


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp_path = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "tv.pth")
    (tmp_path / "members.txt").write_text("0\n1\n2\n3\n")
    (tmp_path / "nonmembers.txt").write_text("# held out\n100\n101\n102\n103\n")
    return {"dir": tmp_path, "tv": tmp_path / "tv.pth"}


def _write(path: Path, *lines: str) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def _hostile(path: Path) -> str:
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Path("x")}, path)  # a pickled global
    return str(path)


# (case, extra overrides built from the fixture's folder, what the one line must say)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("unknown_arch", lambda d: ["encoder.arch=resnet_nope"], "unknown architecture 'resnet_nope'"),
    ("unfit_arch", lambda d: ["encoder.arch=resnet34"], "missing keys: layer1.2"),
    ("wrong_format", lambda d: ["encoder.format=lightly"], "expects nn.Sequential keys"),
    ("not_lightning", lambda d: ["encoder.format=solo_learn"], "expects a Lightning checkpoint"),
    ("unknown_format", lambda d: ["encoder.format=onnx"], "encoder.format"),
    ("missing_prefix", lambda d: ["encoder.key_prefix=student."], "starts with 'student.'"),
    ("no_checkpoint", lambda d: [f"encoder.checkpoint={d / 'none.pth'}"], "no checkpoint at"),
    ("hostile", lambda d: [f"encoder.checkpoint={_hostile(d / 'h.ckpt')}"], "nothing in it"),
    ("overlap", lambda d: [f"encoder.nonmembers={_write(d / 'o.txt', '3', '4')}"], "share 1"),
    ("unknown_index", lambda d: [f"encoder.members={_write(d / 'u.txt', '9999')}"], "outside"),
    ("unknown_name", lambda d: [f"encoder.members={_write(d / 'n.txt', 'a.jpg')}"],
     "no file names"),
    ("empty", lambda d: [f"encoder.members={_write(d / 'e.txt', '# none')}"], "lists no samples"),
    ("repeated", lambda d: [f"encoder.members={_write(d / 'r.txt', '5', '5')}"], "twice"),
    ("no_list", lambda d: ["encoder.members=null"], "encoder.members is required"),
    ("missing_list", lambda d: [f"encoder.members={d / 'gone.txt'}"], "no file"),
    ("no_official_split", lambda d: ["encoder.members=split:train"], "has no official split"),
    ("unknown_split", lambda d: ["encoder.members=split:dev"], "unknown split 'dev'"),
    ("shadow_lists", lambda d: [f"encoder.shadow={d / 'tv.pth'}"], "encoder.shadow needs"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "extra", "says"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(
    case: str,
    extra: Callable[[Path], list[str]],
    says: str,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture,
) -> None:
    d = files["dir"]
    runs = d / "runs"
    args = [*DATA, f"run.dir={runs}", f"encoder.checkpoint={files['tv']}",
            f"encoder.members={d / 'members.txt'}", f"encoder.nonmembers={d / 'nonmembers.txt'}",
            *extra(d)]  # fmt: skip
    assert main(["audit-encoder", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert says in err, err
    assert not runs.exists()  # nothing written


def test_timm_without_the_package_names_the_extra(
    files: dict[str, Path], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    d = files["dir"]
    args = [*DATA, f"run.dir={d / 'runs'}", f"encoder.checkpoint={files['tv']}",
            "encoder.format=timm", f"encoder.members={d / 'members.txt'}",
            f"encoder.nonmembers={d / 'nonmembers.txt'}"]  # fmt: skip
    assert main(["audit-encoder", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: encoder.format=timm needs the timm package: pip install -e '.[byo]'"
    assert not (d / "runs").exists()
