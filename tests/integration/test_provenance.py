"""Single-stage commands check what they read: upstream settings and readable checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_talos.cli import main
from lightning_talos.runs import folder as folder_module


def _run(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "default"


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_linear_refuses_an_encoder_made_with_other_settings(
    tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pretrain", *tiny_args]) == 0  # the preset's temperature, 0.2
    capsys.readouterr()
    assert main(["linear", *tiny_args, "simclr.temperature=0.9"]) == 2
    err = _one_error_line(capsys)
    assert "simclr.temperature" in err and "pretrain-target" in err
    assert not (_run(tmp_path) / "linear-target").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_checkpoint_stops_before_the_manifest_is_touched(
    damage: str, tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pretrain", *tiny_args]) == 0
    folder = _run(tmp_path) / "pretrain-target"
    ckpt = folder / "checkpoints" / "last.ckpt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"garbage" * 1000)
    manifest = (folder / "manifest.json").read_bytes()
    capsys.readouterr()
    # resuming it (more epochs) and reading it (linear) both stop with one line
    for command in (["pretrain", "simclr.max_epochs=2"], ["linear"]):
        assert main([command[0], *tiny_args, *command[1:]]) == 2
        err = _one_error_line(capsys)
        assert str(ckpt) in err
        assert "lightning-talos pretrain role=target" in err and "run.resume=never" in err
    assert (folder / "manifest.json").read_bytes() == manifest  # still `done`, untouched
    assert not (_run(tmp_path) / "linear-target").exists()


def test_mia_checks_the_models_it_attacks(
    tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for role in ("target", "shadow"):
        assert main(["supervised", f"role={role}", *tiny_args]) == 0
    capsys.readouterr()
    mia = ["mia", "method=supervised", "attacks=[metric]", *tiny_args]
    assert main([*mia, "supervised.optim.lr=0.5"]) == 2
    assert "supervised.optim.lr" in _one_error_line(capsys)
    ckpt = _run(tmp_path) / "supervised-shadow" / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"not a checkpoint")
    assert main(mia) == 2
    err = _one_error_line(capsys)
    assert str(ckpt) in err and "lightning-talos supervised role=shadow" in err
    assert not (_run(tmp_path) / "mia-supervised").exists()


def test_a_stage_command_reads_each_manifest_once(
    tiny_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["pretrain", *tiny_args]) == 0
    reads: list[Path] = []
    real = folder_module._read_manifest
    monkeypatch.setattr(folder_module, "_read_manifest", lambda p: reads.append(p) or real(p))
    assert main(["linear", *tiny_args]) == 0  # its own folder (new) and the encoder's
    assert sorted(p.name for p in reads) == ["linear-target", "pretrain-target"]
    reads.clear()
    assert main(["linear", *tiny_args]) == 0  # done: reused, the same two reads
    assert sorted(p.name for p in reads) == ["linear-target", "pretrain-target"]
