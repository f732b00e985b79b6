"""Checkpoints and feature caches a user can point at or replace never execute code.

Each test swaps a real file for a payload pickle (see ``tests/unit/test_safe_load.py``) and checks
that the command stops with one ``error:`` line (exit 2) or recomputes, and the payload never ran.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_talos.cli import main
from lightning_talos.config.load import compose
from lightning_talos.errors import UserError
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.attacking import model_source
from lightning_talos.stages.registry import method
from tests.unit.test_safe_load import Payload


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_init_checkpoint_payload_is_refused(
    tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil, marker = tmp_path / "encoder.ckpt", tmp_path / "marker"
    torch.save({"state_dict": Payload(marker)}, evil)
    assert main(["pretrain", *tiny_args, f"simclr.init_checkpoint={evil}"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(evil) in line and "nothing in it was run" in line
    assert not marker.exists()


def test_resume_from_payload_checkpoint_is_refused(
    tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pretrain", *tiny_args]) == 0
    ckpt = tmp_path / "runs" / "default" / "pretrain-target" / "checkpoints" / "last.ckpt"
    marker = tmp_path / "marker"
    torch.save({"state_dict": Payload(marker), "loops": {}}, ckpt)
    capsys.readouterr()
    assert main(["pretrain", *tiny_args, "simclr.max_epochs=2"]) == 2  # resumes from last.ckpt
    assert str(ckpt) in _one_error_line(capsys.readouterr().err)
    assert not marker.exists()


def test_feature_cache_and_classifier_checkpoint_payloads(tiny_args: list[str], tmp_path: Path):
    assert main(["supervised", *tiny_args]) == 0
    ctx = RunContext(compose(tiny_args))
    source = model_source(ctx, method("supervised"))
    first = source.quarters("target")
    cache = ctx.root / "features" / "supervised-target.npz"
    assert cache.is_file()

    marker = tmp_path / "marker"
    torch.save({"key": Payload(marker)}, cache)  # a hostile cache is recomputed, never run
    again = source.quarters("target")
    assert not marker.exists()
    for quarter, outputs in first.items():
        assert torch.equal(again[quarter].logits, outputs.logits)
        assert torch.equal(again[quarter].indices, outputs.indices)

    # A replaced checkpoint changes the cache key even though the manifest did not change, so
    # the new file is read (and refused) instead of the stale cache being served.
    ckpt = ctx.stage_dir("supervised", "target") / "checkpoints" / "last.ckpt"
    manifest = json.loads((ckpt.parent.parent / "manifest.json").read_text())
    torch.save({"state_dict": Payload(marker)}, ckpt)
    with pytest.raises(UserError, match="cannot read checkpoint .*last.ckpt") as err:
        source.quarters("target")
    assert "\n" not in str(err.value)
    assert json.loads((ckpt.parent.parent / "manifest.json").read_text()) == manifest
    assert not marker.exists()
