"""Training stages end to end on a tiny synthetic run: outputs, frozen encoder, resume, refusals."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from lightning_talos.cli import main
from lightning_talos.stages.trainer import AtomicCheckpointIO
from tests.fixtures.processes import checkpoint_position, launch, wait_for_file


def _stage(tmp_path: Path, name: str) -> Path:
    return tmp_path / "runs" / "default" / name


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_pretrain_then_linear_keeps_encoder_frozen(tiny_args: list[str], tmp_path: Path) -> None:
    assert main(["pretrain", *tiny_args]) == 0
    assert main(["linear", *tiny_args]) == 0
    pre, lin = _stage(tmp_path, "pretrain-target"), _stage(tmp_path, "linear-target")
    for folder in (pre, lin):
        assert (folder / "config.yaml").is_file()
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        manifest = _json(folder / "manifest.json")
        assert manifest["status"] == "done"
        assert {"config_hash", "split_hash", "git_commit", "wandb_id"} <= set(manifest)
    metrics = _json(lin / "metrics.json")
    assert 0.0 <= metrics["val/member_acc"] <= 1.0 and "val/gap" in metrics
    encoder = {k[len("backbone.") :]: v for k, v in _state(pre / "checkpoints/last.ckpt").items()
               if k.startswith("backbone.")}  # fmt: skip
    trained = {k[len("encoder.") :]: v for k, v in _state(lin / "checkpoints/last.ckpt").items()
               if k.startswith("encoder.")}  # fmt: skip
    assert encoder.keys() == trained.keys()
    for key, value in encoder.items():  # weights and BatchNorm statistics alike
        assert torch.equal(value, trained[key]), key


def test_linear_without_pretrain_names_the_command(
    tiny_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["linear", *tiny_args]) == 2
    err = capsys.readouterr().err
    assert "lightning-talos pretrain role=target" in err and "Traceback" not in err


def test_supervised_trains_target_and_shadow(tiny_args: list[str], tmp_path: Path) -> None:
    for role in ("target", "shadow"):
        assert main(["supervised", f"role={role}", *tiny_args]) == 0
        metrics = _json(_stage(tmp_path, f"supervised-{role}") / "metrics.json")
        assert {"val/member_acc", "val/nonmember_acc", "val/gap"} <= set(metrics)
    target = _json(_stage(tmp_path, "supervised-target") / "manifest.json")
    shadow = _json(_stage(tmp_path, "supervised-shadow") / "manifest.json")
    assert target["split_hash"] == shadow["split_hash"]


def test_resume_continues_and_done_is_not_retrained(
    tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _stage(tmp_path, "pretrain-target")
    assert main(["pretrain", *tiny_args]) == 0
    first = _json(folder / "manifest.json")
    steps_per_epoch = _json(folder / "metrics.json")["global_step"]
    assert main(["pretrain", *tiny_args, "simclr.max_epochs=2"]) == 0
    second = _json(folder / "manifest.json")
    metrics = _json(folder / "metrics.json")
    assert metrics["global_step"] == 2 * steps_per_epoch  # epoch 1 was not repeated
    assert metrics["resumed_from_epoch"] == 1
    assert metrics["resumed_from_step"] == steps_per_epoch
    assert second["wandb_id"] == first["wandb_id"]
    assert main(["pretrain", *tiny_args, "simclr.max_epochs=2"]) == 0
    assert "already done" in capsys.readouterr().out
    assert _json(folder / "manifest.json")["completion_id"] == second["completion_id"]


def test_changed_setting_is_refused_and_never_replaces(
    tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _stage(tmp_path, "pretrain-target")
    assert main(["pretrain", *tiny_args]) == 0
    before = (folder / "manifest.json").read_text()
    assert main(["pretrain", *tiny_args, "simclr.temperature=0.5"]) == 2
    err = capsys.readouterr().err
    assert "simclr.temperature" in err and err.count("\n") == 1
    assert (folder / "manifest.json").read_text() == before
    assert main(["pretrain", *tiny_args, "simclr.temperature=0.5", "run.resume=never"]) == 0
    after = _json(folder / "manifest.json")
    assert after["config"]["simclr"]["temperature"] == 0.5


def test_offline_wandb_writes_a_run_with_the_manifest_id(
    tiny_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_MODE")
    assert main(["supervised", *tiny_args, "logger.mode=offline"]) == 0
    manifest = _json(_stage(tmp_path, "supervised-target") / "manifest.json")
    runs = list((tmp_path / "runs" / "default" / "wandb").glob("offline-run-*"))
    assert [r.name.endswith(manifest["wandb_id"]) for r in runs] == [True]
    assert list(runs[0].glob("run-*.wandb"))


def test_cpu_preset_fast_dev_run(tiny_args: list[str], tmp_path: Path) -> None:
    args = ["experiment=synthetic_cpu", f"run.dir={tmp_path}", "trainer.fast_dev_run=true",
            "data.synthetic.quarter_size=64", "trainer.enable_progress_bar=false"]  # fmt: skip
    assert main(["pretrain", *args]) == 0
    manifest = _json(tmp_path / "default" / "pretrain-target" / "manifest.json")
    assert manifest["status"] == "fast_dev_run"  # a smoke run is never taken as done


def test_atomic_checkpoint_keeps_previous_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1}, path)

    def broken_save(obj: object, f: object) -> None:
        Path(f).write_bytes(b"partial")  # type: ignore[arg-type]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["epoch"] == 1


#: 64 training images in batches of 32: two optimizer steps per epoch.
STEPS_PER_EPOCH = 2


@pytest.mark.slow
def test_sigkill_mid_run_resumes_from_that_checkpoint(tiny_args: list[str], tmp_path: Path) -> None:
    epochs = 10
    args = [*tiny_args, f"simclr.max_epochs={epochs}"]
    folder = _stage(tmp_path, "pretrain-target")
    ckpt = folder / "checkpoints" / "last.ckpt"
    proc = launch("pretrain", args)
    try:
        wait_for_file(proc, ckpt)
        # Freeze the process so the checkpoint read below is the one on disk at the kill.
        proc.send_signal(signal.SIGSTOP)
        epoch, step = checkpoint_position(ckpt)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (epoch, step) == checkpoint_position(ckpt)
    assert step == STEPS_PER_EPOCH * (epoch + 1)  # written at the end of epoch `epoch`
    assert epoch + 1 < epochs  # provably mid-run: the last epoch had not started
    assert _json(folder / "manifest.json")["status"] == "running"
    assert main(["pretrain", *args]) == 0
    metrics = _json(folder / "metrics.json")
    assert metrics["resumed_from_epoch"] == epoch + 1
    assert metrics["resumed_from_step"] == step
    assert metrics["epochs"] == epochs
    assert metrics["global_step"] == STEPS_PER_EPOCH * epochs  # no step repeated or lost
    print(f"killed after epoch {epoch + 1}/{epochs} (step {step}); resumed from there")
