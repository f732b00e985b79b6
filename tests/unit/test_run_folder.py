"""``StageFolder``: one read of the manifest answers done / stale / resume / upstream good."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_talos.errors import UserError
from lightning_talos.runs import folder as folder_module
from lightning_talos.runs.folder import Expected, Read, Record, StageFolder

CONFIG = {"seed": 0, "data": {"name": "synthetic"}, "simclr": {"temperature": 0.2}}
SPLITS = "split-hash"


def _write(path: Path, **fields: object) -> StageFolder:
    manifest = {"config": CONFIG, "split_hash": SPLITS, "inputs": {}, **fields}
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps(manifest))
    return StageFolder(path)


def _decide(folder: StageFolder, epochs: int | None = 2, **kw: object) -> str:
    expected = Expected(CONFIG, epochs, "lightning-talos pretrain role=target")
    return folder.decide(expected, split_hash=SPLITS, resume="auto", **kw).action  # type: ignore[arg-type]


def test_decisions(tmp_path: Path) -> None:
    assert _decide(StageFolder(tmp_path / "none")) == "fresh"
    assert _decide(_write(tmp_path / "a", status="done", epochs_completed=2)) == "done"
    assert _decide(_write(tmp_path / "b", status="done", epochs_completed=1)) == "resume"
    assert _decide(_write(tmp_path / "c", status="interrupted", epochs_completed=0)) == "resume"
    # an upstream stage re-run since: the recorded inputs differ, never reuse
    stale = _write(tmp_path / "d", status="done", epochs_completed=2, inputs={"x": "old"})
    assert _decide(stale, extra_inputs={"x": "new"}) == "fresh"
    # an attack stage is done only with its output present
    attack = _write(tmp_path / "e", status="done")
    assert _decide(attack, epochs=None, output="mia.json") == "fresh"
    (attack.path / "mia.json").write_text("{}")
    assert _decide(StageFolder(attack.path), epochs=None, output="mia.json") == "done"


def test_other_settings_or_splits_are_refused_naming_the_keys(tmp_path: Path) -> None:
    folder = _write(tmp_path / "a", status="done", epochs_completed=2)
    other = {**CONFIG, "simclr": {"temperature": 0.5}}
    with pytest.raises(UserError, match="differs in: simclr.temperature"):
        folder.decide(Expected(other, 2, "cmd"), split_hash=SPLITS, resume="auto")
    assert folder.stale_keys(other) == ["simclr.temperature"]
    with pytest.raises(UserError, match="other splits"):
        folder.decide(Expected(CONFIG, 2, "cmd"), split_hash="other", resume="auto")
    fresh = folder.decide(Expected(other, 2, "cmd"), split_hash="other", resume="never")
    assert fresh.action == "fresh"


def test_reads_give_inputs_and_check_upstream(tmp_path: Path) -> None:
    up = _write(tmp_path / "pretrain-target", status="done", epochs_completed=2, completion_id="u1")
    me = StageFolder(tmp_path / "linear-target")
    expected_up = Expected(CONFIG, 2, "lightning-talos pretrain role=target")
    decision = me.decide(
        Expected(CONFIG, 1, "x"), reads=[Read(up, expected_up)], split_hash=SPLITS, resume="auto"
    )
    assert decision.inputs == {"pretrain-target": "u1"}
    more = Read(up, Expected(CONFIG, 5, "lightning-talos pretrain role=target"), is_input=False)
    with pytest.raises(UserError, match="has 2 of the 5 epochs"):
        me.decide(Expected(CONFIG, 1, "x"), reads=[more], split_hash=SPLITS, resume="auto")
    missing = Read(StageFolder(tmp_path / "talos-target"), expected_up)
    with pytest.raises(UserError, match="make it first: lightning-talos pretrain role=target"):
        me.decide(Expected(CONFIG, 1, "x"), reads=[missing], split_hash=SPLITS, resume="auto")


def test_the_manifest_is_read_once_and_writes_are_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    real = folder_module._read_manifest
    monkeypatch.setattr(folder_module, "_read_manifest", lambda p: reads.append(p) or real(p))
    folder = _write(tmp_path / "s", status="done", epochs_completed=1)
    for _ in range(3):
        _decide(folder)
        folder.stale_keys(CONFIG)
    assert reads == [folder.path]
    record = Record({"status": "running", "config": CONFIG, "split_hash": SPLITS, "inputs": {}})

    def work(rec: Record) -> None:
        assert json.loads((folder.path / "manifest.json").read_text())["status"] == "running"
        rec.manifest.update(status="done", epochs_completed=2)
        rec.outputs["metrics.json"] = {"acc": 1.0}

    assert folder.record(record, work, fresh=True)["status"] == "done"
    assert _decide(folder) == "done" and reads == [folder.path]
    assert json.loads((folder.path / "metrics.json").read_text()) == {"acc": 1.0}
    assert json.loads((folder.path / "manifest.json").read_text())["status"] == "done"


def test_an_exception_leaves_the_running_manifest(tmp_path: Path) -> None:
    folder = StageFolder(tmp_path / "s")

    def work(rec: Record) -> None:
        rec.outputs["metrics.json"] = {}
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        folder.record(Record({"status": "running"}), work, fresh=True)
    assert json.loads((folder.path / "manifest.json").read_text()) == {"status": "running"}
    assert not (folder.path / "metrics.json").exists()
